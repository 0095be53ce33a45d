"""The worker namespace on real kernels: sandboxes reach the Runtime API port and nothing else
in the worker, never each other, and never with a forged source address. With the uplink, the
host side drops every private/host destination and masquerades the rest. All traffic here goes
to addresses inside namespaces these tests create."""
from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from lambdaplane.net import nft, ns
from lambdaplane.net.netlink import Netlink
from lambdaplane.net.worker import GATEWAY, UplinkPlan, WorkerNet
from lambdaplane.sandbox.pool import SandboxPool

from .worker_fixtures import Worker, connects, socket_in, unique_names, worker  # noqa: F401

pytestmark = pytest.mark.root


@contextlib.contextmanager
def listening(netns: str | None, address: str, port: int) -> Iterator[socket.socket]:
    sock = socket_in(netns) if netns else socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((address, port))
    sock.listen(8)
    try:
        yield sock
    finally:
        sock.close()


async def test_sandboxes_reach_runtime_port_only_and_never_each_other(worker: Worker) -> None:
    pool = SandboxPool(worker.names, worker.net, size=0)
    await pool.start()
    try:
        a, b = await pool.take(), await pool.take()
        with listening(worker.names.worker_netns, "0.0.0.0", 9001), \
                listening(worker.names.worker_netns, "0.0.0.0", 9002), \
                listening(b.netns, b.address, 7000):
            # the positive control: the same path works where it is allowed
            assert await asyncio.to_thread(connects, a.netns, GATEWAY, 9001)
            assert await asyncio.to_thread(connects, b.netns, GATEWAY, 9001)
            assert not await asyncio.to_thread(connects, a.netns, GATEWAY, 9002)
            assert not await asyncio.to_thread(connects, a.netns, b.address, 7000)
    finally:
        await pool.stop()


async def test_forged_source_addresses_are_dropped(worker: Worker) -> None:
    pool = SandboxPool(worker.names, worker.net, size=0)
    await pool.start()
    try:
        a, b = await pool.take(), await pool.take()
        with listening(worker.names.worker_netns, "0.0.0.0", 9001) as server:
            # another sandbox's address, an unused sandbox address, the gateway itself
            for forged in (b.address, "100.64.200.200", GATEWAY):
                assert not await asyncio.to_thread(connects, a.netns, GATEWAY, 9001,
                                                   source=forged), forged
            assert await asyncio.to_thread(connects, a.netns, GATEWAY, 9001, source=a.address)
            server.settimeout(1)
            _conn, peer = server.accept()
            _conn.close()
            assert peer[0] == a.address  # the listener sees the sandbox's own address
    finally:
        await pool.stop()


def _veth_into(netns: str, host_ifname: str, inside_addresses: list[str]) -> None:
    """A namespace standing in for the host's LAN: addresses only it holds, /32-routed from
    the root namespace so that traffic to them never leaves this machine."""
    ns.create(netns)
    with Netlink() as root:
        index = root.add_veth(host_ifname, "eth0", peer_netns=netns)
        root.set_up(index)
        for address in inside_addresses:
            root.add_route(f"{address}/32", index, scope_link=True)
    with Netlink(netns) as nl:
        nl.set_up("lo")
        eth0 = nl.index("eth0")
        assert eth0 is not None
        for address in inside_addresses:
            nl.add_address(eth0, address, 32)
        nl.set_up(eth0)
        nl.add_route("0.0.0.0/0", eth0, scope_link=True)


async def test_uplink_rules_and_host_networks_unreachable() -> None:
    names = unique_names()
    from lambdaplane.net.executor import NetThread
    from lambdaplane.cleanup import clean_instance, leftovers

    net = NetThread()
    wn = WorkerNet(names, uplink=True)
    lan_netns, lan_link = f"{names.prefix}-lan", f"{names.prefix}lan"
    # 198.18.0.0/15 (benchmarking) is not blocked: the positive control; 10.x is.
    open_address, private_address = "198.18.77.7", "10.254.77.7"
    forwarding_before = Path("/proc/sys/net/ipv4/ip_forward").read_text()
    pool = SandboxPool(names, net, size=0)
    try:
        await net.run(wn.setup)
        plan = UplinkPlan.for_instance(names.instance)
        host_rules = str(nft.list_json("table inet " + names.nft_table))
        for needle in ("masquerade", "10.0.0.0", "172.16.0.0", "192.168.0.0", "100.64.0.0",
                       "169.254.0.0", "127.0.0.0", "224.0.0.0", str(plan.network.network_address)):
            assert needle in host_rules, needle
        await net.run(_veth_into, lan_netns, lan_link, [open_address, private_address])
        await pool.start()
        box = await pool.take()
        with listening(None, plan.host_address, 7001), \
                listening(lan_netns, open_address, 7002) as open_server, \
                listening(lan_netns, private_address, 7003):
            assert await asyncio.to_thread(connects, box.netns, open_address, 7002, 2.0)
            open_server.settimeout(1)
            conn, peer = open_server.accept()
            conn.close()
            assert not peer[0].startswith("100.64."), "sandbox address leaked past the NAT"
            assert not await asyncio.to_thread(connects, box.netns, private_address, 7003)
            assert not await asyncio.to_thread(connects, box.netns, plan.host_address, 7001)
    finally:
        await pool.stop()
        await net.run(ns.delete, lan_netns)
        await net.run(_delete_root_link, lan_link)
        await net.run(wn.teardown)
        net.close()
        left = await asyncio.to_thread(leftovers, names.instance)
        await asyncio.to_thread(clean_instance, names.instance)
    assert Path("/proc/sys/net/ipv4/ip_forward").read_text() == forwarding_before
    assert not left, left


def _delete_root_link(name: str) -> None:
    with Netlink() as root:
        root.delete_link(name)


async def test_reconcile_worker_repairs_drift_and_then_changes_nothing(worker: Worker) -> None:
    """The worker namespace is reconciled like the VPC namespaces (net/worker.py
    reconcile_worker): a sysctl flipped, `lo` down, the isolation table removed or edited by
    hand — each put back; a second run changes nothing."""
    from lambdaplane.net.worker import reconcile_worker
    names, netns = worker.names, worker.names.worker_netns
    assert await worker.net.run(reconcile_worker, names, False) == []

    def drift() -> None:
        with ns.entered(netns):
            Path("/proc/sys/net/ipv4/conf/default/rp_filter").write_text("0")
        subprocess.run(["ip", "-n", netns, "link", "set", "lo", "down"], check=True)
        nft.apply(f"delete chain inet {names.nft_table} output_raw", netns)

    await worker.net.run(drift)
    changes = await worker.net.run(reconcile_worker, names, False)
    assert f"set net.ipv4.conf.default.rp_filter=1 in {netns}" in changes
    assert f"set lo up in {netns}" in changes
    assert f"applied the isolation table in {netns}" in changes
    table = await worker.net.run(nft.list_text, f"table inet {names.nft_table}", netns)
    assert table is not None and "chain output_raw" in table
    await worker.net.run(nft.apply, f"delete table inet {names.nft_table}", netns)
    assert await worker.net.run(reconcile_worker, names, False) == [
        f"applied the isolation table in {netns}"]
    assert await worker.net.run(reconcile_worker, names, False) == []


async def test_reconcile_worker_puts_the_uplink_back() -> None:
    """The uplink is part of the worker step: its root-namespace table deleted, then its veth
    deleted (both ends, their addresses and the worker's default route go with it) — each put
    back by reconcile_worker, read back from the kernel; a second run changes nothing. No
    packet is sent."""
    from lambdaplane.cleanup import clean_instance, leftovers
    from lambdaplane.net.executor import NetThread
    from lambdaplane.net.names import UPLINK_WORKER_IFNAME
    from lambdaplane.net.worker import reconcile_worker

    names = unique_names()
    net = NetThread()
    wn = WorkerNet(names, uplink=True)
    plan = UplinkPlan.for_instance(names.instance)
    forwarding_before = Path("/proc/sys/net/ipv4/ip_forward").read_text()
    root_table = ("inet", names.nft_table)

    def uplink_state() -> tuple[bool, set[tuple[str, int]], set[tuple[str, int]], bool]:
        with Netlink() as root, Netlink(names.worker_netns) as nl:
            host_end = root.index(names.uplink_host) is not None
            host_addrs = root.addresses(names.uplink_host) if host_end else set()
            inner = nl.link(UPLINK_WORKER_IFNAME)
            inner_addrs = nl.addresses(inner.index) if inner is not None else set()
            route = inner is not None and ("", 0, inner.index, plan.host_address) in nl.routes()
        return host_end, host_addrs, inner_addrs, route

    whole = (True, {(plan.host_address, 30)}, {(plan.worker_address, 30)}, True)
    try:
        await net.run(wn.setup)
        assert await net.run(reconcile_worker, names, True) == []
        assert await net.run(uplink_state) == whole

        await net.run(nft.delete_table, *root_table, None)
        assert root_table not in await net.run(nft.tables, names.nft_table, None)
        assert await net.run(reconcile_worker, names, True) == [
            f"applied the uplink table {names.nft_table} in the root namespace"]
        assert root_table in await net.run(nft.tables, names.nft_table, None)
        rules = str(await net.run(nft.list_json, "table inet " + names.nft_table))
        assert "masquerade" in rules and str(plan.network.network_address) in rules

        await net.run(_delete_root_link, names.uplink_host)
        assert await net.run(uplink_state) == (False, set(), set(), False)
        changes = await net.run(reconcile_worker, names, True)
        assert f"made the uplink {names.uplink_host}" in changes
        assert f"added the default route via {plan.host_address} in {names.worker_netns}" \
            in changes
        assert await net.run(uplink_state) == whole
        assert await net.run(reconcile_worker, names, True) == []
    finally:
        await net.run(wn.teardown)
        net.close()
        left = await asyncio.to_thread(leftovers, names.instance)
        await asyncio.to_thread(clean_instance, names.instance)
    assert Path("/proc/sys/net/ipv4/ip_forward").read_text() == forwarding_before
    assert not left, left
