"""The kernel objects a running server lives on, looked at every second and rebuilt when they
vanish under it (an operator's `ip netns del`, a stray script's `rmdir` or cgroup kill, an
`nft flush ruleset`), without a restart. What the drift-repair timer (`--reconcile-interval`,
30 s by default, service/hyperplane.py) repairs in full is looked at here cheaply and often —
a name under /run/netns, a cgroup directory, one `nft list tables` in the worker — and when
one is gone the same repair runs at once instead of up to 30 s later.

Watched, and how each is healed:
- the worker namespace's name (`lp<i>-w`): the namespace itself lives on (the Runtime API
  listener, every sandbox veth and the pool's netlink handle hold it), so the name is given
  back to the very same namespace from a handle held since start — nothing inside is lost;
- the worker's nft tables (sandbox isolation, Hyperplane steering): the one reconciler
  (service/reconciler.py), whose worker step owns the worker namespace's objects, runs that
  step at once (`repair_worker`: the isolation table applied again), then the drift repair
  puts back its exits and the steering; nothing here writes a kernel object itself;
- each stored VPC's namespace (`lp<i>-vpc-*`): the drift repair makes it anew with its ports,
  planes and routes (missing on two looks in a row, so a VPC being created or deleted right
  now is not taken for one that vanished);
- the instance's cgroup directories (memory, pids, cpu): made again; the processes killed with
  them are the zygotes' and environments' own business (their exits are already handled:
  zygote self-heal, pre-forked sandboxes replaced, environments started anew);
- the pool's ready sandboxes whose namespace name is gone: dropped and rebuilt by the pool;
- the shared `lambdaplane` cpu group's weight (cgroups.weigh_functions_parent), for a group
  made anew by another instance.
- the uplink (`serve` without --no-uplink): its veth and the root namespace's table — the
  reconciler's worker step puts them back, as for the worker's tables.
Not watched: the drift repair's own objects inside a VPC namespace (its timer repairs those).

Owns: the watch loop, the held worker-namespace handle, and the record of what it noticed and
healed (`stats`: the server's status and /metrics)."""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass

from ..tasks import cancel_and_wait
from ..net import nft, ns
from ..net.executor import NetThread
from ..net.names import Names
from ..net.netlink import Netlink
from ..sandbox import cgroups
from ..sandbox.cgroup_tree import CGROUP_ROOT

log = logging.getLogger(__name__)

WATCH_INTERVAL_S = 1.0
KINDS = ("worker_netns", "worker_nft", "vpc_netns", "cgroup", "sandbox_netns", "uplink")


@dataclass(frozen=True)
class Healing:
    """One vanished object noticed, and what was done about it."""
    kind: str  # one of KINDS
    name: str
    noticed_at: float  # epoch seconds
    healed: bool
    detail: str = ""


@dataclass
class WatchedState:
    """What the watch keeps between looks."""
    vpc_missing_once: set[str]
    cgroups_seen: dict[str, int]
    heals: dict[str, int]
    missing_now: dict[str, list[str]]
    recent: deque[Healing]
    looks: int = 0


class KernelWatch:
    def __init__(self, names: Names, net: NetThread, environments: object,
                 repair: Callable[[], Awaitable[list[str]]],
                 repair_worker: Callable[[], Awaitable[list[str]]],
                 vpc_netns: Callable[[], set[str]], hyperplane: bool,
                 interval_s: float = WATCH_INTERVAL_S) -> None:
        self.names = names
        self.net = net
        self.environments = environments  # sandbox/environments.py ExecutionEnvironments
        self.repair = repair  # a full run of the one reconciler (drift repair)
        self.repair_worker = repair_worker  # its worker step alone
        self.vpc_netns = vpc_netns
        self.hyperplane = hyperplane
        self.interval_s = interval_s
        self.state = WatchedState(set(), {}, {k: 0 for k in KINDS}, {}, deque(maxlen=20))
        self._worker_fd: int | None = None
        self._task: asyncio.Task[None] | None = None

    # lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        """After the environments (the worker namespace exists): hold it and start looking."""
        self._worker_fd = os.open(ns.netns_path(self.names.worker_netns),
                                  os.O_RDONLY | os.O_CLOEXEC)
        self._task = asyncio.create_task(self._loop(), name="lp-kernel-watch")

    async def stop(self) -> None:
        """First of all components: nothing is healed while the server takes things down."""
        task, self._task = self._task, None
        await cancel_and_wait(task)
        if self._worker_fd is not None:
            os.close(self._worker_fd)
            self._worker_fd = None

    def stats(self) -> dict[str, object]:
        zygotes = int(getattr(self.environments, "zygote_restarts", 0))
        return {"interval_s": self.interval_s, "looks": self.state.looks,
                "healed": {**self.state.heals, "zygote": zygotes},
                "missing_now": {k: v for k, v in self.state.missing_now.items() if v},
                "recent": [asdict(h) for h in self.state.recent]}

    # looking -----------------------------------------------------------------------------
    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.look_once()
            except Exception:  # noqa: BLE001 - logged; the next look tries again
                log.exception("kernel watch failed")

    async def look_once(self) -> list[Healing]:
        """One look at everything; heals what vanished; returns what it noticed. What is still
        missing after the look's healing is kept as `missing_now`."""
        noticed: list[Healing] = []
        if self._worker_fd is not None and not ns.exists(self.names.worker_netns):
            noticed.append(await self._name_worker_again())
        # behind any cold start's kernel work (the listing takes ~1-2 ms of the net thread)
        lost_tables = await self.net.run_background(self._missing_worker_tables)
        lost_uplink = await self.net.run_background(self._missing_uplink)
        if lost_tables or lost_uplink:
            noticed += await self._repair_worker(lost_tables, lost_uplink)
        need_repair = bool(lost_tables)
        vpcs = self._vanished_vpcs()
        need_repair = need_repair or bool(vpcs)
        dirs = await asyncio.to_thread(_remake_instance_cgroups, self.names,
                                       self.state.cgroups_seen)
        await asyncio.to_thread(cgroups.weigh_functions_parent)  # remade by another
        if dirs:
            noticed.append(self._record("cgroup", ", ".join(dirs), True,
                                        "made again; the zygotes, pre-forked sandboxes and "
                                        "environments killed with them are replaced as they "
                                        "are found gone"))
        dropped = self._drop_vanished_sandboxes()
        if dropped:
            noticed.append(self._record("sandbox_netns", ", ".join(dropped), True,
                                        "dropped from the pool; rebuilt by its refill"))
        if need_repair:
            done = await self.repair()
            for vpc in vpcs:
                noticed.append(self._record("vpc_netns", vpc, ns.exists(vpc), "; ".join(done)))
            self.state.vpc_missing_once -= {vpc for vpc in vpcs if ns.exists(vpc)}
            if done:
                log.warning("kernel watch: repaired after objects vanished: %s", "; ".join(done))
        still: dict[str, list[str]] = {k: [] for k in KINDS}
        for healing in noticed:
            if not healing.healed:
                still[healing.kind].append(healing.name)
        self.state.missing_now = still
        self.state.looks += 1
        return noticed

    def _record(self, kind: str, name: str, healed: bool, detail: str = "") -> Healing:
        healing = Healing(kind, name, time.time(), healed, detail)
        self.state.recent.append(healing)
        if healed:
            self.state.heals[kind] += 1
        (log.warning if healed else log.error)("kernel watch: %s %s vanished; %s", kind, name,
                                               detail or ("healed" if healed else "not healed"))
        return healing

    # worker namespace --------------------------------------------------------------------
    async def _name_worker_again(self) -> Healing:
        name = self.names.worker_netns
        assert self._worker_fd is not None
        try:
            await self.net.run(ns.name_again, name, self._worker_fd)
        except OSError as e:
            return self._record("worker_netns", name, False, str(e))
        return self._record("worker_netns", name, True,
                            "the same namespace named again (its links and tables intact)")

    def _missing_worker_tables(self) -> list[str]:
        """NetThread. The worker's own tables that are not there (none if the name is gone:
        the next look, after the name is back)."""
        if not ns.exists(self.names.worker_netns):
            return []
        have = set(nft.tables("", self.names.worker_netns))
        wanted = {("inet", self.names.nft_table)}
        if self.hyperplane:
            wanted.add(("ip", self.names.steer_table))
        return sorted(f"{family} {name}" for family, name in wanted - have)

    def _missing_uplink(self) -> list[str]:
        """NetThread. With the uplink: its host end and the root namespace's table, if gone."""
        if not getattr(self.environments.worker, "uplink", False):  # type: ignore[attr-defined]
            return []
        missing = []
        with Netlink() as root:
            if root.index(self.names.uplink_host) is None:
                missing.append(self.names.uplink_host)
        if ("inet", self.names.nft_table) not in nft.tables(self.names.nft_table, None):
            missing.append(f"inet {self.names.nft_table} (root namespace)")
        return missing

    async def _repair_worker(self, tables: list[str], uplink: list[str]) -> list[Healing]:
        """The reconciler's worker step, now: the isolation table (and the uplink) are back
        before the full repair that follows puts back what hangs on them."""
        lost = [("worker_nft", tables), ("uplink", uplink)]
        try:
            done = await self.repair_worker()
        except (nft.NftError, OSError) as e:
            return [self._record(kind, ", ".join(names), False, str(e))
                    for kind, names in lost if names]
        detail = "; ".join(done + (["exits and steering by the repair"] if tables else []))
        return [self._record(kind, ", ".join(names), True, detail) for kind, names in lost if names]

    # VPC namespaces ----------------------------------------------------------------------
    def _vanished_vpcs(self) -> list[str]:
        """Stored VPCs whose namespace was missing on this look and the one before."""
        missing = {name for name in self.vpc_netns() if not ns.exists(name)}
        vanished = sorted(missing & self.state.vpc_missing_once)
        self.state.vpc_missing_once = missing
        return vanished

    # sandboxes ---------------------------------------------------------------------------
    def _drop_vanished_sandboxes(self) -> list[str]:
        pool = self.environments.pool  # type: ignore[attr-defined]
        return list(pool.drop_vanished())


def _remake_instance_cgroups(names: Names, seen: dict[str, int]) -> list[str]:
    """The instance's cgroup directories that were there at an earlier look (`seen`: their
    inode, updated) and are gone now — made again — or were made anew since (by the next
    environment, faster than this look: gone all the same)."""
    made = []
    for controller in (cgroups.MEMORY, cgroups.PIDS, cgroups.CPU):
        path = cgroups.instance_dir(names, controller)
        key = str(path.relative_to(CGROUP_ROOT))
        try:
            inode = path.stat().st_ino
        except FileNotFoundError:
            if key not in seen:
                continue
            with contextlib.suppress(FileExistsError):
                path.mkdir(parents=True)
            inode = path.stat().st_ino
        if key in seen and seen[key] != inode:
            made.append(key)
        seen[key] = inode
    return made
