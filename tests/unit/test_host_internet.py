"""The host-uplink internet of VPC gateways as data: its /30, what it refuses, the order of the
rules in both nft tables (refusal before anything is let out), that nft accepts the scripts
(a dry run: nothing is applied), and when the server uses it at all."""
from __future__ import annotations

import ipaddress
import subprocess

import pytest

from lambdaplane.config import Settings
from lambdaplane.net import host_internet
from lambdaplane.net.names import Names
from lambdaplane.net.worker import BLOCKED_DESTINATIONS, UplinkPlan
from lambdaplane.service.host_internet import adopt

NAMES = Names("abc")


def test_plan_is_link_local_and_never_the_functions_uplink() -> None:
    for i in range(300):
        names = Names(f"{i:03d}")
        plan = host_internet.uplink_plan(names)
        assert plan.network != UplinkPlan.for_instance(names.instance).network
        assert plan.network.prefixlen == 30
        assert plan.network.subnet_of(ipaddress.IPv4Network("169.254.0.0/16"))
    assert host_internet.uplink_plan(NAMES) == host_internet.uplink_plan(Names("abc"))


def test_refused_covers_what_functions_are_refused_plus_pool_and_host_networks() -> None:
    refused = host_internet.refused_destinations("198.51.100.0/24", ("192.0.2.0/24",
                                                                     "10.0.0.0/8"))
    assert refused[:len(BLOCKED_DESTINATIONS)] == BLOCKED_DESTINATIONS
    assert "198.51.100.0/24" in refused and "192.0.2.0/24" in refused
    assert len(refused) == len(set(refused))  # 10.0.0.0/8 only once
    # a pool given loosely is normalised
    assert "203.0.113.0/24" in host_internet.refused_destinations("203.0.113.7/24", ())
    # documentation ranges are not refused unless they are the pool or the host's network
    assert "203.0.113.0/24" not in refused


def _rules(script: str, chain: str) -> list[str]:
    body = script.split(f"chain {chain} {{\n", 1)[1].split("    }\n", 1)[0]
    return [line.strip() for line in body.splitlines()[1:]]


def test_internet_table_refuses_before_it_lets_out() -> None:
    script = host_internet.internet_ruleset(NAMES, host_internet.refused_destinations(
        "198.51.100.0/24", ()))
    assert script.startswith("table inet lpabc-ug\ndelete table inet lpabc-ug\n")
    forward = _rules(script, "forward")
    assert forward == [
        'oifname "up0" meta nfproto ipv6 counter name "refused" drop',
        'oifname "up0" ip daddr @refused counter name "refused" drop',
        'oifname "up0" counter name "out" accept',
        'iifname "up0" ct state established,related accept',
        'iifname "up0" counter name "inbound_refused" drop']
    assert _rules(script, "output") == forward[:2]  # the namespace's own sockets too
    assert _rules(script, "input")[-1] == 'iifname "up0" counter name "inbound_refused" drop'
    assert _rules(script, "postrouting") == ['oifname "up0" masquerade']
    for blocked in BLOCKED_DESTINATIONS + ("198.51.100.0/24",):
        assert blocked in script.split("set refused", 1)[1].split("\n", 1)[0]


def test_root_table_is_the_functions_uplink_rules_for_this_link() -> None:
    plan = host_internet.uplink_plan(NAMES)
    script = host_internet.root_ruleset(NAMES, plan, ("192.0.2.0/24",))
    assert script.startswith("table inet lpabc-ug\n")
    forward = _rules(script, "forward")
    assert forward[:2] == ['iifname "lpabcug" meta nfproto ipv6 drop',
                           'iifname "lpabcug" ip daddr { '
                           + ", ".join(BLOCKED_DESTINATIONS + ("192.0.2.0/24",)) + " } drop"]
    assert forward[-1] == 'oifname "lpabcug" drop'  # nothing in but replies
    assert _rules(script, "postrouting") == [
        f'ip saddr {plan.network} oifname != "lpabcug" masquerade']
    assert 'iifname "lpabcug" drop' in _rules(script, "input")  # not the host itself


@pytest.mark.root
def test_nft_accepts_both_scripts() -> None:
    plan = host_internet.uplink_plan(NAMES)
    for script in (host_internet.internet_ruleset(NAMES, host_internet.refused_destinations(
            "198.51.100.0/24", ("192.0.2.0/24", "100.64.0.0/10"))),
                   host_internet.root_ruleset(NAMES, plan, ("192.0.2.0/24",))):
        check = subprocess.run(["nft", "--check", "-f", "-"], input=script, text=True,
                               capture_output=True)  # checked, never applied
        assert check.returncode == 0, check.stderr


def test_used_only_with_the_uplink_and_no_internet_netns() -> None:
    s = Settings(instance="abc")
    assert adopt(s, NAMES) and s.internet_via_uplink
    assert s.internet_netns == "lpabc-uplink"
    off = Settings(instance="abc", uplink=False)
    assert not adopt(off, NAMES) and off.internet_netns == "" and not off.internet_via_uplink
    given = Settings(instance="abc", internet_netns="theirs")
    assert not adopt(given, NAMES) and given.internet_netns == "theirs"
    assert not given.internet_via_uplink


def test_counters_parsed_from_nft_json() -> None:
    listing = [{"table": {"family": "inet", "name": "lpabc-ug", "handle": 1}},
               {"counter": {"family": "inet", "name": "refused", "table": "lpabc-ug",
                            "handle": 2, "packets": 7, "bytes": 420}},
               {"counter": {"family": "inet", "name": "inbound_refused", "table": "lpabc-ug",
                            "handle": 3, "packets": 0, "bytes": 0}},
               {"counter": {"family": "inet", "name": "out", "table": "lpabc-ug",
                            "handle": 4, "packets": 12, "bytes": 3000}},
               {"chain": {"family": "inet", "name": "forward", "table": "lpabc-ug"}}]
    got = host_internet.parse_counters(listing)
    assert got == {"refused": host_internet.CounterReading(7, 420),
                   "inbound_refused": host_internet.CounterReading(0, 0),
                   "out": host_internet.CounterReading(12, 3000)}
    assert host_internet.parse_counters([]) == {}
    # every counter the table declares is one the readers know
    names = {host_internet.REFUSED_COUNTER, host_internet.INBOUND_COUNTER,
             host_internet.OUT_COUNTER}
    assert names == set(got)


def test_counters_in_metrics_and_net_show() -> None:
    import asyncio

    from prometheus_client import CollectorRegistry, generate_latest

    from lambdaplane.commands.net_routes import render
    from lambdaplane.uplink_metrics import HostUplinkMetrics

    class Uplink:
        async def counters(self) -> dict[str, host_internet.CounterReading]:
            return {"refused": host_internet.CounterReading(6, 360),
                    "out": host_internet.CounterReading(3, 180)}

    class Platform:
        host_internet = Uplink()

    collector = HostUplinkMetrics(Platform())
    asyncio.run(collector.refresh())
    registry = CollectorRegistry()
    registry.register(collector)
    text = generate_latest(registry).decode()
    assert "lambdaplane_vpc_uplink_refused_packets_total 6.0" in text
    assert "lambdaplane_vpc_uplink_refused_bytes_total 360.0" in text
    assert "lambdaplane_vpc_uplink_out_packets_total 3.0" in text
    assert "# HELP lambdaplane_vpc_uplink_refused_packets_total Packets leaving" in text
    assert "\nlambdaplane_vpc_uplink_inbound_refused_packets_total " not in text  # not read
    # a server without the host uplink: the families, no samples
    idle = HostUplinkMetrics(object())
    asyncio.run(idle.refresh())
    assert list(idle.collect()) and all(not f.samples for f in idle.collect())
    lines = render({"internet_netns": "lpabc-uplink", "internet_via_uplink": True, "vpcs": [],
                    "uplink_counters": {"refused": {"packets": 6, "bytes": 360}}})
    assert "    refused before the uplink (refused destination or IPv6): 6 packets, " \
           "360 bytes" in lines
