"""An ENI's port guard and the port read of a plane (net/hyperplane.py's port-exhaustion part),
on the real data path of tests/net/test_hyperplane.py (real worker, sandboxes, planes and a
stand-in VPC with a TCP server): a narrowed ENI refuses the flow it has no port for at once and
counts it per ENI; without a guard the SYN is dropped and the plane's insert_failed counts it;
the guard goes away completely; full ranges are not guarded."""
from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import pytest

from lambdaplane.net import hyperplane as hp
from lambdaplane.net import nft
from tests.net.test_hyperplane import ENI_ADDR, RESOURCE, Env, connect, environment

pytestmark = pytest.mark.root

NARROW = "2000-2001"


@pytest.fixture
def env() -> Iterator[Env]:
    """A fresh data path per test: closed flows linger in TIME_WAIT holding their NAT ports."""
    with environment(sandboxes=2) as e:
        yield e


@contextlib.contextmanager
def narrowed(env: Env, guard: bool) -> Iterator[tuple[int, str]]:
    """vpc-b's ENI with two SNAT ports (guarded or not) and sandbox 1 steered to it."""
    names, eni, box = env.names, env.vpcs["vpc-b"].eni, env.boxes[1]
    hp.ensure_eni(names, eni, ports=NARROW)
    if guard:
        assert hp.ensure_port_guard(names, "vpc-b", eni.n, NARROW)
    hp.attach(names, box.address, eni.n)
    try:
        yield eni.n, box.netns
    finally:
        hp.detach(names, box.address)
        hp.remove_port_guard(names, "vpc-b", eni.n)
        hp.ensure_eni(names, eni)


def test_guard_refuses_at_once_and_counts_per_eni(env: Env) -> None:
    names = env.names
    with narrowed(env, guard=True) as (n, netns):
        assert hp.port_guards(names, "vpc-b") == {n: 2}
        assert hp.ensure_port_guard(names, "vpc-b", n, NARROW)  # same range: left alone
        before = hp.plane_ports(names, "vpc-b")
        held = [connect(netns, RESOURCE) for _ in range(2)]
        try:
            assert {s.recv(100).decode().strip() for s in held} == {f"B {ENI_ADDR}"}
            started = time.monotonic()
            with pytest.raises(ConnectionRefusedError):  # the guard's reset, not a timeout
                connect(netns, RESOURCE, timeout=5)
            assert time.monotonic() - started < 4
            after = hp.plane_ports(names, "vpc-b", destinations=True)
            assert after.refused[n] == before.refused.get(n, 0) + 1
            assert after.ranges[n] == 2
            assert after.flows[ENI_ADDR] == 2 and after.busiest[ENI_ADDR] == 2
            assert after.insert_failed == before.insert_failed  # NAT never saw the flow
        finally:
            for s in held:
                s.close()
        # vpc-a's ENI (full range) is not guarded and has its own counters
        assert env.vpcs["vpc-a"].eni.n not in hp.port_guards(names, "vpc-a")
    assert hp.port_guards(names, "vpc-b") == {}
    objects = nft.list_json(f"table ip {names.port_guard_table}",
                            names.vpc_netns("vpc-b"))
    left = {o[kind]["name"] for o in objects for kind in ("chain", "set", "counter") if kind in o}
    assert not left & {f"guard{n}", f"dst{n}", f"refused{n}"}


def test_without_guard_the_syn_is_dropped_and_insert_failed_counts_it(env: Env) -> None:
    names = env.names
    with narrowed(env, guard=False) as (n, netns):
        before = hp.plane_ports(names, "vpc-b")
        held = [connect(netns, RESOURCE) for _ in range(2)]
        try:
            with pytest.raises(OSError) as err:
                connect(netns, RESOURCE, timeout=1.5)
            assert not isinstance(err.value, ConnectionRefusedError)  # a timeout
            after = hp.plane_ports(names, "vpc-b")
            assert after.insert_failed > before.insert_failed
            assert n not in after.refused
        finally:
            for s in held:
                s.close()


def test_full_range_is_not_guarded(env: Env) -> None:
    names, n = env.names, env.vpcs["vpc-b"].eni.n
    assert not hp.ensure_port_guard(names, "vpc-b", n, hp.SNAT_PORTS)
    assert hp.port_guards(names, "vpc-b") == {}
