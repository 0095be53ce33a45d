"""IPv6 through Hyperplane ENIs, the pure parts: a Hyperplane port is matched by its ENI's IPv6
address (NAT66 happens after the groups' forward chain) and only for the rule's family; the
ip6 steering table and ENI chains (net/hyperplane/ipv6.py) say what they must."""
from __future__ import annotations

from lambdaplane.net.hyperplane.ipv6 import (
    SANDBOX_NET6,
    Eni6,
    plane6_script,
    sandbox_address6,
    steering6_ruleset,
)
from lambdaplane.net.names import Names
from lambdaplane.net.security_groups import PortRules, port_rule_lines
from lambdaplane.store.ec2 import SgRule

NAT = PortRules("eni-port", ("sg-fn",), "10.0.1.5", nat=True, ipv6=("fd00:1::5",))
DB = PortRules("db-port", ("sg-db",), "10.0.2.5")


def _ingress(rule: SgRule, ipv6: bool = True) -> list[str]:
    return port_rule_lines(DB, {"sg-db": [rule]}, egress=False, nat_ports=[NAT], ipv6=ipv6)


def test_an_ipv6_rule_naming_the_enis_address_matches_its_port_for_ipv6_only() -> None:
    rule = SgRule("r", "sg-db", False, "tcp", 5432, 5432, "fd00:1::5/128", None)
    assert _ingress(rule) == ["ip6 saddr fd00:1::5/128 meta l4proto tcp th dport 5432",
                              'iifname { "eni-port" } meta nfproto ipv6 '
                              "meta l4proto tcp th dport 5432"]
    other = SgRule("r", "sg-db", False, "tcp", 5432, 5432, "fd00:1::6/128", None)
    assert _ingress(other) == ["ip6 saddr fd00:1::6/128 meta l4proto tcp th dport 5432"]


def test_an_ipv4_rule_naming_the_enis_address_admits_none_of_its_ipv6() -> None:
    rule = SgRule("r", "sg-db", False, "tcp", 5432, 5432, "10.0.1.5/32", None)
    assert _ingress(rule)[-1] == ('iifname { "eni-port" } meta nfproto ipv4 '
                                  "meta l4proto tcp th dport 5432")
    # without IPv6 in the VPC the line is what it was before
    assert _ingress(rule, ipv6=False)[-1] == 'iifname { "eni-port" } meta l4proto tcp th dport 5432'


def test_a_group_reference_matches_the_port_in_both_families() -> None:
    rule = SgRule("r", "sg-db", False, "tcp", 5432, 5432, None, "sg-fn")
    assert _ingress(rule)[-1] == 'iifname { "eni-port" } meta l4proto tcp th dport 5432'


def test_ip6_tables_steer_sandboxes_and_nat_to_the_enis_address() -> None:
    names = Names("t1")
    steering = steering6_ruleset(names)
    assert "meta mark set ip6 saddr map @steer6" in steering
    assert "meta mark != 0 notrack" in steering
    script = plane6_script(names, Eni6(3, "vpc-1", "fd00:1::5", "eni-port"))
    assert f"ct state new ip6 saddr {SANDBOX_NET6} meta l4proto {{ tcp, udp }} " \
           f"ct mark set 3 accept" in script
    assert "snat to [fd00:1::5]:1024-65535 fully-random" in script
    assert 'add element ip6 lpt1-hp6 from_port { "eni-port" : jump out3 }' in script
    assert sandbox_address6(0) == "fd6c:7000::2"
