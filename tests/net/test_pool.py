"""The sandbox pool on real namespaces: take is immediate from a filled pool, the pool refills
in the background, release recycles a pristine sandbox into a pool that wants one and otherwise
removes the namespace and (asynchronously) its veth, stop leaves nothing."""
from __future__ import annotations

import asyncio
import socket

import pytest

from lambdaplane.net import ns
from lambdaplane.net.netlink import Netlink
from lambdaplane.net.worker import GATEWAY
from lambdaplane.sandbox import pool as pool_module
from lambdaplane.sandbox.pool import SandboxPool

from .worker_fixtures import Worker, worker  # noqa: F401  (fixture)

pytestmark = pytest.mark.root


def _addresses(netns: str, ifname: str) -> list[str]:
    with Netlink(netns) as nl:
        index = nl.index(ifname)
        return [m.get_attr("IFA_ADDRESS") for m in nl._ipr.get_addr(index=index, family=2)]


def _routes(netns: str) -> set[tuple[str | None, int, str | None]]:
    with Netlink(netns) as nl:
        return {(m.get_attr("RTA_DST"), m["dst_len"], m.get_attr("RTA_GATEWAY"))
                for m in nl._ipr.get_routes(family=2, table=254)}


def _links(netns: str) -> dict[str, bool]:
    with Netlink(netns) as nl:
        return {link.name: link.up for link in nl.links()}


async def _eventually(predicate, timeout_s: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition never became true"
        await asyncio.sleep(0.01)


async def test_take_refill_release_leaves_nothing(worker: Worker) -> None:
    pool = SandboxPool(worker.names, worker.net, size=2)
    await pool.start()
    try:
        await pool.fill()
        assert pool.stats()["pool_ready"] == 2
        box = await pool.take()
        assert ns.exists(box.netns)
        # eth0 is configured inside the sandbox; the worker end holds the shared gateway
        run = worker.net.run
        assert await run(_addresses, box.netns, "eth0") == [box.address]
        assert box.address.startswith("100.64.")
        assert await run(_routes, box.netns) >= {(GATEWAY, 32, None), (None, 0, GATEWAY)}
        assert await run(_addresses, worker.names.worker_netns, box.veth) == [GATEWAY]
        assert (box.address, 32, None) in await run(_routes, worker.names.worker_netns)
        assert await run(_links, box.netns) == {"lo": True, "eth0": True}

        await _eventually(lambda: pool.stats()["pool_ready"] == 2)  # refilled
        await pool.release(box.slot)  # the pool is full: deleted, not recycled
        assert not ns.exists(box.netns)
        for _ in range(500):  # the kernel removes the veth pair with the namespace, shortly
            if box.veth not in await run(_links, worker.names.worker_netns):
                break
            await asyncio.sleep(0.01)
        assert box.veth not in await run(_links, worker.names.worker_netns)
    finally:
        await pool.stop()
    assert ns.list_named(worker.names.prefix + "-s") == []
    assert [n for n in await worker.net.run(_links, worker.names.worker_netns)
            if n.startswith(worker.names.prefix)] == []


async def test_take_from_empty_pool_builds_one(worker: Worker,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pool_module, "SLOT_QUARANTINE_S", 0.2)
    pool = SandboxPool(worker.names, worker.net, size=0)
    await pool.start()
    try:
        first, second = await asyncio.gather(pool.take(), pool.take())
        assert first.slot != second.slot and first.address != second.address
        assert ns.exists(first.netns) and ns.exists(second.netns)
        await pool.release(first.slot)
        assert (await pool.take()).slot not in (first.slot, second.slot)  # quarantined
        await asyncio.sleep(0.3)
        third = await pool.take()
        assert third.slot == first.slot  # released slots (and addresses) are reused, later
    finally:
        await pool.stop()
    assert ns.list_named(worker.names.prefix + "-s") == []


async def test_release_recycles_only_pristine_sandboxes(worker: Worker) -> None:
    pool = SandboxPool(worker.names, worker.net, size=1)
    await pool.start()
    try:
        await pool.fill()
        box = await pool.take()
        await _eventually(lambda: pool.stats()["pool_ready"] == 1)
        pool.size = 2  # the pool wants one more: a pristine sandbox goes back as it is
        await pool.release(box.slot)
        assert pool.stats()["pool_recycled"] == 1 and box in pool._ready
        assert ns.exists(box.netns)

        dirty = await pool.take()
        listener = await worker.net.run(_listen_in, dirty.netns)  # the next user would see it
        try:
            await pool.release(dirty.slot)
        finally:
            listener.close()
        assert pool.stats()["pool_recycled"] == 1 and not ns.exists(dirty.netns)
    finally:
        await pool.stop()
    assert ns.list_named(worker.names.prefix + "-s") == []


def _listen_in(netns: str) -> socket.socket:
    with ns.entered(netns):
        sock = socket.socket()
    sock.bind(("0.0.0.0", 8080))
    sock.listen()
    return sock


async def test_start_removes_a_crashed_servers_sandboxes(worker: Worker) -> None:
    crashed = SandboxPool(worker.names, worker.net, size=0)
    await crashed.start()
    box = await crashed.take()
    crashed._refill_task.cancel()  # a crash: nothing is released  # type: ignore[union-attr]
    await worker.net.run(crashed._worker.close)  # type: ignore[union-attr]

    pool = SandboxPool(worker.names, worker.net, size=1)
    await pool.start()
    try:
        again = await pool.take()  # the same slot number: would collide without the cleanup
        assert again.slot == box.slot and ns.exists(again.netns)
    finally:
        await pool.stop()
    assert ns.list_named(worker.names.prefix + "-s") == []


def _counters_with_udp_bound(netns: str) -> tuple[bool, bool]:
    """(no socket in use before, after binding a UDP socket) inside `netns`."""
    with ns.entered(netns):
        before = pool_module._no_socket_in_use()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.bind(("0.0.0.0", 5353))
            after = pool_module._no_socket_in_use()
        finally:
            sock.close()
    return before, after


async def test_the_socket_counters_see_a_bound_socket(worker: Worker) -> None:
    pool = SandboxPool(worker.names, worker.net, size=0)
    await pool.start()
    try:
        box = await pool.take()
        assert await worker.net.run(_counters_with_udp_bound, box.netns) == (True, False)
        assert await worker.net.run(pool_module.is_pristine, box)
    finally:
        await pool.stop()
    assert ns.list_named(worker.names.prefix + "-s") == []
