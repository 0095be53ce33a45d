"""The registry of execution environments: every live one by id, the idle ones per function
(warm reuse by revision, most recently used first), the invocations in flight per function, and
the state machine's moves that end an environment — retire (function updated or deleted), a
process that dies while idle, idle reaping after keep_alive_s — with the teardown that frees
everything an environment holds (its process, cgroup, Runtime API channel, VPC attachment and
pooled sandbox). Background tasks of the environments (teardowns, a runtime's pre-started pool
starting) are tracked here so that stop waits for them."""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from ..config import Settings
from ..tasks import cancel_and_wait
from . import cgroups
from .environment import KILL_WAIT_S, Environment, EnvironmentInfo, VpcAttacher
from .pool import SandboxPool
from .runtime_api import RuntimeApi
from .types import FunctionSpec

log = logging.getLogger(__name__)

Key = tuple[str, str]  # (region, function name)


class EnvironmentRegistry:
    def __init__(self, settings: Settings, runtime_api: RuntimeApi, pool: SandboxPool) -> None:
        self.settings = settings
        self.runtime_api = runtime_api
        self.pool = pool
        self.vpc_attacher: VpcAttacher | None = None  # set by the server (service/hyperplane.py)
        self.started = False  # between start and stop: environments are made and kept
        self.envs: dict[str, Environment] = {}
        self.busy: dict[Key, int] = {}  # invocations in flight, per function
        self._idle: dict[Key, list[Environment]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._reaper: asyncio.Task[None] | None = None

    # lifecycle ---------------------------------------------------------------------------
    def start_reaping(self) -> None:
        self._reaper = asyncio.create_task(self._reap_idle(), name="lp-env-reaper")

    async def stop_reaping(self) -> None:
        await cancel_and_wait(self._reaper)
        self._reaper = None

    async def destroy_all(self) -> None:
        """Every environment torn down, and every tracked task finished."""
        for env in list(self.envs.values()):
            self.destroy_soon(env)
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def track(self, task: asyncio.Task[None]) -> None:
        """A background task of the environments' that stop waits for."""
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # queries -----------------------------------------------------------------------------
    def any_busy(self) -> bool:
        return bool(self.busy)

    def in_flight(self, key: Key) -> int:
        return self.busy.get(key, 0)

    def total_in_flight(self) -> int:
        return sum(self.busy.values())

    def states(self) -> dict[str, int]:
        states: dict[str, int] = {"starting": 0, "busy": 0, "idle": 0}
        for env in self.envs.values():
            states[env.state] = states.get(env.state, 0) + 1
        return states

    def infos(self) -> list[EnvironmentInfo]:
        """Every execution environment now, for the console (read-only copies)."""
        now = time.monotonic()
        return [EnvironmentInfo(env.env_id, env.spec.region, env.spec.name, env.spec.version,
                                env.state, env.sandbox.address, env.log_stream,
                                now - env.last_used)
                for env in self.envs.values()]

    # the state machine -------------------------------------------------------------------
    def add(self, env: Environment) -> None:
        """A new environment (starting): from here on its teardown frees all it holds."""
        self.envs[env.env_id] = env

    def take_idle(self, spec: FunctionSpec) -> Environment | None:
        """The function's most recently used idle environment of its current revision (warmest
        caches); idle ones of older revisions met on the way are of no further use."""
        idle = self._idle.get(spec.key)
        while idle:
            env = idle.pop()
            if env.state == "idle" and env.spec.revision_id == spec.revision_id:
                return env
            if env.state == "idle":
                self.destroy_soon(env)
        return None

    def after_invocation(self, env: Environment) -> None:
        """Back to idle for warm reuse, or torn down if it is retiring, broken or we stop."""
        if env.state == "dead":
            return
        if env.retiring or not self.started or (env.exited and env.exited.done()):
            self.destroy_soon(env)
            return
        env.state = "idle"
        env.last_used = time.monotonic()
        self._idle.setdefault(env.spec.key, []).append(env)
        if env.cgroup is not None and env.cgroup.left:  # its pre-fork cpu cgroup, empty now
            env.cgroup = cgroups.remove_left(env.cgroup)

    def retire(self, key: Key) -> None:
        """The function was updated or deleted: idle environments go now, busy ones after
        their invocation."""
        for env in list(self.envs.values()):
            if env.spec.key != key:
                continue
            if env.state == "idle":
                self._unlist_idle(env)
                self.destroy_soon(env)
            else:
                env.retiring = True

    def on_exit(self, env: Environment) -> None:
        """A process that dies while idle (or starting without a caller) is cleaned up here;
        during an invocation, invoke() sees it and reports the error first."""
        if env.state == "idle":
            self._unlist_idle(env)
            self.destroy_soon(env)

    def destroy_soon(self, env: Environment) -> None:
        if env.state == "dead":
            return
        env.state = "dead"
        self._unlist_idle(env)
        self.track(asyncio.create_task(self._destroy(env),
                                       name=f"lp-env-destroy-{env.env_id}"))

    def _unlist_idle(self, env: Environment) -> None:
        idle = self._idle.get(env.spec.key)
        if idle and env in idle:
            idle.remove(env)

    async def _destroy(self, env: Environment) -> None:
        try:
            self.runtime_api.close_channel(env.sandbox.address)
            if env.process is not None:
                env.process.kill()
            if env.exited is not None:
                with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError, Exception):
                    await asyncio.wait_for(asyncio.shield(env.exited), KILL_WAIT_S)
            if env.cgroup is not None:
                await asyncio.to_thread(cgroups.destroy_env_cgroup, env.cgroup)
            env.output.close()
        except Exception:
            log.exception("tearing down environment %s failed", env.env_id)
        # Each of these frees something of its own: one failing must not keep the other.
        try:
            if env.vpc_handle is not None and self.vpc_attacher is not None:
                await self.vpc_attacher.detach(env.vpc_handle)
        except Exception:
            log.exception("detaching environment %s from its VPC failed", env.env_id)
        try:
            await self.pool.release(env.sandbox.slot)
        except Exception:
            log.exception("releasing the sandbox of environment %s failed", env.env_id)
        finally:
            self.envs.pop(env.env_id, None)

    async def _reap_idle(self) -> None:
        period = max(0.05, min(1.0, self.settings.keep_alive_s / 4))
        while True:
            await asyncio.sleep(period)
            cutoff = time.monotonic() - self.settings.keep_alive_s
            for env in list(self.envs.values()):
                if env.state == "idle" and env.last_used < cutoff:
                    self.destroy_soon(env)
