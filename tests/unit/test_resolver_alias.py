"""The Route 53 Resolver's alias (169.254.169.253) in the VPC's nft table: DNS for it is
translated to the VPC's base + 2, never what comes in from the internet link."""
from __future__ import annotations

from lambdaplane.net.vpc import INTERNET_LINK, RESOLVER_ALIAS, resolver_alias_chain


def test_alias_is_dns_to_base_plus_two_from_inside_only() -> None:
    chain = resolver_alias_chain("10.0.0.2")
    assert RESOLVER_ALIAS == "169.254.169.253"
    assert "type nat hook prerouting priority dstnat" in chain
    assert (f'iifname != "{INTERNET_LINK}" ip daddr 169.254.169.253 meta l4proto {{ udp, tcp }}'
            " th dport 53 dnat ip to 10.0.0.2;") in chain


def test_ipv6_resolver_is_let_in() -> None:
    from lambdaplane.net.vpc import RESOLVER_IPV6, resolver_accepts
    assert RESOLVER_IPV6 == "fd00:ec2::253"
    assert resolver_accepts("10.0.0.2") == ("ip daddr 10.0.0.2 udp dport 53",
                                            "ip daddr 10.0.0.2 tcp dport 53")
    accepts = resolver_accepts("10.0.0.2", RESOLVER_IPV6)
    assert accepts[:2] == resolver_accepts("10.0.0.2")
    assert accepts[2:] == ("ip6 daddr fd00:ec2::253 udp dport 53",
                           "ip6 daddr fd00:ec2::253 tcp dport 53")
