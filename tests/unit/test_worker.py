"""The worker's address plan and rulesets as data (no root): addresses per slot, the uplink /30
derived from the instance id, and what the nft scripts allow and drop."""
from __future__ import annotations

import ipaddress

import pytest

from lambdaplane.net.names import Names
from lambdaplane.net.worker import (BLOCKED_DESTINATIONS, GATEWAY, UplinkPlan, host_ruleset,
                                    sandbox_address, worker_ruleset)


def test_sandbox_addresses_are_distinct_cgnat_hosts() -> None:
    addresses = {sandbox_address(slot) for slot in range(1000)}
    assert len(addresses) == 1000
    assert all(ipaddress.ip_address(a) in ipaddress.ip_network("100.64.0.0/10")
               for a in addresses)
    assert sandbox_address(0) == "100.64.0.2"
    with pytest.raises(ValueError):
        sandbox_address(2 ** 22)


def test_uplink_plan_is_a_stable_link_local_30_clear_of_the_gateway() -> None:
    plans = {UplinkPlan.for_instance(f"{i:03d}").network for i in range(500)}
    assert len(plans) > 450  # instance ids rarely share a link subnet
    for net in plans:
        assert net.prefixlen == 30 and net.subnet_of(ipaddress.ip_network("169.254.0.0/16"))
        assert ipaddress.ip_address(GATEWAY) not in net
        assert ipaddress.ip_address("169.254.169.254") not in net
    plan = UplinkPlan.for_instance("abc")
    assert plan == UplinkPlan.for_instance("abc")
    assert {plan.host_address, plan.worker_address} == {str(h) for h in plan.network.hosts()}


def test_worker_ruleset_isolates_sandboxes() -> None:
    rules = worker_ruleset(Names("abc"), uplink=False, api_port=9001)
    assert 'iifname "lpabcs*" oifname "lpabcs*" drop' in rules
    assert "fib saddr . iif oif missing drop" in rules
    assert "ip daddr 169.254.1.1 tcp dport 9001 accept" in rules
    assert "policy drop" in rules and "masquerade" not in rules
    with_uplink = worker_ruleset(Names("abc"), uplink=True)
    assert 'oifname "up0" accept' in with_uplink and "masquerade" in with_uplink


def test_host_ruleset_blocks_private_ranges_and_host_networks() -> None:
    plan = UplinkPlan.for_instance("abc")
    rules = host_ruleset(Names("abc"), plan, ("192.0.2.0/24",))
    for blocked in BLOCKED_DESTINATIONS + ("192.0.2.0/24",):
        assert blocked in rules
    assert f"ip saddr {plan.network}" in rules and "masquerade" in rules
    assert 'iifname "lpabcup" drop' in rules  # nothing from sandboxes to the host itself
