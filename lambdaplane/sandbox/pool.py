"""The pool of pre-made sandbox network namespaces, so a cold start never waits for netns +
veth + addresses (≈5–7 ms here).

Owns the sandbox namespaces `lp<i>-s<slot>` and their veths: worker end `lp<i>s<slot>` (holding
the /32 gateway 169.254.1.1 and a /32 route to the sandbox), peer `eth0` created directly inside
the sandbox namespace (never moved), with the slot's 100.64.x.y/32, a scope-link route to the
gateway and a default route via it. All kernel work runs on the NetThread; `take()` only touches
the kernel when the pool is empty."""
from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from dataclasses import dataclass

from ..net import ns
from ..net.executor import NetThread
from ..net.names import Names
from ..net.netlink import Netlink
from ..net.worker import GATEWAY, sandbox_address

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Sandbox:
    slot: int
    netns: str
    address: str  # the sandbox's own 100.64.x.y (its Runtime API identity)
    veth: str  # worker-side link name

    @property
    def netns_path(self) -> str:
        return str(ns.netns_path(self.netns))


def build_sandbox(names: Names, worker: Netlink, slot: int) -> Sandbox:
    """Create one sandbox namespace, wired to the worker. NetThread only."""
    box = Sandbox(slot, names.sandbox_netns(slot), sandbox_address(slot), names.sandbox_veth(slot))
    ns.create(box.netns)
    try:
        index = worker.add_veth(box.veth, "eth0", peer_netns=box.netns)
        worker.add_address(index, GATEWAY, 32)
        worker.set_up(index)
        worker.add_route(f"{box.address}/32", index, scope_link=True)
        with Netlink(box.netns) as inside:
            inside.set_up("lo")
            eth0 = inside.index("eth0")
            assert eth0 is not None
            inside.add_address(eth0, box.address, 32)
            inside.set_up(eth0)
            inside.add_route(f"{GATEWAY}/32", eth0, scope_link=True)
            inside.add_route("0.0.0.0/0", eth0, gateway=GATEWAY)
    except BaseException:
        destroy_sandbox(worker, box)
        raise
    return box


def destroy_sandbox(worker: Netlink, box: Sandbox) -> None:
    """Remove one sandbox's veth and namespace (idempotent). NetThread only."""
    worker.delete_link(box.veth)
    ns.delete(box.netns)


def remove_stale_sandboxes(names: Names, worker: Netlink) -> None:
    """A crashed server's sandboxes (same instance): their names would collide with new ones."""
    veth_prefix = names.sandbox_veth(0)[:-1]
    for link in worker.links(veth_prefix):
        if link.name[len(veth_prefix):].isdigit():
            worker.delete_link(link.name)
    netns_prefix = names.sandbox_netns(0)[:-1]
    for netns in ns.list_named(netns_prefix):
        if netns[len(netns_prefix):].isdigit():
            ns.delete(netns)


class SandboxPool:
    def __init__(self, names: Names, net: NetThread, size: int) -> None:
        self.names = names
        self.net = net
        self.size = size
        self._ready: deque[Sandbox] = deque()
        self._in_use: dict[int, Sandbox] = {}
        self._free_slots: list[int] = []  # released slots, reused lowest first
        self._next_slot = 0
        self._worker: Netlink | None = None
        self._wanted = asyncio.Event()
        self._refill_task: asyncio.Task[None] | None = None
        self._building = 0

    # lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        """Open the worker's netlink handle (the worker netns must exist) and start refilling."""
        self._worker = await self.net.run(Netlink, self.names.worker_netns)
        await self.net.run(remove_stale_sandboxes, self.names, self._worker)
        self._refill_task = asyncio.create_task(self._refill_loop(), name="lp-pool-refill")
        self._wanted.set()

    async def fill(self) -> None:
        """Wait until the pool holds `size` ready sandboxes (tests, benchmarks)."""
        while len(self._ready) < self.size:
            self._wanted.set()
            await asyncio.sleep(0.005)

    async def stop(self) -> None:
        if self._refill_task is not None:
            self._refill_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refill_task
            self._refill_task = None
        # Every slot ever handed out, by name: a build cancelled mid-way still finishes on the
        # net thread, and its sandbox must not outlive us.
        names = self.names
        boxes = [Sandbox(s, names.sandbox_netns(s), sandbox_address(s), names.sandbox_veth(s))
                 for s in range(self._next_slot)]
        self._ready.clear()
        self._in_use.clear()
        if self._worker is not None:
            worker = self._worker
            await self.net.run(lambda: [destroy_sandbox(worker, b) for b in boxes])
            await self.net.run(worker.close)
            self._worker = None

    # use ---------------------------------------------------------------------------------
    async def take(self) -> Sandbox:
        """A ready sandbox now if there is one, else one built on the spot."""
        if self._ready:
            box = self._ready.popleft()
        else:
            box = await self._build(self._allocate_slot())
        self._in_use[box.slot] = box
        self._wanted.set()
        return box

    async def release(self, slot: int) -> None:
        """Delete a used sandbox (a fresh one replaces it: nothing carries over)."""
        box = self._in_use.pop(slot, None)
        if box is None or self._worker is None:
            return
        await self.net.run(destroy_sandbox, self._worker, box)
        self._free_slots.append(slot)
        self._free_slots.sort(reverse=True)
        self._wanted.set()

    def stats(self) -> dict[str, int]:
        return {"pool_ready": len(self._ready), "pool_target": self.size,
                "sandboxes_in_use": len(self._in_use)}

    # internals ---------------------------------------------------------------------------
    def _allocate_slot(self) -> int:
        if self._free_slots:
            return self._free_slots.pop()
        slot = self._next_slot
        self._next_slot += 1
        return slot

    async def _build(self, slot: int) -> Sandbox:
        assert self._worker is not None, "pool not started"
        self._building += 1
        try:
            return await self.net.run(build_sandbox, self.names, self._worker, slot)
        except BaseException:
            self._free_slots.append(slot)
            self._free_slots.sort(reverse=True)
            raise
        finally:
            self._building -= 1

    async def _refill_loop(self) -> None:
        while True:
            await self._wanted.wait()
            self._wanted.clear()
            while len(self._ready) + self._building < self.size:
                try:
                    box = await self._build(self._allocate_slot())
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("building a pooled sandbox failed; retrying shortly")
                    await asyncio.sleep(1.0)
                    continue
                self._ready.append(box)
