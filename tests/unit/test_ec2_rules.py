"""Address rules (ipam), security group permissions and their nft rendering, and filters."""
from __future__ import annotations

import pytest

from lambdaplane.errors import AwsError
from lambdaplane.net.security_groups import PortRules, render, rule_match, script_fingerprint
from lambdaplane.service import ipam
from lambdaplane.service.ec2_filters import matches
from lambdaplane.service.sg_rules import describe_rule, rules_from_permissions
from lambdaplane.store.ec2 import SgRule


def _code(fn, *args) -> str:
    with pytest.raises(AwsError) as err:
        fn(*args)
    return err.value.code


def test_vpc_and_subnet_cidrs() -> None:
    assert str(ipam.check_vpc_cidr("10.0.3.7/16")) == "10.0.0.0/16"
    assert _code(ipam.check_vpc_cidr, "10.0.0.0/15") == "InvalidVpc.Range"
    assert _code(ipam.check_vpc_cidr, "10.0.0.0/29") == "InvalidVpc.Range"
    assert _code(ipam.check_vpc_cidr, "banana") == "InvalidParameterValue"
    assert str(ipam.check_subnet_cidr("10.0.1.0/24", "10.0.0.0/16", ["10.0.2.0/24"])) == \
        "10.0.1.0/24"
    assert _code(ipam.check_subnet_cidr, "10.0.1.0/24", "10.0.0.0/16", ["10.0.0.0/23"]) == \
        "InvalidSubnet.Conflict"
    assert _code(ipam.check_subnet_cidr, "10.1.0.0/24", "10.0.0.0/16", []) == \
        "InvalidSubnet.Range"


def test_reserved_addresses_and_allocation() -> None:
    assert ipam.reserved("10.0.1.0/28") == {"10.0.1.0", "10.0.1.1", "10.0.1.2", "10.0.1.3",
                                            "10.0.1.15"}
    assert ipam.capacity("10.0.1.0/28") == 11
    assert ipam.gateway("10.0.1.0/24") == "10.0.1.1"
    assert ipam.pick_free("10.0.1.0/28", {"10.0.1.4"}) == "10.0.1.5"
    full = {f"10.0.1.{i}" for i in range(4, 15)}
    assert _code(ipam.pick_free, "10.0.1.0/28", full) == "InsufficientFreeAddressesInSubnet"
    assert _code(ipam.check_requested, "10.0.1.3", "10.0.1.0/28", set()) == \
        "InvalidParameterValue"
    assert _code(ipam.check_requested, "10.0.1.9", "10.0.1.0/28", {"10.0.1.9"}) == \
        "InvalidIPAddress.InUse"
    assert ipam.default_subnets("172.31.0.0/16", 3) == ["172.31.0.0/20", "172.31.16.0/20",
                                                        "172.31.32.0/20"]


def test_permissions_become_one_rule_per_peer() -> None:
    rules = rules_from_permissions("sg-1", False, [
        {"IpProtocol": "6", "FromPort": 80, "ToPort": 81,
         "IpRanges": [{"CidrIp": "10.0.0.7/24"}], "UserIdGroupPairs": [{"GroupId": "sg-2"}]},
        {"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}], lambda p: p["GroupId"])
    assert [(r.protocol, r.from_port, r.to_port, r.cidr, r.ref_group_id) for r in rules] == [
        ("tcp", 80, 81, "10.0.0.0/24", None), ("tcp", 80, 81, None, "sg-2"),
        ("-1", -1, -1, "0.0.0.0/0", None)]
    assert describe_rule(rules[0]) == "peer: 10.0.0.0/24, TCP, from port: 80, to port: 81, ALLOW"
    assert _code(rules_from_permissions, "sg-1", False,
                 [{"IpProtocol": "tcp", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}],
                 lambda p: p) == "InvalidParameterValue"


def test_rule_matches() -> None:
    def rule(**kw) -> SgRule:
        base = dict(id="r", group_id="sg-1", egress=False, protocol="tcp", from_port=5432,
                    to_port=5432, cidr="10.0.0.0/24", ref_group_id=None)
        return SgRule(**{**base, **kw})
    assert rule_match(rule()) == "ip saddr 10.0.0.0/24 meta l4proto tcp th dport 5432"
    assert rule_match(rule(egress=True, from_port=1, to_port=9)) == \
        "ip daddr 10.0.0.0/24 meta l4proto tcp th dport 1-9"
    assert rule_match(rule(protocol="-1", from_port=-1, to_port=-1, cidr="0.0.0.0/0")) == ""
    assert rule_match(rule(protocol="icmp", from_port=8, to_port=-1, cidr=None,
                           ref_group_id="sg-2")) == \
        "ip saddr @g_sg_2 meta l4proto icmp icmp type 8"
    assert rule_match(rule(protocol="udp", from_port=0, to_port=65535)) == \
        "ip saddr 10.0.0.0/24 meta l4proto udp"


def test_render_is_deterministic_and_fingerprinted() -> None:
    rules = {"sg-1": [SgRule("r1", "sg-1", False, "tcp", 80, 80, None, "sg-2"),
                      SgRule("r2", "sg-1", True, "-1", -1, -1, "0.0.0.0/0", None)]}
    ports = [PortRules("eb", ("sg-1",)), PortRules("ea", ("sg-2",))]
    one = render("lpx", ports, rules, {"sg-2": ["10.0.0.5", "10.0.0.4"]})
    two = render("lpx", list(reversed(ports)), rules, {"sg-2": ["10.0.0.4", "10.0.0.5"]})
    assert one == two
    assert "elements = { 10.0.0.4, 10.0.0.5 }" in one
    assert "ip saddr @g_sg_2 meta l4proto tcp th dport 80 accept" in one
    changed = render("lpx", ports, rules, {"sg-2": ["10.0.0.4"]})
    assert script_fingerprint(changed) != script_fingerprint(one)


def test_filters() -> None:
    attrs = {"vpc-id": ["vpc-1"], "cidr": ["10.0.0.0/16"]}
    tags = {"Name": "prod-db"}
    assert matches([{"Name": "vpc-id", "Values": ["vpc-2", "vpc-1"]}], attrs, tags)
    assert matches([{"Name": "tag:Name", "Values": ["prod-*"]},
                    {"Name": "cidr", "Values": ["10.0.0.0/1?"]}], attrs, tags)
    assert not matches([{"Name": "tag:Name", "Values": ["dev-*"]}], attrs, tags)
    assert matches([{"Name": "tag-key", "Values": ["Name"]}], attrs, tags)
    assert not matches([{"Name": "vpc-id", "Values": ["vpc-1"]},
                        {"Name": "cidr", "Values": ["10.1.0.0/16"]}], attrs, tags)


def test_ingress_rules_naming_sources_admit_the_hyperplane_ports_they_name() -> None:
    """A Hyperplane port's flows are SNATed to its ENI address after the forward chain, so
    the receiver's rules that name sources also match the ports whose address they name."""
    db = [SgRule("r1", "sg-db", False, "tcp", 5432, 5432, None, "sg-fn"),
          SgRule("r2", "sg-db", False, "tcp", 6379, 6379, "10.0.1.0/24", None),
          SgRule("r3", "sg-db", False, "tcp", 22, 22, "0.0.0.0/0", None)]
    ports = [PortRules("edb", ("sg-db",), "10.0.2.20"),
             PortRules("efn1", ("sg-fn",), "10.0.1.10", nat=True),  # in sg-fn and 10.0.1.0/24
             PortRules("efn2", ("sg-fn",), "10.0.3.10", nat=True),  # in sg-fn only
             PortRules("eother", ("sg-x",), "10.0.1.11", nat=True)]  # in 10.0.1.0/24 only
    script = render("lpx", ports, {"sg-db": db},
                    {"sg-fn": ["10.0.1.10", "10.0.3.10"]})
    ingress = script[script.index("chain in_edb"):script.index("chain out_efn1")]
    assert 'iifname { "efn1", "efn2" } meta l4proto tcp th dport 5432 accept' in ingress
    assert 'iifname { "efn1", "eother" } meta l4proto tcp th dport 6379 accept' in ingress
    assert "ip saddr @g_sg_fn meta l4proto tcp th dport 5432 accept" in ingress
    # a rule for any source needs no second line
    assert ingress.count("th dport 22") == 1
