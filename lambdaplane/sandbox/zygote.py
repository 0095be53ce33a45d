"""Server side of the zygotes: the control-socket client of one fork server
(zygote_main.py, started by zygote_launch.py). It sends spawn and prefork requests over the
unix SEQPACKET socket (the output pipe and target netns travel with SCM_RIGHTS) and turns the
zygote's reports into the handles of zygote_handles.py (`SpawnedEnv`, `PreforkedEnv`), whose
exits it resolves. A VPC environment (forked now, or pre-forked and assigned) is held by a
`NetworkGate` until its network is attached: no function code runs before the gate opens.

An environment is PID 1 of its own pid namespace, so SIGKILL to `SpawnedEnv.pid` takes every
process of it down, daemonised children included; the signal goes through a pidfd opened when
the spawn is reported, so a recycled pid is never hit. The zygote process lives in its own
cgroup under names.cgroup_dir; the environments in theirs (cgroups.py, made by the caller)."""
from __future__ import annotations

import array
import asyncio
import contextlib
import itertools
import json
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..net.names import Names
from .cgroup_tree import kill_cgroup_tree
from .zygote_handles import (
    BOOTSTRAP_NOT_EXECUTABLE,
    BOOTSTRAP_NOT_FOUND,
    KILLED,
    SANDBOX_SETUP_FAILED,
    NetworkGate,
    PreforkedEnv,
    SpawnedEnv,
)
from .zygote_launch import (
    PROVIDED_RUNTIMES,
    START_TIMEOUT_S,
    LaunchedZygote,
    ZygoteError,
    default_interpreter,
    interpreter_for,
    lang_prefix,
    launch,
    stop_launched,
    supported_runtimes,
)

# What importers of this module use (defined in zygote_handles.py and zygote_launch.py).
__all__ = ["BOOTSTRAP_NOT_EXECUTABLE", "BOOTSTRAP_NOT_FOUND", "PROVIDED_RUNTIMES",
           "SANDBOX_SETUP_FAILED", "NetworkGate", "PreforkedEnv", "SpawnRequest", "SpawnedEnv",
           "Zygote", "ZygoteError", "default_interpreter", "interpreter_for", "lang_prefix",
           "supported_runtimes"]

log = logging.getLogger("lambdaplane.zygote")

_STOP_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class SpawnRequest:
    env_id: str
    netns_path: str  # e.g. /run/netns/lpab1-s3 : the child setns()es into it
    cgroup_procs: list[str]  # EnvCgroup.procs_files
    code_dir: str  # host dir, bind-mounted read-only at /var/task
    runtime: str  # python3.x | provided.al2023 | provided.al2
    handler: str
    environ: dict[str, str]  # the complete environment, built by the caller
    uid: int
    gid: int
    tmp_size_mb: int = 512
    opt_dir: str = ""  # host dir of the merged layers, bind-mounted read-only at /opt
    # the runtime's read-only binds [(host dir, sandbox dir)] and the program it execs ([] =
    # the zygote's own python bootstrap): runtimes/registry.py RuntimeInstall
    mounts: tuple[tuple[str, str], ...] = ()
    exec_argv: tuple[str, ...] = ()
    etc_files: dict[str, str] = field(default_factory=dict)  # FunctionSpec.etc_files


class Zygote:
    def __init__(self, interpreter: str, launched: LaunchedZygote) -> None:
        self.interpreter = interpreter
        self.runtime_sources: frozenset[str] = frozenset()
        self.pid = launched.proc.pid
        self._proc = launched.proc
        self._conn = launched.conn
        self._cgroup = launched.cgroup
        self._loop = asyncio.get_running_loop()
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[SpawnedEnv]] = {}
        self._send_lock = asyncio.Lock()
        self._envs: dict[int, SpawnedEnv] = {}
        self._ready: asyncio.Future[int] = self._loop.create_future()
        self._closed = False
        self._stopping = False
        self._loop.add_reader(self._conn.fileno(), self._on_readable)

    @classmethod
    async def start(cls, interpreter: str, names: Names, work_dir: Path,
                    runtime_sources: tuple[str, ...] = (),
                    seccomp_program: Path | None = None) -> "Zygote":
        """runtime_sources: the host dirs its runtimes mount (RuntimeInstall.mounts); a
        pre-forked sandbox can take only runtimes whose dirs are among them.
        seccomp_program: the compiled filter (seccomp_profile.compile_to) every
        environment of this zygote loads before function code; None: no filter."""
        launched = await launch(interpreter, names, work_dir, runtime_sources,
                                seccomp_program)
        try:
            zygote = cls(interpreter, launched)
            zygote.runtime_sources = frozenset(runtime_sources)
            try:
                await asyncio.wait_for(asyncio.shield(zygote._ready), START_TIMEOUT_S)
            except BaseException:
                await zygote.stop()
                raise
            return zygote
        except BaseException:
            await stop_launched(launched.proc, launched.cgroup)
            raise

    @property
    def running(self) -> bool:
        """False once the zygote exited or its connection broke (it is then replaced)."""
        return not self._closed

    async def spawn(self, req: SpawnRequest, output_fd: int,
                    gate: socket.socket | None = None,
                    sent: Callable[[], None] | None = None,
                    runtime_fd: int | None = None) -> SpawnedEnv:
        """Fork an environment; its stdout and stderr go to output_fd (duplicated to the
        zygote; the caller keeps and closes its own copy). gate: the sandbox's end of a
        NetworkGate.pair(); the environment then runs no function code until it opens.
        sent: called once the request is with the zygote, before its answer.
        runtime_fd: the sandbox's end of its runtime's socketpair (runtime_frames.py)."""
        extra: dict[str, Any] = {"gated": True} if gate else {}
        if runtime_fd is not None:
            extra["runtime_fd"] = True
        return await self._spawn(req, output_fd, extra,
                                 ([gate.fileno()] if gate else [])
                                 + ([runtime_fd] if runtime_fd is not None else []), sent)

    async def prefork(self, req: SpawnRequest) -> PreforkedEnv:
        """Fork a sandbox before its function is known: built and waiting, as root, for
        `PreforkedEnv.assign`. req.code_dir is the code store's root (mounted whole until
        then); runtime, handler and environ are ignored."""
        ours, theirs = socket.socketpair(socket.AF_UNIX,
                                         socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        try:
            try:
                process = await self._spawn(req, theirs.fileno(), {"prefork": True}, [])
            finally:
                theirs.close()
        except BaseException:
            ours.close()
            raise
        return PreforkedEnv(process, ours)

    async def _spawn(self, req: SpawnRequest, fd: int, extra: dict[str, Any],
                     extra_fds: list[int],
                     sent: Callable[[], None] | None = None) -> SpawnedEnv:
        if self._closed:
            raise ZygoteError(f"zygote {self.interpreter} is not running")
        request_id = next(self._ids)
        future: asyncio.Future[SpawnedEnv] = self._loop.create_future()
        self._pending[request_id] = future
        # vars(), not asdict(): no deep copy of the environment for every cold start
        message = json.dumps({"op": "spawn", "id": request_id, **vars(req), **extra}).encode()
        # The target netns goes as an fd: the zygote's mount namespace has no /run/netns.
        try:
            netns_fd = os.open(req.netns_path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as e:
            self._pending.pop(request_id, None)
            raise ZygoteError(f"spawn failed: netns {req.netns_path}: {e.strerror}") from None
        try:
            try:
                await self._send(message, [fd, netns_fd, *extra_fds])
            finally:
                os.close(netns_fd)
            if sent is not None:
                sent()
            return await future
        finally:
            self._pending.pop(request_id, None)

    async def stop(self) -> None:
        """Stop the zygote. Environments still running are killed (by the zygote, which then
        reports their exit), so nothing is left behind; callers normally stop them first."""
        self._stopping = True
        if not self._closed:
            with contextlib.suppress(OSError):
                await self._send(json.dumps({"op": "stop"}).encode(), [])
        try:
            await asyncio.wait_for(self._proc.wait(), _STOP_TIMEOUT_S)
        except asyncio.TimeoutError:
            log.warning("zygote %s (pid %d) did not stop; killing it", self.interpreter,
                        self.pid)
            self._proc.kill()
            await self._proc.wait()
        # Exit reports still queued in the socket resolve their waiters before we close it.
        self._on_readable()
        self._close("zygote stopped")
        for d in self._cgroup.dirs:  # sleeps while the kernel reaps: off the loop
            await asyncio.to_thread(kill_cgroup_tree, d)

    # --- internals ------------------------------------------------------------------------

    async def _send(self, data: bytes, fds: list[int]) -> None:
        anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else []
        # One sender at a time: a socket has one writer callback, so a second sender waiting
        # for room would replace the first one's, which then waited forever (seen in bursts
        # of hundreds of cold starts, when the zygote's receive queue was full).
        async with self._send_lock:
            while True:
                try:
                    self._conn.sendmsg([data], anc)
                    return
                except BlockingIOError:
                    writable = self._loop.create_future()
                    self._loop.add_writer(self._conn.fileno(), writable.set_result, None)
                    try:
                        await writable
                    finally:
                        self._loop.remove_writer(self._conn.fileno())

    def _on_readable(self) -> None:
        if self._closed:
            return
        while True:
            try:
                data = self._conn.recv(64 * 1024)
            except BlockingIOError:
                return
            except OSError as e:
                self._close(f"zygote connection failed: {e}")
                return
            if not data:
                self._close("zygote exited")
                return
            self._dispatch(json.loads(data))

    def _dispatch(self, msg: dict[str, Any]) -> None:
        op = msg["op"]
        if op == "spawned":
            env = SpawnedEnv(msg["pid"], self._loop)
            env.fork_ms = float(msg.get("fork_ms", 0.0))
            self._envs[env.pid] = env
            future = self._pending.get(msg["id"])
            if future is not None and not future.done():
                future.set_result(env)
            else:  # the caller gave up waiting: the environment is nobody's, end it
                env.kill()
        elif op == "spawn_failed":
            future = self._pending.get(msg["id"])
            if future is not None and not future.done():
                future.set_exception(ZygoteError(f"spawn failed: {msg['error']}"))
        elif op == "exit":
            ended = self._envs.pop(msg["pid"], None)
            if ended is not None:
                ended._exited(int(msg["status"]))
        elif op == "ready":
            if not self._ready.done():
                self._ready.set_result(msg["pid"])

    def _close(self, reason: str) -> None:
        if self._closed:
            return
        self._closed = True
        self._loop.remove_reader(self._conn.fileno())
        self._conn.close()
        for future in self._pending.values():
            if not future.done():
                future.set_exception(ZygoteError(reason))
        if not self._ready.done():
            self._ready.set_exception(ZygoteError(reason))
        # No one is left to report these exits: kill them so the status is true.
        for env in self._envs.values():
            env.kill()
            env._exited(KILLED)
        self._envs.clear()
        if not self._stopping:
            log.error("zygote %s (pid %d): %s", self.interpreter, self.pid, reason)
