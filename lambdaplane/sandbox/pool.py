"""The pool of pre-made sandbox network namespaces, so a cold start never waits for netns +
veth + addresses (built in three raw rtnetlink batches, net/rtnl_batch.py: ≈2–4 ms of CPU).

Owns the sandbox namespaces `lp<i>-s<slot>` and their veths: worker end `lp<i>s<slot>` (holding
the /32 gateway 169.254.1.1, a /32 route to the sandbox and the fast-path program at its
ingress, net/fastpath.py), peer `eth0` created directly inside
the sandbox namespace (never moved), with the slot's 100.64.x.y/32, a scope-link route to the
gateway and a default route via it. All kernel work runs on the NetThread; `take()` only touches
the kernel when the pool is empty.

A released sandbox whose namespace holds no socket that could matter to the next user (see
`is_pristine`) goes straight back to the pool: nothing of an environment lives in the sandbox
netns but sockets (its processes are gone, its user never had the privilege to change links,
addresses, routes or sysctls), so recycling skips a ≈7 ms build and a delete. Deleting only
unmounts the namespace: the kernel removes the veth pair with it, asynchronously (a synchronous
link delete waits for an RCU grace period, 15–60 ms of the net thread); a slot's names are
reused only after a quarantine, so that removal has finished."""
from __future__ import annotations

import asyncio
import errno
import logging
import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from ..net import fastpath, ns
from ..net.executor import NetThread
from ..net.names import Names
from ..net.netlink import Netlink
from ..net.rtnl_batch import LOOPBACK_INDEX, Batch, Rtnl, RtnlError
from ..net.worker import GATEWAY, sandbox_address
from ..tasks import cancel_and_wait

log = logging.getLogger(__name__)

SLOT_QUARANTINE_S = 2.0
REFILL_GRACE_S = 0.25  # a deleted sandbox's veth is gone well before this (≈30–60 ms)
REFILL_MAX_DEFER_S = 2.0  # under endless load, refills still come this often
LOW_WATER = 0.1  # below this share of its size the pool refills whatever else is going on
_TCP_LISTEN = "0A"
_SOCKET_TABLES = ("tcp", "tcp6", "udp", "udp6", "raw", "raw6")


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
    """Create one sandbox namespace, wired to the worker, in three batches of raw rtnetlink
    (net/rtnl_batch.py: ≈1 ms of CPU where sixteen pyroute2 requests took 10–17). NetThread
    only."""
    box = Sandbox(slot, names.sandbox_netns(slot), sandbox_address(slot), names.sandbox_veth(slot))
    gateway_mac, sandbox_mac = sandbox_macs(slot)
    ns.create(box.netns)
    try:
        with Rtnl(worker.netns) as outside:
            fd = os.open(ns.netns_path(box.netns), os.O_RDONLY)
            try:
                _add_veth(outside, box, gateway_mac, sandbox_mac, fd)
            finally:
                os.close(fd)
            index = outside.index(box.veth)
            assert index is not None, box.veth
            batch = Batch()
            batch.add_address(index, GATEWAY, 32)
            fast = fastpath.shared(names)
            if fast is not None:  # a steered sandbox's packets skip the worker (net/fastpath.py)
                fast.attach_in(batch, index)
            batch.set_up(index)
            batch.replace_route(box.address, 32, index, scope_link=True)
            # Static ARP both ways: no resolution on a cold start's first packet, and no dynamic
            # entries (the kernel keeps one table for all namespaces, 1,024 by default).
            batch.replace_permanent_neighbor(index, box.address, sandbox_mac)
            outside.send(batch)
        with Rtnl(box.netns) as inside:
            eth0 = inside.index("eth0")
            assert eth0 is not None
            batch = Batch()
            batch.set_up(LOOPBACK_INDEX)
            batch.add_address(eth0, box.address, 32)
            batch.set_up(eth0)
            batch.replace_route(GATEWAY, 32, eth0, scope_link=True)
            batch.replace_route("0.0.0.0", 0, eth0, gateway=GATEWAY)
            batch.replace_permanent_neighbor(eth0, GATEWAY, gateway_mac)
            inside.send(batch)
    except BaseException:
        destroy_sandbox(worker, box)
        raise
    return box


def _add_veth(outside: Rtnl, box: Sandbox, gateway_mac: str, sandbox_mac: str,
              peer_fd: int) -> None:
    batch = Batch()
    batch.add_veth(box.veth, gateway_mac, "eth0", sandbox_mac, peer_fd)
    try:
        outside.send(batch)
    except RtnlError as e:
        if e.errno != errno.EEXIST:
            raise
        retry = Batch()  # a previous holder of the slot, still going away
        retry.delete_link(box.veth)
        retry.add_veth(box.veth, gateway_mac, "eth0", sandbox_mac, peer_fd)
        outside.send(retry)


def sandbox_macs(slot: int) -> tuple[str, str]:
    """(worker end, sandbox eth0) MAC addresses of a slot's veth pair: locally administered,
    distinct per slot, so the static ARP entries are known before the link exists."""
    tail = ":".join(f"{(slot >> shift) & 0xFF:02x}" for shift in (16, 8, 0))
    return f"02:6c:70:{tail}", f"02:6c:71:{tail}"


def destroy_sandbox(worker: Netlink, box: Sandbox) -> None:
    """Remove one sandbox's namespace (idempotent); its veth pair goes with it, removed by the
    kernel shortly after. NetThread only."""
    ns.delete(box.netns)


def _wait_links_gone(worker: Netlink, veths: set[str], timeout_s: float = 10.0) -> None:
    """After deleting namespaces: wait until the kernel has removed their veths too, so a stop
    leaves nothing behind. NetThread only."""
    deadline = time.monotonic() + timeout_s
    prefix = os.path.commonprefix(sorted(veths)) if veths else ""
    while veths & {link.name for link in worker.links(prefix)}:
        if time.monotonic() > deadline:
            log.warning("sandbox veths still present after %.0f s", timeout_s)
            return
        time.sleep(0.01)


def is_pristine(box: Sandbox, ephemeral_low: int = 32768) -> bool:
    """True if the sandbox netns holds nothing the next environment could notice: no socket
    but the remains of outgoing TCP connections (closing or in TIME_WAIT, from an ephemeral
    port — the runtime's own Runtime API connection ends that way). A port still bound by a
    listener, or any other socket, sends the sandbox to deletion instead. NetThread only (it
    enters the namespace)."""
    try:
        with ns.entered(box.netns):
            if _no_socket_in_use():
                return True
            for table in _SOCKET_TABLES:
                with open(f"/proc/thread-self/net/{table}") as f:
                    next(f, None)  # header
                    for line in f:
                        fields = line.split()
                        local_port = int(fields[1].rsplit(":", 1)[1], 16)
                        if not (table.startswith("tcp") and fields[3] != _TCP_LISTEN
                                and local_port >= ephemeral_low):
                            return False
    except OSError:
        return False
    return True


def _no_socket_in_use() -> bool:
    """True if the current netns has no TCP/UDP/UDP-Lite/raw socket in use (IPv4 or IPv6; a
    TIME_WAIT is not one): its per-namespace counters, in /proc/<…>/net/sockstat{,6}. Reading
    those costs ~0.05 ms where each socket table walks the host's whole hash table (≈5–30 ms
    here, six tables per release: the net thread's main work while a burst's environments
    were torn down)."""
    for name in ("sockstat", "sockstat6"):
        with open(f"/proc/thread-self/net/{name}") as f:
            for line in f:
                protocol, _, counters = line.partition(":")
                if protocol.startswith("FRAG") or protocol == "sockets":
                    continue
                fields = counters.split()
                if "inuse" in fields and fields[fields.index("inuse") + 1] != "0":
                    return False
    return True


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
    def __init__(self, names: Names, net: NetThread, size: int,
                 busy: Callable[[], bool] = lambda: False) -> None:
        self.names = names
        self.net = net
        self.size = size
        self.busy = busy  # invocations are running: refills wait, unless the pool runs low
        self._ready: deque[Sandbox] = deque()
        self._in_use: dict[int, Sandbox] = {}
        # deleted slots, reusable once their quarantine ends (time.monotonic(), slot), oldest first
        self._free_slots: deque[tuple[float, int]] = deque()
        self.recycled = 0  # sandboxes handed out again without a rebuild (metrics)
        self._last_take = 0.0
        self._next_slot = 0
        self._worker: Netlink | None = None
        self._wanted = asyncio.Event()
        self._refill_task: asyncio.Task[None] | None = None
        self._building = 0
        self._recycling = 0  # releases checking whether their sandbox can be recycled

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
        await cancel_and_wait(self._refill_task)
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
            await self.net.run(_wait_links_gone, worker, {b.veth for b in boxes})
            await self.net.run(worker.close)
            self._worker = None

    # use ---------------------------------------------------------------------------------
    async def take(self, ahead: bool = False) -> Sandbox:
        """A ready sandbox now if there is one, else one built on the spot. `ahead`: for a
        sandbox made ahead of demand (pre-forking), which is no sign of a burst, so the refill
        does not wait for it to pass."""
        if not ahead:
            self._last_take = time.monotonic()
        if self._ready:
            box = self._ready.popleft()
        else:
            box = await self._build(self._allocate_slot())
        self._in_use[box.slot] = box
        self._wanted.set()
        return box

    async def release(self, slot: int, reuse: bool = True) -> None:
        """Take back a sandbox whose processes are all gone: into the pool again if it is
        pristine and the pool wants one, else delete it (a fresh one replaces it)."""
        box = self._in_use.pop(slot, None)
        if box is None or self._worker is None:
            return
        # A build in flight does not count: a recycled sandbox is cheaper than the build, and
        # the one extra it may leave is simply taken first. Releases checking their sandbox
        # at the same moment each hold a place while they wait, so that 100 environments
        # ending together recycle no more than the pool wants.
        if reuse and len(self._ready) + self._recycling < self.size:
            self._recycling += 1
            try:
                pristine = await self.net.run(is_pristine, box)
            finally:
                self._recycling -= 1
            if pristine and len(self._ready) < self.size:
                self._ready.append(box)
                self.recycled += 1
                return
        await self.net.run(destroy_sandbox, self._worker, box)
        self._free_slots.append((time.monotonic() + SLOT_QUARANTINE_S, slot))
        self._wanted.set()

    def ready_count(self) -> int:
        return len(self._ready)

    def set_target(self, target: int) -> None:
        """A new size (sandbox/capacity.py): a larger one is refilled soon, a smaller one is
        reached by `trim` and by releases no longer kept."""
        if target != self.size:
            self.size = target
            self._wanted.set()

    async def trim(self) -> int:
        """Delete ready sandboxes beyond the size (oldest first); how many."""
        trimmed = 0
        while len(self._ready) > self.size and self._worker is not None:
            box = self._ready.popleft()
            await self.net.run(destroy_sandbox, self._worker, box)
            self._free_slots.append((time.monotonic() + SLOT_QUARANTINE_S, box.slot))
            trimmed += 1
        return trimmed

    def drop_vanished(self) -> list[str]:
        """Ready sandboxes whose namespace name is gone (removed behind our back): dropped, so
        no cold start takes one; the refill builds others (service/kernel_watch.py)."""
        gone = [box for box in self._ready if not ns.exists(box.netns)]
        for box in gone:
            self._ready.remove(box)
            self._free_slots.append((time.monotonic() + SLOT_QUARANTINE_S, box.slot))
        if gone:
            self._wanted.set()
        return [box.netns for box in gone]

    def stats(self) -> dict[str, int]:
        return {"pool_ready": len(self._ready), "pool_target": self.size,
                "sandboxes_in_use": len(self._in_use), "pool_recycled": self.recycled}

    # internals ---------------------------------------------------------------------------
    def _may_wait(self, now: float, deferred_since: float) -> bool:
        """Whether a refill can wait for a quieter moment: not while the pool is low, and not
        for longer than REFILL_MAX_DEFER_S; otherwise while takes came just now or any
        invocation runs."""
        if len(self._ready) < max(1, self.size * LOW_WATER):
            return False
        if now - deferred_since > REFILL_MAX_DEFER_S:
            return False
        return now - self._last_take < REFILL_GRACE_S or self.busy()

    def _allocate_slot(self) -> int:
        if self._free_slots and self._free_slots[0][0] <= time.monotonic():
            return self._free_slots.popleft()[1]
        slot = self._next_slot
        self._next_slot += 1
        return slot

    async def _build(self, slot: int) -> Sandbox:
        assert self._worker is not None, "pool not started"
        self._building += 1
        try:
            return await self.net.run_background(build_sandbox, self.names, self._worker, slot)
        except BaseException:
            self._free_slots.append((time.monotonic() + SLOT_QUARANTINE_S, slot))
            raise
        finally:
            self._building -= 1

    async def _refill_loop(self) -> None:
        while True:
            await self._wanted.wait()
            self._wanted.clear()
            deferred_since: float | None = None
            while len(self._ready) + self._building < self.size:
                now = time.monotonic()
                deferred_since = deferred_since or now
                if self._may_wait(now, deferred_since):
                    # Invocations are running: a build (≈5 ms of CPU, and the GIL, on the net
                    # thread) would take its time from them — on 2 cores a burst of 100 cold
                    # starts lost a third of its CPU to refills — and environments ending
                    # now give sandboxes back anyway (recycled, no kernel work).
                    await asyncio.sleep(0.02)
                    continue
                try:
                    box = await self._build(self._allocate_slot())
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("building a pooled sandbox failed; retrying shortly")
                    await asyncio.sleep(1.0)
                    continue
                self._ready.append(box)
                deferred_since = None
