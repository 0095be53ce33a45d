"""ExecutionEnvironments: the one interface the control plane uses to run code.

Owns every execution environment's life: cold start (a pooled sandbox netns + a cgroup + a
fork from the runtime's zygote), handing it invocations through the Runtime API, one invocation
at a time, warm reuse by revision, timeouts, crashes and OOM kills, idle reaping, and — on
stop — removing every process, cgroup and kernel object it made (including the worker netns).
It does not decide *whether* to run (concurrency limits, function state): service/ does."""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Protocol

from .runtime_api import Outcome, PendingInvocation, RuntimeApi, RuntimeChannel
from ..config import Settings
from ..errors import AwsError
from ..net.executor import NetThread
from ..net.names import Names
from ..net.worker import GATEWAY, WorkerNet
from . import cgroups, seccomp_profile
from .capacity import CapacityController, DemandLearner
from .cgroups import EnvCgroup
from ..store.log_ingest import LogIngest
from .log_format import InvocationFacts, LogSettings, end_lines, start_line
from .logs import FunctionLog, OutputCapture, aws_timestamp
from .pool import Sandbox, SandboxPool
from .prewarm import Prewarmed, PrewarmedSandboxes
from .runtimes import registry
from .types import FunctionSpec, Invocation, InvocationResult
from .zygote import (
    NetworkGate,
    SpawnedEnv,
    SpawnRequest,
    Zygote,
    default_interpreter,
    interpreter_for,
    supported_runtimes,
)

log = logging.getLogger(__name__)

INIT_TIMEOUT_S = 10.0  # AWS gives on-demand init 10 s, outside the function's own timeout
KILL_WAIT_S = 5.0
RUNTIME_DIR = "/var/runtime"
PATH = "/var/lang/bin:/usr/local/bin:/usr/bin/:/bin:/opt/bin"
LD_LIBRARY_PATH = ("/var/lang/lib:/lib64:/usr/lib64:/var/runtime:/var/runtime/lib:/var/task:"
                   "/var/task/lib:/opt/lib")


class VpcAttacher(Protocol):
    """Connects a VPC function's sandbox to its VPC at cold start (Hyperplane: one steering
    element; legacy: a dedicated ENI) and disconnects it when the environment goes. attach may
    raise AwsError (e.g. SubnetIPAddressLimitReachedException in legacy mode)."""

    async def attach(self, spec: FunctionSpec, sandbox: Sandbox) -> object: ...

    def attach_at_once(self, spec: FunctionSpec, sandbox: Sandbox) -> object | None:
        """attach, if it needs no waiting (Hyperplane with an ENI that has room); else None
        and nothing done."""
        ...

    async def detach(self, handle: object) -> None: ...


@dataclass
class Environment:
    env_id: str
    spec: FunctionSpec
    sandbox: Sandbox
    channel: RuntimeChannel
    output: OutputCapture
    cgroup: EnvCgroup | None = None
    process: SpawnedEnv | None = None
    exited: asyncio.Task[int] | None = None
    state: str = "starting"  # starting | busy | idle | dead
    retiring: bool = False  # function updated/deleted: die after the current invocation
    last_used: float = field(default_factory=time.monotonic)
    log_stream: str = ""
    vpc_handle: object | None = None  # what the VpcAttacher returned; detached on teardown


@dataclass(frozen=True)
class EnvironmentInfo:
    """What the console shows of one environment."""
    env_id: str
    region: str
    function: str
    version: str
    state: str
    sandbox_address: str
    log_stream: str
    idle_s: float  # since its last invocation ended (or it was made)


VPC_CA_FILE = "etc/ssl/lambdaplane-ca.pem"  # a VPC function's: FunctionSpec.etc_files

def reserved_environment(spec: FunctionSpec, log_stream: str, port: int) -> dict[str, str]:
    """The variables Lambda sets in every environment (user variables cannot override them)."""
    env = dict(spec.environment)
    env.update({
        "_HANDLER": spec.handler,
        "AWS_REGION": spec.region,
        "AWS_DEFAULT_REGION": spec.region,
        "AWS_LAMBDA_FUNCTION_NAME": spec.name,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_mb),
        "AWS_LAMBDA_FUNCTION_VERSION": spec.version,
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "AWS_LAMBDA_LOG_GROUP_NAME": spec.log_group,
        "AWS_LAMBDA_LOG_STREAM_NAME": log_stream,
        "AWS_LAMBDA_RUNTIME_API": f"{GATEWAY}:{port}",
        "LAMBDA_TASK_ROOT": "/var/task",
        "LAMBDA_RUNTIME_DIR": RUNTIME_DIR,
        "TZ": "UTC",
        "LANG": "en_US.UTF-8",
        "PATH": PATH,
        "LD_LIBRARY_PATH": LD_LIBRARY_PATH,
    })
    env.update(LogSettings.from_config(spec.logging_config).environment())
    if spec.runtime.startswith("nodejs"):
        env["NODE_PATH"] = node_path(spec.runtime)
    if VPC_CA_FILE in spec.etc_files and "AWS_CA_BUNDLE" not in spec.environment:
        # the SDKs trust the CA of the VPC's interface endpoints (service/local_ca.py)
        env["AWS_CA_BUNDLE"] = "/" + VPC_CA_FILE
    if spec.runtime.startswith("provided"):
        env.pop("AWS_EXECUTION_ENV", None)
    else:
        env["AWS_EXECUTION_ENV"] = f"AWS_Lambda_{spec.runtime}"
    return env


def _status(result: InvocationResult) -> str:
    """The invocation's outcome as platform.runtimeDone/report name it."""
    if result.error_type == "Sandbox.Timedout":
        return "timeout"
    if result.error_type in ("Runtime.ExitError", "Runtime.OutOfMemory"):
        return "failure"
    return "error" if result.function_error else "success"


def node_path(runtime: str) -> str:
    """AWS's NODE_PATH: layers' node_modules first (per major, then shared), then the
    runtime's, then the function's own directory."""
    major = runtime[len("nodejs"):].split(".")[0]
    return (f"/opt/nodejs/node{major}/node_modules:/opt/nodejs/node_modules:"
            f"/var/runtime/node_modules:/var/runtime:/var/task")


def tmp_size_mb(memory_mb: int) -> int:
    """/tmp is a tmpfs, so its pages count against the environment's memory cgroup: at AWS's
    fixed 512 MB a 128 MB function filling /tmp would be OOM-killed instead of seeing ENOSPC.
    Cap it at half the memory (AWS's 512 MB from 1,024 MB up) so the clear error comes first."""
    return max(16, min(512, memory_mb // 2))


def exit_description(code: int) -> str:
    """As the Lambda runtime reports it: `exit status 1` or `signal: killed`."""
    if code >= 0:
        return f"exit status {code}"
    signals = {9: "killed", 15: "terminated", 11: "segmentation fault", 6: "aborted"}
    return f"signal: {signals.get(-code, str(-code))}"


class ExecutionEnvironments:
    def __init__(self, settings: Settings, names: Names, net: NetThread) -> None:
        self.settings = settings
        self.names = names
        self.net = net
        registry.configure(settings.runtimes)
        self.worker = WorkerNet(names, settings.uplink, settings.runtime_api_port)
        self.pool = SandboxPool(names, net, settings.pool_size,
                                busy=lambda: bool(self._busy))
        self.runtime_api = RuntimeApi(net, names.worker_netns, settings.runtime_api_port)
        self.prewarmed = PrewarmedSandboxes(settings, names, self.pool, self._zygote,
                                            busy=lambda: bool(self._busy))
        # per Node.js runtime that had a cold start: sandboxes with node started (prestart.py)
        self.prestarted: dict[str, PrewarmedSandboxes] = {}
        self.capacity = CapacityController(
            DemandLearner(settings.capacity_window_s), self.pool, self.prewarmed,
            pool_floor=settings.pool_size, prefork_floor=settings.prefork,
            cap=settings.capacity_max, prefork_runtime=lambda: self.prewarmed.interpreter,
            busy=lambda: bool(self._busy), adaptive=settings.capacity == "adaptive")
        self._zygotes: dict[str, Zygote] = {}
        self._zygote_locks: dict[str, asyncio.Lock] = {}
        self._seccomp_file: Path | None = None
        self.zygote_restarts = 0  # zygotes found gone and replaced (status shows it)
        self._envs: dict[str, Environment] = {}
        self._idle: dict[tuple[str, str], list[Environment]] = {}
        self._busy: dict[tuple[str, str], int] = {}
        self._teardowns: set[asyncio.Task[None]] = set()
        self._reaper: asyncio.Task[None] | None = None
        self._started = False
        self.vpc_attacher: VpcAttacher | None = None  # set by the server (service/hyperplane.py)
        self.log_ingest: LogIngest | None = None  # set by the server (service/logs.py)
        self._moves_favored: cgroups.Cgroup2Mount | None = None
        self._moves_record = settings.data_dir / "cgroup2-options"

    # lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        try:
            # A SIGKILLed server of this instance left its environments' and zygotes' cgroups
            # (and any process still in them): nothing of ours runs yet, so all of it is stale.
            await asyncio.to_thread(cgroups.remove_instance_cgroups, self.names)
            self._moves_favored = await asyncio.to_thread(cgroups.favor_dynamic_moves,
                                                          self._moves_record)
            await self.net.run(self.worker.setup)
            await self.pool.start()
            await self.runtime_api.start()
            self._started = True
            # Zygotes in parallel; one that fails to start is retried on first use.
            # Zygotes in parallel for python3.11/provided.*/nodejs* (the default interpreter)
            # and every python mapped with --runtime; other pythons found start on first use.
            interpreters = {i for r in supported_runtimes() if (i := interpreter_for(r))
                            and (r in self.settings.runtimes or i == default_interpreter())}
            await asyncio.gather(*(self._zygote(i) for i in interpreters), return_exceptions=True)
            await self.prewarmed.start()
            await self.capacity.start()
            self._reaper = asyncio.create_task(self._reap_idle(), name="lp-env-reaper")
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        self._started = False
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
            self._reaper = None
        await self.capacity.stop()
        await self.prewarmed.stop()  # first: it would go on making sandboxes meanwhile
        for prestarted in list(self.prestarted.values()):
            await prestarted.stop()
        self.prestarted.clear()
        for env in list(self._envs.values()):
            self._destroy_soon(env)
        while self._teardowns:
            await asyncio.gather(*list(self._teardowns), return_exceptions=True)
        await self.runtime_api.stop()
        for zygote in list(self._zygotes.values()):
            with contextlib.suppress(Exception):
                await zygote.stop()
        self._zygotes.clear()
        await self.pool.stop()
        await self.net.run(self.worker.teardown)
        await asyncio.to_thread(cgroups.remove_instance_cgroups, self.names)
        await asyncio.to_thread(cgroups.restore_moves, self._moves_favored,
                                self._moves_record)
        self._moves_favored = None


    # queries -----------------------------------------------------------------------------
    def in_flight(self, key: tuple[str, str]) -> int:
        return self._busy.get(key, 0)

    def total_in_flight(self) -> int:
        return sum(self._busy.values())

    def stats(self) -> dict:
        states: dict[str, int] = {"starting": 0, "busy": 0, "idle": 0}
        for env in self._envs.values():
            states[env.state] = states.get(env.state, 0) + 1
        return {**self.pool.stats(), **self.prewarmed.stats(), "environments": states,
                "prestarted": {rt: p.stats() for rt, p in self.prestarted.items()},
                "in_flight": self.total_in_flight(), "zygotes": sorted(self._zygotes),
                "zygotes_down": sorted(i for i, z in self._zygotes.items() if not z.running),
                "zygote_restarts": self.zygote_restarts, "capacity": self.capacity.stats()}

    def environments(self) -> list[EnvironmentInfo]:
        """Every execution environment now, for the console (read-only copies)."""
        now = time.monotonic()
        return [EnvironmentInfo(env.env_id, env.spec.region, env.spec.name, env.spec.version,
                                env.state, env.sandbox.address, env.log_stream,
                                now - env.last_used)
                for env in self._envs.values()]

    async def retire(self, key: tuple[str, str]) -> None:
        for env in list(self._envs.values()):
            if env.spec.key != key:
                continue
            if env.state == "idle":
                self._unlist_idle(env)
                self._destroy_soon(env)
            else:
                env.retiring = True

    # invoke ------------------------------------------------------------------------------
    async def invoke(self, spec: FunctionSpec, inv: Invocation) -> InvocationResult:
        if not self._started:
            raise AwsError("ServiceException", "Execution environments are not running", 500,
                           "Service")
        key = spec.key
        self._busy[key] = self._busy.get(key, 0) + 1
        try:
            env = self._take_idle(spec)
            timings: dict[str, float] = {}
            cold = env is None
            if env is None:
                env = await self._cold_start(spec, timings)
            env.state = "busy"
            try:
                result = await self._run(env, inv, cold, timings)
            except BaseException:
                self._destroy_soon(env)
                raise
            self._after_invocation(env, result)
            return result
        finally:
            self._busy[key] -= 1
            if not self._busy[key]:
                del self._busy[key]

    def _take_idle(self, spec: FunctionSpec) -> Environment | None:
        idle = self._idle.get(spec.key)
        while idle:
            env = idle.pop()  # most recently used: warmest caches
            if env.state == "idle" and env.spec.revision_id == spec.revision_id:
                return env
            if env.state == "idle":  # an older revision: of no further use
                self._destroy_soon(env)
        return None

    def _unlist_idle(self, env: Environment) -> None:
        idle = self._idle.get(env.spec.key)
        if idle and env in idle:
            idle.remove(env)

    async def _cold_start(self, spec: FunctionSpec, timings: dict[str, float]) -> Environment:
        install = registry.get(spec.runtime)
        if install is None:
            raise AwsError("InvalidRuntimeException",
                           f"The runtime parameter of {spec.runtime} is not supported.", 502,
                           "User")
        interpreter = install.interpreter
        t0 = time.monotonic()
        self.capacity.cold_start(interpreter)
        zygote_now = self._zygotes.get(interpreter)
        stashed = zygote_now is not None and \
            {source for source, _ in install.mounts} <= zygote_now.runtime_sources
        prewarmed = self._take_prestarted(install, spec)
        started_already = prewarmed is not None
        if prewarmed is None and stashed:
            prewarmed = self.prewarmed.take(interpreter, spec.code_dir)
        sandbox = prewarmed.sandbox if prewarmed else await self.pool.take()
        t1 = time.monotonic()
        env_id = prewarmed.env_id if prewarmed else secrets.token_hex(8)
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
        if prewarmed:  # from here on the environment's: its teardown frees all of it
            env.cgroup, env.process = prewarmed.cgroup, prewarmed.forked.process
            env.exited = prewarmed.exited
        self._envs[env_id] = env
        vpc_ms = 0.0
        try:
            if spec.vpc is not None and self.vpc_attacher is None:
                raise AwsError("ServiceException", "VPC networking is not available", 500,
                               "Service")
            environ = reserved_environment(spec, log_stream, self.settings.runtime_api_port)
            if prewarmed:
                cgroups.set_memory_limit(prewarmed.cgroup, spec.memory_mb)
                env.cgroup = prewarmed.cgroup = cgroups.for_function(
                    self.names, prewarmed.cgroup, cgroups.function_group(spec.region, spec.name),
                    spec.memory_mb)
                t2 = time.monotonic()
                # A VPC function's sandbox sets itself up while its steering element is
                # added, and runs no function code until told the network is there.
                join = [os.open(p, os.O_WRONLY | os.O_CLOEXEC)
                        for p in cgroups.cpu_procs(env.cgroup)]
                try:
                    gate = prewarmed.forked.assign(spec.code_dir.name, spec.runtime, environ,
                                                   tmp_size_mb(spec.memory_mb),
                                                   env.output.write_fd,
                                                   network_pending=spec.vpc is not None,
                                                   opt_name=spec.opt_dir.name if spec.opt_dir
                                                   else "",
                                                   mounts=() if started_already
                                                   else install.mounts,
                                                   exec_argv=() if started_already
                                                   else install.exec_argv,
                                                   join_cgroups=join,
                                                   etc_files=spec.etc_files)
                finally:
                    for fd in join:
                        os.close(fd)
                t3 = time.monotonic()
                if gate is not None:
                    vpc_ms = await self._attach_then_open(env, gate)
            else:
                t_cgroup = time.monotonic()
                env.cgroup = cgroups.create_env_cgroup(
                    self.names, env_id, spec.memory_mb,
                    group=cgroups.function_group(spec.region, spec.name))
                t2 = time.monotonic()
                zygote = await self._zygote(interpreter)
                request = SpawnRequest(
                    env_id=env_id, netns_path=sandbox.netns_path,
                    cgroup_procs=env.cgroup.procs_files, code_dir=str(spec.code_dir),
                    runtime=spec.runtime, handler=spec.handler, environ=environ,
                    uid=self.settings.sandbox_uid, gid=self.settings.sandbox_uid,
                    tmp_size_mb=tmp_size_mb(spec.memory_mb),
                    opt_dir=str(spec.opt_dir or ""), mounts=install.mounts,
                    exec_argv=install.exec_argv, etc_files=spec.etc_files)
                # A VPC function's spawn request goes first, gated, and the sandbox is
                # attached as soon as it is sent: the `go` then waits in the sandbox's socket
                # when it is forked. (Attached before the request, each VPC cold start of a
                # burst queued behind every earlier one's attach; attached after the zygote's
                # answer, each forked sandbox waited for a busy loop to come round to it.)
                gate, theirs = NetworkGate.pair() if spec.vpc is not None else (None, None)
                attached_ms: list[float] = []

                def attach_at_once() -> None:
                    assert self.vpc_attacher is not None and gate is not None
                    began = time.monotonic()
                    env.vpc_handle = self.vpc_attacher.attach_at_once(spec, sandbox)
                    if env.vpc_handle is not None:
                        gate.open()
                        attached_ms.append((time.monotonic() - began) * 1000)

                try:
                    # bounded: a zygote that never answers must not hold the invocation
                    try:
                        env.process = await asyncio.wait_for(
                            zygote.spawn(request, env.output.write_fd, theirs,
                                         attach_at_once if gate is not None else None),
                            INIT_TIMEOUT_S)
                    finally:
                        if theirs is not None:
                            theirs.close()
                    env.exited = asyncio.create_task(env.process.wait(),
                                                     name=f"lp-env-{env_id}")
                    t3 = time.monotonic()
                    if gate is not None:
                        vpc_ms = attached_ms[0] if attached_ms else \
                            await self._attach_then_open(env, gate)
                finally:
                    if gate is not None:
                        gate.close()
            env.output.writer_sent()
            assert env.exited is not None
            env.exited.add_done_callback(lambda _t, e=env: self._on_exit(e))
        except BaseException:
            if prewarmed:
                prewarmed.forked.close()
            self._destroy_soon(env)
            raise
        cgroup_began = t1 if prewarmed else t_cgroup
        timings.update(pool_take_ms=(t1 - t0) * 1000, vpc_attach_ms=vpc_ms,
                       cgroup_ms=(t2 - cgroup_began) * 1000, spawn_ms=(t3 - t2) * 1000,
                       zygote_fork_ms=0.0 if prewarmed else env.process.fork_ms)
        timings["cold_start_began"] = t0
        return env

    def _take_prestarted(self, install: registry.RuntimeInstall,
                         spec: FunctionSpec) -> Prewarmed | None:
        """A sandbox with the runtime started already (Node.js), if one is ready. The first
        cold start of a runtime makes its pool, which fills in the background."""
        if not install.exec_argv or self.settings.prestart <= 0 or not self._started:
            return None
        pool = self.prestarted.get(install.runtime)
        if pool is None:
            pool = PrewarmedSandboxes(self.settings, self.names, self.pool, self._zygote,
                                      busy=lambda: bool(self._busy), runtime=install,
                                      size=self.settings.prestart)
            self.prestarted[install.runtime] = pool
            task = asyncio.create_task(pool.start(), name=f"lp-prestart-{install.runtime}")
            self._teardowns.add(task)
            task.add_done_callback(self._teardowns.discard)
            return None
        return pool.take(install.interpreter, spec.code_dir)

    async def _attach_then_open(self, env: Environment, gate: NetworkGate) -> float:
        """Attach a gated VPC environment and let it run; the milliseconds attaching took."""
        assert self.vpc_attacher is not None  # checked before the sandbox was set up
        began = time.monotonic()
        env.vpc_handle = await self.vpc_attacher.attach(env.spec, env.sandbox)
        gate.open()
        return (time.monotonic() - began) * 1000

    async def _run(self, env: Environment, inv: Invocation, cold: bool,
                   timings: dict[str, float]) -> InvocationResult:
        spec = env.spec
        began = timings.pop("cold_start_began", time.monotonic())
        fetched: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        outside_text: list[str] = []

        def on_fetch(pending: PendingInvocation) -> None:
            # the function's own timeout runs from the moment its runtime takes the event
            pending.deadline_ms = int((time.time() + spec.timeout_s) * 1000)
            outside_text.append(env.output.take_outside_and_begin(inv.request_id))
            if not fetched.done():
                fetched.set_result(time.monotonic())

        pending = env.channel.submit(inv, inv.function_arn or spec.arn, int((time.time() + spec.timeout_s) * 1000),
                                     on_fetch)
        assert env.exited is not None
        await _first_of((pending.outcome, env.exited, fetched),
                        INIT_TIMEOUT_S if cold else spec.timeout_s)
        if fetched.done() and not pending.outcome.done() and not env.exited.done():
            remaining = spec.timeout_s - (time.monotonic() - fetched.result())
            await _first_of((pending.outcome, env.exited), max(remaining, 0))
        ended = time.monotonic()
        start = fetched.result() if fetched.done() else ended
        init_ms = (start - began) * 1000 if cold else None
        duration_ms = (ended - start) * 1000

        result, error_line, healthy = await self._outcome(env, pending, inv)
        output = env.output.end() if fetched.done() else env.output.take_outside()
        max_used = _max_memory_mb(env.cgroup)
        facts = InvocationFacts(inv.request_id, spec.version, duration_ms, spec.memory_mb,
                                max_used, init_ms, _status(result))
        settings = LogSettings.from_config(spec.logging_config)
        lines = [outside_text[0] if outside_text else "", start_line(settings, facts),
                 output, error_line, end_lines(settings, facts)]
        result.log_text = "".join(line if not line or line.endswith("\n") else line + "\n"
                                  for line in lines)
        env.output.function_log.append(result.log_text)
        result.duration_ms = duration_ms
        result.init_duration_ms = init_ms
        result.cold_start = cold
        result.extra = {**timings, "duration_ms": duration_ms}
        if init_ms is not None:
            result.extra["init_ms"] = init_ms
        if not healthy:
            env.retiring = True
        return result

    async def _outcome(self, env: Environment, pending: PendingInvocation, inv: Invocation
                       ) -> tuple[InvocationResult, str, bool]:
        """(result, extra log line, whether the environment may be reused)."""
        if pending.outcome.done():
            outcome: Outcome = pending.outcome.result()
            if outcome.kind == "response":
                return InvocationResult(payload=outcome.body), "", True
            if outcome.kind == "init_error":
                return (InvocationResult(payload=outcome.body, function_error="Unhandled",
                                         error_type=outcome.error_type), "", False)
            return (InvocationResult(payload=outcome.body, function_error="Unhandled",
                                     error_type=outcome.error_type), "", True)
        assert env.exited is not None
        if env.exited.done():
            code = env.exited.result() if not env.exited.cancelled() else -9
            oom = env.cgroup is not None and await asyncio.to_thread(cgroups.oom_killed,
                                                                     env.cgroup)
            error_type = "Runtime.OutOfMemory" if oom else "Runtime.ExitError"
            message = (f"RequestId: {inv.request_id} Error: Runtime exited with error: "
                       f"{exit_description(code)}")
            payload = json.dumps({"errorType": error_type, "errorMessage": message}).encode()
            return (InvocationResult(payload=payload, function_error="Unhandled",
                                     error_type=error_type), f"{message}\n{error_type}\n", False)
        # timed out: the environment is killed, its state cannot be trusted
        if env.process is not None:
            env.process.kill()
        message = (f"{aws_timestamp()} {inv.request_id} Task timed out after "
                   f"{env.spec.timeout_s:.2f} seconds")
        payload = json.dumps({"errorMessage": message, "errorType": "Sandbox.Timedout"}).encode()
        return (InvocationResult(payload=payload, function_error="Unhandled",
                                 error_type="Sandbox.Timedout"), message + "\n", False)

    def _after_invocation(self, env: Environment, result: InvocationResult) -> None:
        if env.state == "dead":
            return
        if env.retiring or not self._started or (env.exited and env.exited.done()):
            self._destroy_soon(env)
            return
        env.state = "idle"
        env.last_used = time.monotonic()
        self._idle.setdefault(env.spec.key, []).append(env)
        if env.cgroup is not None and env.cgroup.left:  # its pre-fork cpu cgroup, empty now
            env.cgroup = cgroups.remove_left(env.cgroup)

    # zygotes -----------------------------------------------------------------------------
    async def _zygote(self, interpreter: str) -> Zygote:
        zygote = self._zygotes.get(interpreter)
        if zygote is not None and zygote.running:
            return zygote
        lock = self._zygote_locks.setdefault(interpreter, asyncio.Lock())
        async with lock:
            dead = self._zygotes.get(interpreter)
            if dead is not None and not dead.running:  # it vanished: a new one replaces it
                del self._zygotes[interpreter]
                self.zygote_restarts += 1
                log.warning("zygote %s (pid %d) is gone; starting a new one", interpreter,
                            dead.pid)
                await dead.stop()  # reaps it and removes its cgroup
            if interpreter not in self._zygotes:
                work_dir = self.settings.data_dir / "zygotes"
                work_dir.mkdir(parents=True, exist_ok=True)
                self._zygotes[interpreter] = await Zygote.start(
                    interpreter, self.names, work_dir, registry.mount_sources(interpreter),
                    await self._seccomp_program(work_dir))
            return self._zygotes[interpreter]

    async def _seccomp_program(self, work_dir: Path) -> Path | None:
        """The sandboxes' seccomp filter, compiled once per server (None: --seccomp off)."""
        if not self.settings.seccomp:
            return None
        if self._seccomp_file is None:
            self._seccomp_file = await asyncio.to_thread(
                seccomp_profile.compile_to, work_dir / "seccomp-x86_64.bpf")
        return self._seccomp_file

    # teardown ----------------------------------------------------------------------------
    def _on_exit(self, env: Environment) -> None:
        """A process that dies while idle (or starting without a caller) is cleaned up here;
        during an invocation, invoke() sees it and reports the error first."""
        if env.state == "idle":
            self._unlist_idle(env)
            self._destroy_soon(env)

    def _destroy_soon(self, env: Environment) -> None:
        if env.state == "dead":
            return
        env.state = "dead"
        self._unlist_idle(env)
        task = asyncio.create_task(self._destroy(env), name=f"lp-env-destroy-{env.env_id}")
        self._teardowns.add(task)
        task.add_done_callback(self._teardowns.discard)

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
            self._envs.pop(env.env_id, None)

    async def _reap_idle(self) -> None:
        period = max(0.05, min(1.0, self.settings.keep_alive_s / 4))
        while True:
            await asyncio.sleep(period)
            cutoff = time.monotonic() - self.settings.keep_alive_s
            for env in list(self._envs.values()):
                if env.state == "idle" and env.last_used < cutoff:
                    self._destroy_soon(env)


async def _first_of(futures: tuple[asyncio.Future, ...], timeout_s: float) -> None:
    """Until one of `futures` is done or `timeout_s` has passed. asyncio.wait does the same
    with more bookkeeping, twice per warm invoke; this is a visible share of one."""
    if any(f.done() for f in futures):
        return
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[None] = loop.create_future()

    def wake(_: object = None) -> None:
        if not waiter.done():
            waiter.set_result(None)

    for f in futures:
        f.add_done_callback(wake)
    timer = loop.call_later(timeout_s, wake)
    try:
        await waiter
    finally:
        timer.cancel()
        for f in futures:
            f.remove_done_callback(wake)


def _max_memory_mb(cg: EnvCgroup | None) -> int:
    if cg is None:
        return 0
    return max(1, round(cgroups.memory_peak_bytes(cg) / (1024 * 1024)))
