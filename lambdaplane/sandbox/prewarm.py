"""Pre-forked sandboxes: execution environments built ahead of demand — a pooled netns, a
cgroup, a fork from the zygote into new mount/pid/ipc/uts namespaces, the root filesystem —
waiting, as root and with no function code in them, for the function that takes them.

A cold start that finds one only assigns it: the name of its code directory in the store, its
environment variables and its output pipe, in one datagram; the sandbox mounts that code at
/var/task, lets go of the rest of the store, drops every privilege and starts the runtime.
The fork and the sandbox build (≈3.5 ms of CPU of a cold start's ≈7 here) leave the
cold-start path, which is what decides how long a burst of cold starts takes on 2 cores.

Only the default interpreter's zygote pre-forks (python3.11, which also serves provided.*);
other runtimes, and cold starts that find none ready, take the fork path. Refills wait while
invocations run, as the pool's do, so a burst does not pay for the next one. The server keeps
`settings.prefork` of them (`serve --prefork N`, default 4; 0: none).

With `runtime` (a RuntimeInstall with a program to exec: Node.js) the sandboxes are that
runtime's own and its program is started in them already (prestart.py), waiting for code:
cold_start.py keeps such a pool per Node.js runtime in use (`serve --prestart N`). Such a
sandbox says on its control socket when its runtime is ready (loaded and warmed up); `take`
hands out a ready one first, else the one that has been starting longest (it is ahead of a
fresh start). Such a pool is sized to its runtime's demand (prestart_sizing.py: the largest
burst of its cold starts plus one, more while cold starts find none ready; N the floor) and
refills at once, not after the invocations running: its sandboxes start in a cpu cgroup of
low weight."""
from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import socket
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from ..config import Settings
from ..net.names import Names
from ..tasks import cancel_and_wait
from . import boot_cpu, cgroups
from .cgroups import EnvCgroup
from .pool import Sandbox, SandboxPool
from .prestart import READY_MESSAGE
from .prestart_sizing import PrestartSizing
from .runtimes.registry import RuntimeInstall
from .zygote import PreforkedEnv, SpawnRequest, Zygote, default_interpreter

log = logging.getLogger(__name__)

PREFORK_MEMORY_MB = 128  # until assigned: the function's own size is set then
MAX_DEFER_S = 2.0  # under endless load, refills still come this often
START_TIMEOUT_S = 10.0
EXIT_WAIT_S = 5.0
PARALLEL_MAKES = 4  # made at once while no invocation runs
FAILURE_PAUSE_S = 1.0  # after a sandbox died before being assigned, before the next fork
RESIZE_EVERY_S = 1.0  # a runtime's pool: its demand-sized target is looked at this often


@dataclass
class Prewarmed:
    env_id: str
    sandbox: Sandbox
    cgroup: EnvCgroup
    forked: PreforkedEnv
    exited: asyncio.Task[int]
    interpreter: str
    assigned: bool = False
    ready: bool = True  # with a runtime: False until its sandbox says it is (prestart.py)
    made_at: float = 0.0  # monotonic: when it was forked (a runtime's boot time is from here)


class PrewarmedSandboxes:
    def __init__(self, settings: Settings, names: Names, pool: SandboxPool,
                 zygote: Callable[[str], Awaitable[Zygote]], busy: Callable[[], bool],
                 runtime: RuntimeInstall | None = None, size: int | None = None) -> None:
        self.settings = settings
        self.names = names
        self.pool = pool
        self.zygote = zygote  # the environments' own zygote getter (started on first use)
        self.busy = busy
        self.code_root = settings.data_dir / "code"
        self._ready: deque[Prewarmed] = deque()
        self._wanted = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._discards: set[asyncio.Task[None]] = set()
        self._interpreter = ""
        self.runtime = runtime
        self._making = 0
        self._watched: set[str] = set()  # env ids whose control socket is being read
        self._taken = {True: 0, False: 0}  # handed out with their runtime ready / starting
        self._failed_at = -FAILURE_PAUSE_S  # monotonic time a sandbox last died unassigned
        # kept ready; sandbox/capacity.py moves the main pool's with demand, a runtime's own
        # pool sizes itself to its runtime's cold starts (prestart_sizing.py)
        self.target = settings.prefork if size is None else size
        self.sizing = PrestartSizing(self.target, adaptive=settings.capacity == "adaptive",
                                     window_s=settings.capacity_window_s)
        # a runtime's sandboxes boot in a cpu group of their own (boot_cpu.py)
        self.boot = boot_cpu.BootOrder(names, runtime.runtime) if runtime is not None else None
        self._finishing: list[Path] = []  # boot groups of taken sandboxes still booting

    async def start(self) -> None:
        # Without a code store (an execution layer used on its own) no function can take one.
        if self.target > 0 and self.code_root.is_dir():
            self._interpreter = self.runtime.interpreter if self.runtime else \
                default_interpreter()
            self._task = asyncio.create_task(self._fill_loop(), name="lp-prefork")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
        while self._ready:
            self._discard_soon(self._ready.popleft())
        while self._discards:
            await asyncio.gather(*list(self._discards), return_exceptions=True)

    def take(self, interpreter: str, code_dir: Path) -> Prewarmed | None:
        """A ready sandbox for a function run by `interpreter` whose code is `code_dir`, or
        None (the caller forks as usual)."""
        if interpreter != self._interpreter or code_dir.parent != self.code_root:
            return None
        if self.runtime is not None:
            for pw in self._ready:  # a READY the loop has not come round to reading yet
                if not pw.ready:
                    self._read_ready(pw)
            self._sized(any(pw.ready for pw in self._ready), bool(self._ready))
        while self._ready:
            pw = next((pw for pw in self._ready if pw.ready), self._ready[0])
            self._ready.remove(pw)
            self._wanted.set()
            self._unwatch(pw)
            if not pw.exited.done():
                pw.assigned = True
                self._taken[pw.ready] += 1
                if not pw.ready and pw.cgroup.cpu_dir is not None and self.boot is not None:
                    self._finishing.append(pw.cgroup.cpu_dir)  # its boot goes first
                self._prioritize()
                return pw
        return None

    def _sized(self, found_ready: bool, found_any: bool) -> None:
        """A cold start of this runtime: learnt, and the target follows at once (refilled
        ahead of the next ones)."""
        self.sizing.cold_start(found_ready, found_any)
        target = self.sizing.target()
        if target > self.target:
            self.target = target
        self._wanted.set()

    @property
    def interpreter(self) -> str:
        return self._interpreter or default_interpreter()

    def ready_count(self) -> int:
        return len(self._ready)

    def set_target(self, target: int) -> None:
        if target != self.target:
            self.target = target
            self._wanted.set()

    async def trim(self) -> int:
        """Discard ready sandboxes beyond the target (oldest first; of a runtime's pool, the
        newest: its runtime is the least far along); how many."""
        trimmed = 0
        while len(self._ready) > self.target:
            self._discard_soon(self._ready.pop() if self.runtime else self._ready.popleft())
            trimmed += 1
        if trimmed:
            self._prioritize()
        return trimmed

    def stats(self) -> dict[str, int]:
        # sandboxes being made or discarded hold a cgroup too (stats must account for them)
        stats = {"prewarmed_ready": len(self._ready),
                 "prewarmed_target": self.target if self._task is not None else 0,
                 "prewarmed_other": self._making + len(self._discards)}
        if self.runtime is not None:  # of those ready, how many have their runtime ready too;
            # and how many cold starts took one whose runtime was ready / still starting
            stats.update(runtime_ready=sum(1 for pw in self._ready if pw.ready),
                         taken_ready=self._taken[True], taken_starting=self._taken[False],
                         booting=self._booting(), **self.sizing.stats())
        return stats

    # internals ---------------------------------------------------------------------------
    def _prioritize(self) -> None:
        """The boots in this runtime's group go oldest first, after those of taken sandboxes
        still booting (boot_cpu.py)."""
        if self.boot is None:
            return
        self._finishing = [d for d in self._finishing if boot_cpu.has_tasks(d)]
        self.boot.order([pw.cgroup.cpu_dir for pw in self._ready
                         if not pw.ready and pw.cgroup.cpu_dir is not None], self._finishing)

    def _booting(self) -> int:
        """Sandboxes of this pool being made or with their runtime still starting."""
        return self._making + sum(1 for pw in self._ready if not pw.ready)

    async def _fill_loop(self) -> None:
        deferred_since: float | None = None
        while True:
            if self.runtime is not None:
                self.target = self.sizing.target()  # demand decays: shrinks back to the floor
                await self.trim()
                self._prioritize()  # a taken node may have finished its boot
            if len(self._ready) >= self.target:
                deferred_since = None
                self._wanted.clear()
                if self.runtime is None or (self.target <= self.sizing.floor and
                                            not self._finishing):
                    await self._wanted.wait()
                    continue
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wanted.wait(), RESIZE_EVERY_S)
                continue
            now = time.monotonic()
            if now - self._failed_at < FAILURE_PAUSE_S:
                await asyncio.sleep(FAILURE_PAUSE_S)  # a build failing again and again
                continue
            deferred_since = deferred_since or now
            # A runtime's pool refills at once: its sandboxes start in a cpu cgroup of low
            # weight (PREFORK_MEMORY_MB's), so they take little from the invocations running.
            busy = self.busy() and self.runtime is None
            if busy and now - deferred_since < MAX_DEFER_S:
                await asyncio.sleep(0.02)  # a fork + build would take its CPU from them
                continue
            # Nothing runs: several at once (the zygote forks while earlier children build
            # their sandboxes), so a large target is reached before the next burst.
            count = 1 if busy else min(PARALLEL_MAKES, self.target - len(self._ready))
            made = await asyncio.gather(*(self._make_one() for _ in range(max(1, count))))
            if not all(made):
                await asyncio.sleep(1.0)  # cold starts fork meanwhile
                continue
            deferred_since = None

    async def _make_one(self) -> bool:
        self._making += 1
        try:
            self._ready.append(await self._make())
            self._prioritize()
            return True
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("pre-forking a sandbox failed; retrying shortly")
            return False
        finally:
            self._making -= 1

    async def _make(self) -> Prewarmed:
        made_at = time.monotonic()
        sandbox = await self.pool.take(ahead=True)
        env_id = secrets.token_hex(8)
        cgroup: EnvCgroup | None = None
        try:
            cgroup = await asyncio.to_thread(  # mkdir and writes in cgroupfs: off the loop
                cgroups.create_env_cgroup, self.names, env_id, PREFORK_MEMORY_MB,
                group=self.boot.group if self.boot is not None else "")
            if self.boot is not None:  # the group may be new: its weight written again
                self.boot.made()
            zygote = await self.zygote(self._interpreter)
            request = SpawnRequest(
                env_id=env_id, netns_path=sandbox.netns_path, cgroup_procs=cgroup.procs_files,
                code_dir=str(self.code_root),
                runtime=self.runtime.runtime if self.runtime else "", handler="", environ={},
                uid=self.settings.sandbox_uid, gid=self.settings.sandbox_uid,
                mounts=self.runtime.mounts if self.runtime else (),
                exec_argv=self.runtime.exec_argv if self.runtime else ())
            forked = await asyncio.wait_for(zygote.prefork(request), START_TIMEOUT_S)
        except BaseException:
            if cgroup is not None:
                await asyncio.to_thread(cgroups.destroy_env_cgroup, cgroup)
            await self.pool.release(sandbox.slot)
            raise
        exited = asyncio.create_task(forked.process.wait(), name=f"lp-env-{env_id}")
        pw = Prewarmed(env_id, sandbox, cgroup, forked, exited, self._interpreter,
                       ready=self.runtime is None, made_at=made_at)
        exited.add_done_callback(lambda _t: self._on_exit(pw))
        if not pw.ready:
            self._watch(pw)
        return pw

    def _watch(self, pw: Prewarmed) -> None:
        """Until its runtime says it is ready (prestart.READY_MESSAGE) on the control socket."""
        asyncio.get_running_loop().add_reader(pw.forked.control.fileno(), self._read_ready, pw)
        self._watched.add(pw.env_id)

    def _read_ready(self, pw: Prewarmed) -> None:
        """Its READY_MESSAGE, if it has come (not blocking). Read before it is handed out as
        well: one left unread when the server closes its end made the sandbox's next receive
        fail (ECONNRESET; zygote_control.recv_past_reset copes with it), and it was counted as
        still starting."""
        if pw.env_id not in self._watched:
            return
        try:
            message = pw.forked.control.recv(64, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return
        except OSError:
            message = b""
        pw.ready = message == READY_MESSAGE
        self._unwatch(pw)
        if pw.ready:
            self.sizing.booted(time.monotonic() - pw.made_at)
            self._prioritize()

    def _unwatch(self, pw: Prewarmed) -> None:
        """Stop watching its control socket (before it is used for anything else, or closed)."""
        if pw.env_id in self._watched:
            self._watched.discard(pw.env_id)
            asyncio.get_running_loop().remove_reader(pw.forked.control.fileno())

    def _on_exit(self, pw: Prewarmed) -> None:
        """An unassigned sandbox died (its build failed, or it was killed): clean it up.
        Once assigned, it is an environment's, and its exit is the environment's business."""
        if pw.assigned:
            return
        self._failed_at = time.monotonic()
        log.warning("pre-forked sandbox %s exited unassigned (status %s)", pw.env_id,
                    pw.exited.result() if not pw.exited.cancelled() else "cancelled")
        with contextlib.suppress(ValueError):
            self._ready.remove(pw)
            self._wanted.set()
        self._prioritize()
        self._discard_soon(pw)

    def _discard_soon(self, pw: Prewarmed) -> None:
        if pw.assigned:
            return
        pw.assigned = True  # nobody else may take or discard it now
        task = asyncio.create_task(self._discard(pw), name=f"lp-prefork-discard-{pw.env_id}")
        self._discards.add(task)
        task.add_done_callback(self._discards.discard)

    async def _discard(self, pw: Prewarmed) -> None:
        try:
            self._unwatch(pw)
            pw.forked.close()
            pw.forked.process.kill()
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError, Exception):
                await asyncio.wait_for(asyncio.shield(pw.exited), EXIT_WAIT_S)
            await asyncio.to_thread(cgroups.destroy_env_cgroup, pw.cgroup)
        except Exception:
            log.exception("discarding pre-forked sandbox %s failed", pw.env_id)
        finally:
            await self.pool.release(pw.sandbox.slot)
