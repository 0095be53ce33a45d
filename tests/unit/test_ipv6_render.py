"""IPv6 in the pure parts: the /56 a VPC gets, security group and network ACL rendering with and
without IPv6 (without it, a VPC's table is what it was before IPv6 existed), IPv6 rules from
AWS's permissions."""
from __future__ import annotations

import ipaddress

import pytest

from lambdaplane.errors import AwsError
from lambdaplane.model.network_acls import AclEntry
from lambdaplane.net.network_acls import AclPort, render_chains
from lambdaplane.net.security_groups import PortRules, render
from lambdaplane.service.ipv6 import vpc_block_for
from lambdaplane.service.sg_rules import rules_from_permissions
from lambdaplane.store.ec2 import SgRule


def test_vpc_blocks_are_unique_local_56s() -> None:
    blocks = {vpc_block_for(f"vpc-cidr-assoc-{i:08x}") for i in range(200)}
    assert len(blocks) == 200
    for block in blocks:
        assert block.prefixlen == 56 and block.subnet_of(ipaddress.IPv6Network("fd00::/8"))
    assert vpc_block_for("a") == vpc_block_for("a") != vpc_block_for("a", 1)


def _rules() -> dict[str, list[SgRule]]:
    return {"sg-1": [
        SgRule("sgr-1", "sg-1", False, "tcp", 80, 80, "0.0.0.0/0", None),
        SgRule("sgr-2", "sg-1", False, "tcp", 443, 443, "fd00::/8", None),
        SgRule("sgr-3", "sg-1", False, "-1", -1, -1, None, "sg-1"),
        SgRule("sgr-4", "sg-1", True, "-1", -1, -1, "::/0", None),
        SgRule("sgr-5", "sg-1", False, "58", 128, -1, "::/0", None)]}


def test_groups_without_ipv6_render_as_before() -> None:
    ports = [PortRules("p1", ("sg-1",), "10.0.0.5")]
    rules = {"sg-1": [r for r in _rules()["sg-1"] if r.id in ("sgr-1", "sgr-3")]}
    script = render("t", ports, rules, {"sg-1": ["10.0.0.5", "fd00::5"]})
    assert "meta nfproto != ipv4 drop" in script
    assert "g6_" not in script and "nd-neighbor" not in script
    assert "ip saddr @g_sg_1 accept" in script and "tcp th dport 80 accept" in script


def test_groups_with_ipv6_judge_each_family() -> None:
    ports = [PortRules("p1", ("sg-1",), "10.0.0.5")]
    script = render("t", ports, _rules(), {"sg-1": ["10.0.0.5", "fd00::5"]}, ipv6=True)
    assert "meta nfproto != ipv4 drop" not in script
    assert "set g_sg_1 { type ipv4_addr; elements = { 10.0.0.5 }; }" in script
    assert "set g6_sg_1 { type ipv6_addr; elements = { fd00::5 }; }" in script
    assert "meta nfproto ipv4 meta l4proto tcp th dport 80 accept" in script
    assert "ip6 saddr fd00::/8 meta l4proto tcp th dport 443 accept" in script
    assert "ip saddr @g_sg_1 accept" in script and "ip6 saddr @g6_sg_1 accept" in script
    assert "meta nfproto ipv6 goto deliver" in script
    assert "meta nfproto ipv6 meta l4proto ipv6-icmp icmpv6 type 128 accept" in script
    assert "icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert } accept" in script


def test_acls_with_ipv6() -> None:
    ports = [AclPort("p1", "subnet-a"), AclPort("p2", "subnet-b")]
    assoc = {"subnet-a": "acl-1", "subnet-b": "acl-1"}
    v4_only = [AclEntry("acl-1", e, 100, "-1", True, "0.0.0.0/0") for e in (False, True)]
    both = v4_only + [AclEntry("acl-1", e, 101, "-1", True, "::/0") for e in (False, True)]
    # AWS's default ACL in a dual-stack VPC allows everything: nothing is rendered
    assert render_chains(ports, assoc, both, ipv6=True) == ""
    # without the IPv6 allow, IPv6 meets the `*` rule; IPv4 entries match IPv4 only
    chains = render_chains(ports, assoc, v4_only, ipv6=True)
    assert "meta nfproto ipv4 return" in chains
    # a VPC without IPv6 renders as before
    assert render_chains(ports, assoc, v4_only) == ""
    deny = AclEntry("acl-1", False, 90, "6", False, "fd00:1::/64", 80, 80)
    chains = render_chains(ports, assoc, both + [deny], ipv6=True)
    assert "ip6 saddr fd00:1::/64 meta l4proto tcp th dport 80 drop" in chains
    icmp6 = AclEntry("acl-1", True, 80, "58", True, "::/0", icmp_type=128, icmp_code=-1)
    chains = render_chains(ports, assoc, both + [icmp6], ipv6=True)
    assert "meta nfproto ipv6 meta l4proto ipv6-icmp icmpv6 type 128 return" in chains


def test_ipv6_ranges_become_rules() -> None:
    (v4, v6) = rules_from_permissions("sg-1", False, [
        {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22,
         "IpRanges": [{"CidrIp": "10.0.0.0/8"}],
         "Ipv6Ranges": [{"CidrIpv6": "fd00:0:0:1::5/64", "Description": "d"}]}], lambda p: "")
    assert v4.cidr == "10.0.0.0/8" and (v6.cidr, v6.description) == ("fd00:0:0:1::/64", "d")
    with pytest.raises(AwsError) as err:
        rules_from_permissions("sg-1", False, [
            {"IpProtocol": "-1", "Ipv6Ranges": [{"CidrIpv6": "10.0.0.0/8"}]}], lambda p: "")
    assert err.value.code == "InvalidParameterValue"
