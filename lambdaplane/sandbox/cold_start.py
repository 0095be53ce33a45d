"""The cold start: a new execution environment for a function, as a sequence of named phases,
each timed into ColdStartTimings (the phases /metrics and `bench burst` report):

1. take a prepared sandbox — one with the runtime already started (Node.js, prestart.py) or a
   pre-forked one (prewarm.py) — if one is ready; else
   pool_take: a pooled sandbox netns (pool.py);
2. a new Environment, registered (from here on its teardown frees all of it);
3. cgroup: a prepared sandbox's cgroup sized and moved under its function, or a new one;
4. spawn: the prepared sandbox assigned the function's code and variables, or a fork from the
   runtime's zygote (zygote_set.py);
5. vpc_attach: a VPC function's sandbox connected to its VPC (the VpcAttacher) while it sets
   itself up, and then let run;
and then (measured by the first invocation, invocation_run.py) runtime_ready: until the
runtime takes the event.

Also owns the pools of pre-started sandboxes, one per Node.js runtime that had a cold start."""
from __future__ import annotations

import asyncio
import os
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timezone

from ..config import Settings
from ..errors import AwsError
from ..net.names import Names
from ..store.log_ingest import LogIngest
from . import boot_cpu, cgroups, runtime_frames
from .capacity import CapacityController
from .env_registry import EnvironmentRegistry
from .environment import (
    INIT_TIMEOUT_S,
    Environment,
    VpcAttacher,
    reserved_environment,
    tmp_size_mb,
)
from .logs import FunctionLog, OutputCapture
from .pool import Sandbox, SandboxPool
from .prewarm import Prewarmed, PrewarmedSandboxes
from .runtime_api import RuntimeApi
from .runtimes import registry
from .runtimes.registry import RuntimeInstall
from .types import FunctionSpec
from .zygote import NetworkGate, SpawnRequest, Zygote
from .zygote_set import Zygotes


@dataclass
class ColdStartTimings:
    """How long each phase of one cold start took (ms); `began` is its monotonic start, from
    which the first invocation measures the init duration."""
    began: float
    pool_take_ms: float = 0.0
    vpc_attach_ms: float = 0.0
    cgroup_ms: float = 0.0
    spawn_ms: float = 0.0
    zygote_fork_ms: float = 0.0  # the zygote's own share of spawn (0: a prepared sandbox)

    def phases_ms(self) -> dict[str, float]:
        """As InvocationResult.extra carries them (metrics.py COLD_PHASES, bench)."""
        return {"pool_take_ms": self.pool_take_ms, "vpc_attach_ms": self.vpc_attach_ms,
                "cgroup_ms": self.cgroup_ms, "spawn_ms": self.spawn_ms,
                "zygote_fork_ms": self.zygote_fork_ms}


@dataclass
class Prepared:
    """A sandbox made ahead of demand, taken for this cold start."""
    prewarmed: Prewarmed
    runtime_started: bool  # from a runtime's pre-started pool: its program runs already


class _Laps:
    """A stopwatch of consecutive phases: lap() is the milliseconds since the previous lap."""

    def __init__(self) -> None:
        self.began = self._last = time.monotonic()

    def lap(self) -> float:
        now = time.monotonic()
        ms, self._last = (now - self._last) * 1000, now
        return ms

    def restart(self) -> None:
        """The next lap counts from now."""
        self._last = time.monotonic()


class ColdStarts:
    def __init__(self, settings: Settings, names: Names, pool: SandboxPool,
                 runtime_api: RuntimeApi, zygotes: Zygotes, prewarmed: PrewarmedSandboxes,
                 capacity: CapacityController, environments: EnvironmentRegistry) -> None:
        self.settings = settings
        self.names = names
        self.pool = pool
        self.runtime_api = runtime_api
        self.zygotes = zygotes
        self.prewarmed = prewarmed
        self.capacity = capacity
        self.environments = environments
        # per Node.js runtime that had a cold start: sandboxes with node started (prestart.py)
        self.prestarted: dict[str, PrewarmedSandboxes] = {}
        self.log_ingest: LogIngest | None = None  # set by the server (service/logs.py)

    async def stop_prestarted(self) -> None:
        for prestarted in list(self.prestarted.values()):
            await prestarted.stop()
        self.prestarted.clear()

    async def start(self, spec: FunctionSpec) -> tuple[Environment, ColdStartTimings]:
        """A new environment for `spec`, its runtime started (or starting), not yet invoked."""
        install = _runtime_install(spec)
        laps = _Laps()
        timings = ColdStartTimings(began=laps.began)
        self.capacity.cold_start(install.interpreter)
        prepared = self._take_prepared(install, spec)
        sandbox = prepared.prewarmed.sandbox if prepared else await self.pool.take()
        timings.pool_take_ms = laps.lap()
        env = self._new_environment(spec, sandbox, prepared)
        try:
            attacher = self._vpc_attacher(spec)
            environ = reserved_environment(spec, env.log_stream, self.settings.runtime_api_port)
            if prepared is not None:
                await self._start_prepared(env, prepared, install, environ, attacher, timings,
                                           laps)
            else:
                await self._start_forked(env, install, environ, attacher, timings, laps)
            env.output.writer_sent()
            assert env.exited is not None
            env.exited.add_done_callback(self._exit_watch(env))
        except BaseException:
            if prepared is not None:
                prepared.prewarmed.forked.close()
            self.environments.destroy_soon(env)
            raise
        return env, timings

    def _exit_watch(self, env: Environment) -> Callable[[asyncio.Task[int]], None]:
        on_exit = self.environments.on_exit
        return lambda _task: on_exit(env)

    # phase: take a prepared sandbox ------------------------------------------------------
    def _take_prepared(self, install: RuntimeInstall, spec: FunctionSpec) -> Prepared | None:
        """A pre-started sandbox (its runtime running), else a pre-forked one if the
        interpreter's zygote has the runtime's files stashed; None: none is ready."""
        started = self._take_prestarted(install, spec)
        if started is not None:
            return Prepared(started, runtime_started=True)
        zygote = self.zygotes.current(install.interpreter)
        stashed = zygote is not None and \
            {source for source, _ in install.mounts} <= zygote.runtime_sources
        forked = self.prewarmed.take(install.interpreter, spec.code_dir) if stashed else None
        return Prepared(forked, runtime_started=False) if forked is not None else None

    def _take_prestarted(self, install: RuntimeInstall, spec: FunctionSpec) -> Prewarmed | None:
        """A sandbox with the runtime started already (Node.js), if one is ready. The first
        cold start of a runtime makes its pool, which fills in the background."""
        if not install.exec_argv or self.settings.prestart <= 0 or \
                not self.environments.started:
            return None
        pool = self.prestarted.get(install.runtime)
        if pool is None:
            pool = PrewarmedSandboxes(self.settings, self.names, self.pool, self.zygotes.get,
                                      busy=self.environments.any_busy, runtime=install,
                                      size=self.settings.prestart)
            self.prestarted[install.runtime] = pool
            pool.sizing.count("none")  # this cold start found no node: a miss too
            self.environments.track(asyncio.create_task(
                pool.start(), name=f"lp-prestart-{install.runtime}"))
            return None
        return pool.take(install.interpreter, spec.code_dir)

    # a new environment, registered -------------------------------------------------------
    def _new_environment(self, spec: FunctionSpec, sandbox: Sandbox,
                         prepared: Prepared | None) -> Environment:
        env_id = prepared.prewarmed.env_id if prepared else secrets.token_hex(8)
        log_stream = (f"{datetime.now(timezone.utc):%Y/%m/%d}/[{spec.version}]"
                      f"{env_id}{secrets.token_hex(8)}")
        env = Environment(env_id, spec, sandbox, self.runtime_api.open_channel(sandbox.address),
                          OutputCapture(FunctionLog(self.settings.data_dir, spec.region,
                                                    spec.name, self.settings.log_max_bytes,
                                                    self.settings.log_rotations)),
                          log_stream=log_stream)
        if self.log_ingest is not None:  # the Logs API's group and stream of this environment
            env.output.function_log.feed = self.log_ingest.feed_for(spec.region, spec.log_group,
                                                                    log_stream)
        if prepared:  # from here on the environment's: its teardown frees all of it
            pw = prepared.prewarmed
            env.cgroup, env.process, env.exited = pw.cgroup, pw.forked.process, pw.exited
        self.environments.add(env)
        return env

    def _vpc_attacher(self, spec: FunctionSpec) -> VpcAttacher | None:
        """The attacher a VPC function needs (None for one without a VPC)."""
        if spec.vpc is None:
            return None
        attacher = self.environments.vpc_attacher
        if attacher is None:
            raise AwsError("ServiceException", "VPC networking is not available", 500,
                           "Service")
        return attacher

    # the phases of a prepared sandbox -----------------------------------------------------
    async def _start_prepared(self, env: Environment, prepared: Prepared,
                              install: RuntimeInstall, environ: dict[str, str],
                              attacher: VpcAttacher | None, timings: ColdStartTimings,
                              laps: _Laps) -> None:
        """cgroup (timed from the take), spawn (the assignment), vpc_attach."""
        self._size_prepared_cgroup(env, prepared.prewarmed)
        timings.cgroup_ms = laps.lap()
        # A VPC function's sandbox sets itself up while its steering element is added, and
        # runs no function code until told the network is there.
        runtime_sock = await self._runtime_socket(env, install, prepared)
        try:
            gate = self._assign(env, prepared, install, environ,
                                runtime_sock.fileno() if runtime_sock is not None else None)
        finally:
            if runtime_sock is not None:
                runtime_sock.close()
        timings.spawn_ms = laps.lap()
        if gate is not None:
            assert attacher is not None
            timings.vpc_attach_ms = await _attach_then_open(env, gate, attacher)

    def _size_prepared_cgroup(self, env: Environment, pw: Prewarmed) -> None:
        """Its memory limit the function's, moved under the function's group."""
        spec = env.spec
        booting = pw.cgroup.cpu_dir
        # in a runtime's boot group its weight stays the pool's until it leaves (boot_cpu.py)
        in_boot = boot_cpu.is_boot_dir(booting)
        cgroups.set_memory_limit(replace(pw.cgroup, cpu_dir=None) if in_boot else pw.cgroup,
                                 spec.memory_mb)
        env.cgroup = pw.cgroup = cgroups.for_function(
            self.names, pw.cgroup, cgroups.function_group(spec.region, spec.name),
            spec.memory_mb)
        if pw.ready and booting is not None and in_boot:
            # out of its boot group before it is told its function (boot_cpu.py); a node still
            # booting stays, and goes with its PID 1 once ready (its boot is the pool's CPU)
            boot_cpu.move_tasks(pw.cgroup, booting)

    async def _runtime_socket(self, env: Environment, install: RuntimeInstall,
                              prepared: Prepared | None) -> socket.socket | None:
        """The sandbox's end of a socketpair its runtime speaks the Runtime API over
        (runtime_frames.py): for the built-in Python runtimes (run by the zygote's bootstrap,
        not started ahead) unless --runtime-transport http; None: HTTP only."""
        if self.settings.runtime_transport != "socket" or install.exec_argv or \
                not install.runtime.startswith("python") or \
                (prepared is not None and prepared.runtime_started):
            return None
        return await runtime_frames.open_socket(self.runtime_api, env.sandbox.address)

    def _assign(self, env: Environment, prepared: Prepared, install: RuntimeInstall,
                environ: dict[str, str], runtime_fd: int | None = None
                ) -> NetworkGate | None:
        """Hand the prepared sandbox the function: its code, variables, output pipe and cpu
        cgroups (and the runtime's files and program, unless it runs already). A VPC
        function's comes back gated: the gate to open once it is attached."""
        spec, pw = env.spec, prepared.prewarmed
        assert env.cgroup is not None
        join = [os.open(p, os.O_WRONLY | os.O_CLOEXEC) for p in cgroups.cpu_procs(env.cgroup)]
        try:
            started = prepared.runtime_started
            return pw.forked.assign(spec.code_dir.name, spec.runtime, environ,
                                    tmp_size_mb(spec.memory_mb), env.output.write_fd,
                                    network_pending=spec.vpc is not None,
                                    opt_name=spec.opt_dir.name if spec.opt_dir else "",
                                    mounts=() if started else install.mounts,
                                    exec_argv=() if started else install.exec_argv,
                                    join_cgroups=join, etc_files=spec.etc_files,
                                    runtime_fd=runtime_fd)
        finally:
            for fd in join:
                os.close(fd)

    # the phases of a fork from the zygote ------------------------------------------------
    async def _start_forked(self, env: Environment, install: RuntimeInstall,
                            environ: dict[str, str], attacher: VpcAttacher | None,
                            timings: ColdStartTimings, laps: _Laps) -> None:
        """cgroup (its making alone), spawn (the zygote started if need be, and the fork),
        vpc_attach."""
        spec = env.spec
        laps.restart()
        env.cgroup = cgroups.create_env_cgroup(
            self.names, env.env_id, spec.memory_mb,
            group=cgroups.function_group(spec.region, spec.name))
        timings.cgroup_ms = laps.lap()
        zygote = await self.zygotes.get(install.interpreter)
        request = self._spawn_request(env, install, environ)
        # A VPC function's spawn request goes first, gated, and the sandbox is attached as
        # soon as it is sent: the `go` then waits in the sandbox's socket when it is forked.
        # (Attached before the request, each VPC cold start of a burst queued behind every
        # earlier one's attach; attached after the zygote's answer, each forked sandbox waited
        # for a busy loop to come round to it.)
        gate, theirs = NetworkGate.pair() if attacher is not None else (None, None)
        try:
            runtime_sock = await self._runtime_socket(env, install, None)
        except BaseException:
            if gate is not None and theirs is not None:
                gate.close()
                theirs.close()
            raise
        try:
            attached_ms = await _spawn(env, zygote, request, gate, theirs, attacher,
                                       runtime_sock)
            timings.spawn_ms = laps.lap()
            if gate is not None:
                assert attacher is not None
                timings.vpc_attach_ms = attached_ms if attached_ms is not None else \
                    await _attach_then_open(env, gate, attacher)
        finally:
            if gate is not None:
                gate.close()
        assert env.process is not None
        timings.zygote_fork_ms = env.process.fork_ms

    def _spawn_request(self, env: Environment, install: RuntimeInstall,
                       environ: dict[str, str]) -> SpawnRequest:
        spec = env.spec
        assert env.cgroup is not None
        return SpawnRequest(
            env_id=env.env_id, netns_path=env.sandbox.netns_path,
            cgroup_procs=env.cgroup.procs_files, code_dir=str(spec.code_dir),
            runtime=spec.runtime, handler=spec.handler, environ=environ,
            uid=self.settings.sandbox_uid, gid=self.settings.sandbox_uid,
            tmp_size_mb=tmp_size_mb(spec.memory_mb),
            opt_dir=str(spec.opt_dir or ""), mounts=install.mounts,
            exec_argv=install.exec_argv, etc_files=spec.etc_files)


def _runtime_install(spec: FunctionSpec) -> RuntimeInstall:
    install = registry.get(spec.runtime)
    if install is None:
        raise AwsError("InvalidRuntimeException",
                       f"The runtime parameter of {spec.runtime} is not supported.", 502, "User")
    return install


async def _spawn(env: Environment, zygote: Zygote, request: SpawnRequest,
                 gate: NetworkGate | None, theirs: socket.socket | None,
                 attacher: VpcAttacher | None,
                 runtime_sock: socket.socket | None = None) -> float | None:
    """Fork the environment from `zygote` (bounded: a zygote that never answers must not hold
    the invocation). A gated VPC environment is attached as soon as the request is sent, if
    that needs no waiting: then the milliseconds it took, else None (not attached yet)."""
    attached_ms: list[float] = []

    def attach_at_once() -> None:
        assert attacher is not None and gate is not None
        began = time.monotonic()
        env.vpc_handle = attacher.attach_at_once(env.spec, env.sandbox)
        if env.vpc_handle is not None:
            gate.open()
            attached_ms.append((time.monotonic() - began) * 1000)

    try:
        env.process = await asyncio.wait_for(
            zygote.spawn(request, env.output.write_fd, theirs,
                         attach_at_once if gate is not None else None,
                         runtime_sock.fileno() if runtime_sock is not None else None),
            INIT_TIMEOUT_S)
    finally:
        if theirs is not None:
            theirs.close()
        if runtime_sock is not None:
            runtime_sock.close()
    env.exited = asyncio.create_task(env.process.wait(), name=f"lp-env-{env.env_id}")
    return attached_ms[0] if attached_ms else None


async def _attach_then_open(env: Environment, gate: NetworkGate,
                            attacher: VpcAttacher) -> float:
    """Attach a gated VPC environment and let it run; the milliseconds attaching took."""
    began = time.monotonic()
    env.vpc_handle = await attacher.attach(env.spec, env.sandbox)
    gate.open()
    return (time.monotonic() - began) * 1000
