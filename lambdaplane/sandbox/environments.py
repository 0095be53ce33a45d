"""ExecutionEnvironments: the one interface the control plane uses to run code.

Owns every execution environment's life: cold start (a pooled sandbox netns + a cgroup + a
fork from the runtime's zygote), handing it invocations through the Runtime API, one invocation
at a time, warm reuse by revision, timeouts, crashes and OOM kills, idle reaping, and — on
stop — removing every process, cgroup and kernel object it made (including the worker netns).
It does not decide *whether* to run (concurrency limits, function state): service/ does.

A thin facade that assembles the parts and starts and stops them in order: the worker netns
(net/worker.py), the sandbox pool (pool.py), the Runtime API (runtime_api.py), the zygotes
(zygote_set.py), the pre-forked sandboxes (prewarm.py), their capacity (capacity.py), the
environments' registry (env_registry.py), the cold start (cold_start.py) and one invocation's
run (invocation_run.py).

`start` also moves the calling process (all its threads) into the server's own cpu group
(server_cpu.py) and `stop` moves it back: whichever process runs the sandboxes gets it — a
`serve` with the data plane, or an agent (agent.py) — while `serve --no-data-plane`, which
builds no ExecutionEnvironments, stays in the cpu group it was started in."""
from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from ..config import Settings
from ..errors import AwsError
from ..net.executor import NetThread
from ..net.host_sysctls import RECORD_NAME as HOST_SYSCTLS_RECORD
from ..net.names import Names
from ..net.worker import WorkerNet
from ..store.log_ingest import LogIngest
from . import cgroups, server_cpu
from .capacity import CapacityController, DemandLearner
from .cold_start import ColdStarts
from .env_registry import EnvironmentRegistry
from .environment import (  # re-exported: the names callers import from here
    VPC_CA_FILE,
    Environment,
    EnvironmentInfo,
    VpcAttacher,
    exit_description,
    node_path,
    reserved_environment,
    tmp_size_mb,
)
from .invocation_run import run_invocation
from .pool import SandboxPool
from .prewarm import PrewarmedSandboxes
from .runtime_api import RuntimeApi
from .runtimes import registry
from .types import FunctionSpec, Invocation, InvocationResult
from .zygote_set import Zygotes

__all__ = ["VPC_CA_FILE", "Environment", "EnvironmentInfo", "ExecutionEnvironments",
           "VpcAttacher", "exit_description", "node_path", "reserved_environment",
           "tmp_size_mb"]


class ExecutionEnvironments:
    def __init__(self, settings: Settings, names: Names, net: NetThread) -> None:
        self.settings = settings
        self.names = names
        self.net = net
        registry.configure(settings.runtimes)
        self.worker = WorkerNet(names, settings.uplink, settings.runtime_api_port,
                                host_record=settings.data_dir / HOST_SYSCTLS_RECORD)
        self.pool = SandboxPool(names, net, settings.pool_size, busy=self._any_busy)
        self.runtime_api = RuntimeApi(net, names.worker_netns, settings.runtime_api_port)
        self.registry = EnvironmentRegistry(settings, self.runtime_api, self.pool)
        self.zygotes = Zygotes(settings, names)
        self.prewarmed = PrewarmedSandboxes(settings, names, self.pool, self.zygotes.get,
                                            busy=self._any_busy)
        self.capacity = CapacityController(
            DemandLearner(settings.capacity_window_s), self.pool, self.prewarmed,
            pool_floor=settings.pool_size, prefork_floor=settings.prefork,
            cap=settings.capacity_max, prefork_runtime=lambda: self.prewarmed.interpreter,
            busy=self._any_busy, adaptive=settings.capacity == "adaptive")
        self.cold_starts = ColdStarts(settings, names, self.pool, self.runtime_api,
                                      self.zygotes, self.prewarmed, self.capacity,
                                      self.registry)
        self._moves_favored: cgroups.Cgroup2Mount | None = None
        self._server_cpu_from: Path | None = None  # the cpu cgroup the server came from
        self._moves_record = settings.data_dir / "cgroup2-options"

    def _any_busy(self) -> bool:
        return bool(self.registry.busy)

    # set by the server: service/hyperplane.py or service/legacy.py, and service/logs.py ----
    @property
    def vpc_attacher(self) -> VpcAttacher | None:
        return self.registry.vpc_attacher

    @vpc_attacher.setter
    def vpc_attacher(self, attacher: VpcAttacher | None) -> None:
        self.registry.vpc_attacher = attacher

    @property
    def log_ingest(self) -> LogIngest | None:
        return self.cold_starts.log_ingest

    @log_ingest.setter
    def log_ingest(self, ingest: LogIngest | None) -> None:
        self.cold_starts.log_ingest = ingest

    @property
    def prestarted(self) -> dict[str, PrewarmedSandboxes]:
        """Per Node.js runtime that had a cold start: sandboxes with node started."""
        return self.cold_starts.prestarted

    @property
    def zygote_restarts(self) -> int:
        """Zygotes found gone and replaced (status and the heal metrics show it)."""
        return self.zygotes.restarts

    # lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        try:
            # A SIGKILLed server of this instance left its environments' and zygotes' cgroups
            # (and any process still in them): nothing of ours runs yet, so all of it is stale.
            await asyncio.to_thread(cgroups.remove_instance_cgroups, self.names)
            self._server_cpu_from = await asyncio.to_thread(server_cpu.join, self.names)
            self._moves_favored = await asyncio.to_thread(cgroups.favor_dynamic_moves,
                                                          self._moves_record)
            await self.net.run(self.worker.setup)
            await self.pool.start()
            await self.runtime_api.start()
            self.registry.started = True
            await self.zygotes.start()
            await self.prewarmed.start()
            await self.capacity.start()
            self.registry.start_reaping()
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        try:
            await self._stop()
        finally:  # last, and whatever failed before: the server's own cpu group
            await asyncio.to_thread(server_cpu.leave, self.names, self._server_cpu_from)
            self._server_cpu_from = None

    async def _stop(self) -> None:
        self.registry.started = False
        await self.registry.stop_reaping()
        await self.capacity.stop()
        await self.prewarmed.stop()  # first: it would go on making sandboxes meanwhile
        await self.cold_starts.stop_prestarted()
        await self.registry.destroy_all()
        await self.runtime_api.stop()
        await self.zygotes.stop()
        await self.pool.stop()
        await self.net.run(self.worker.teardown)
        await asyncio.to_thread(cgroups.remove_instance_cgroups, self.names)
        await asyncio.to_thread(cgroups.restore_moves, self._moves_favored,
                                self._moves_record)
        self._moves_favored = None

    # queries -----------------------------------------------------------------------------
    def in_flight(self, key: tuple[str, str]) -> int:
        return self.registry.in_flight(key)

    def total_in_flight(self) -> int:
        return self.registry.total_in_flight()

    def stats(self) -> dict[str, Any]:
        return {**self.pool.stats(), **self.prewarmed.stats(),
                "environments": self.registry.states(),
                "prestarted": {rt: p.stats() for rt, p in self.prestarted.items()},
                "in_flight": self.total_in_flight(), "zygotes": self.zygotes.interpreters(),
                "zygotes_down": self.zygotes.interpreters_down(),
                "zygote_restarts": self.zygote_restarts, "capacity": self.capacity.stats()}

    def environments(self) -> list[EnvironmentInfo]:
        """Every execution environment now, for the console (read-only copies)."""
        return self.registry.infos()

    async def retire(self, key: tuple[str, str]) -> None:
        self.registry.retire(key)

    # invoke ------------------------------------------------------------------------------
    async def invoke(self, spec: FunctionSpec, inv: Invocation) -> InvocationResult:
        """One invocation: in a warm environment of the function's revision if one is idle,
        else in a new one (a cold start); the environment is kept for reuse or torn down."""
        environments = self.registry
        if not environments.started:
            raise AwsError("ServiceException", "Execution environments are not running", 500,
                           "Service")
        key = spec.key
        busy = environments.busy
        busy[key] = busy.get(key, 0) + 1
        try:
            env = environments.take_idle(spec)
            cold = None
            if env is None:
                env, cold = await self.cold_starts.start(spec)
            env.state = "busy"
            try:
                result = await run_invocation(env, inv, cold)
            except BaseException:
                environments.destroy_soon(env)
                raise
            environments.after_invocation(env)
            return result
        finally:
            busy[key] -= 1
            if not busy[key]:
                del busy[key]
