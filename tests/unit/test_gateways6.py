"""net/gateways6.py's pure half: the kernel routes an IPv6 route becomes and the stateful rule
of the gateway link (what comes in: replies always, new connections only where an internet
gateway route leads)."""
from __future__ import annotations

from lambdaplane.net import gateways6
from lambdaplane.net.gateways6 import Ipv6GatewaySpec, Route6


def _spec(open_in: tuple[tuple[str, str], ...] = ()) -> Ipv6GatewaySpec:
    return Ipv6GatewaySpec(
        "vpc-1", "lp1v1", "lpt0", "lp1g1", ("fd12:3456:789a:100::/56",),
        {gateways6.TABLE_BASE: (Route6("::/0", "unicast", gateways6.INTERNET_SIDE_LL,
                                       gateways6.LINK),
                                Route6("fd12:3456:789a:100::/56", "blackhole"))},
        (("lp1p1", gateways6.TABLE_BASE),), open_in, "lp1-gw6")


def test_routes_become_ip_arguments() -> None:
    assert Route6("::/0", "unicast", "fe80::2", "igw0").ip_args() == \
        ["::/0", "via", "fe80::2", "dev", "igw0"]
    assert Route6("2001:db8::/32", "blackhole").ip_args() == ["blackhole", "2001:db8::/32"]


def test_egress_only_lets_replies_in_and_nothing_new() -> None:
    script = _spec().nft_script()
    assert 'iifname "igw0" ct state established,related accept' in script
    assert 'iifname "igw0" drop' in script
    assert "saddr" not in script  # no new connection is let in anywhere
    assert script.startswith("add table ip6 lp1-gw6\ndelete table ip6 lp1-gw6\n")


def test_internet_gateway_routes_open_their_subnets_to_their_sources() -> None:
    script = _spec((("fd12:3456:789a:100::/64", "::/0"),)).nft_script()
    opened = 'iifname "igw0" ip6 daddr fd12:3456:789a:100::/64 ip6 saddr ::/0 accept'
    assert opened in script
    assert script.index(opened) < script.index('iifname "igw0" drop')
    assert script != _spec().nft_script()  # another rule, another digest: it is reapplied


def test_emptied_spec_removes_everything() -> None:
    gone = gateways6.emptied(_spec())
    assert (gone.internet_netns, gone.tables, gone.rules, gone.blocks) == ("", {}, (), ())
    assert (gone.netns, gone.nft_table) == ("lp1v1", "lp1-gw6")
