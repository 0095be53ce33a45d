"""Server side of the zygotes: start one fork server (zygote_main.py) per runtime interpreter,
send it spawn requests over a unix SEQPACKET socket (the output pipe travels with SCM_RIGHTS),
and turn its reports into `SpawnedEnv` objects whose `wait()` gives the exit status. A VPC
environment (forked now, or pre-forked and assigned) is held by a `NetworkGate` until its
network is attached: no function code runs before the gate opens.

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
import signal
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .cgroup_tree import kill_cgroup_tree
from ..net.names import Names
from . import cgroups
from .runtimes import registry

log = logging.getLogger("lambdaplane.zygote")

ZYGOTE_MAIN = Path(__file__).with_name("zygote_main.py")
ZYGOTE_LANG = Path(__file__).with_name("zygote_lang.py")


def lang_prefix(interpreter: str) -> str:
    """The install prefix of an interpreter outside /usr (<prefix>/bin/python3.X), which its
    zygote and sandboxes see at /var/lang."""
    return os.path.dirname(os.path.dirname(interpreter))
PROVIDED_RUNTIMES = registry.PROVIDED
ZYGOTE_ENVIRONMENT = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
_START_TIMEOUT_S = 10.0
_STOP_TIMEOUT_S = 5.0
_KILLED = -signal.SIGKILL
# Exit statuses an environment can end with before any function code ran.
SANDBOX_SETUP_FAILED = 125  # the sandbox could not be built (message on the output pipe)
BOOTSTRAP_NOT_EXECUTABLE = 126  # provided.*: /var/task/bootstrap is not executable
BOOTSTRAP_NOT_FOUND = 127  # provided.*: no /var/task/bootstrap


class ZygoteError(RuntimeError):
    pass


def default_interpreter() -> str:
    """The interpreter that runs the zygote for provided.* and nodejs* (it only builds the
    sandbox and execs their program): python3.11 if present, else the newest python3.x."""
    interpreter = registry.default_interpreter()
    if interpreter is None:
        raise ZygoteError("no python3.x interpreter found to run the zygote")
    return interpreter


def interpreter_for(runtime: str) -> str | None:
    """The python whose zygote runs `runtime` here (runtimes/registry.py), or None."""
    install = registry.get(runtime)
    return install.interpreter if install is not None else None


def supported_runtimes() -> list[str]:
    """The runtimes that can run on this host."""
    return sorted(registry.installed())


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


class NetworkGate:
    """Holds an environment's function code until its VPC path exists: the sandbox finishes
    its own set-up, then waits on its end of a socket pair. `open()` lets it run; `close()`
    alone (EOF) makes it exit with SANDBOX_SETUP_FAILED before any function code ran."""

    def __init__(self, control: socket.socket) -> None:
        self._control = control

    @classmethod
    def pair(cls) -> tuple["NetworkGate", socket.socket]:
        """(the gate, the sandbox's end: goes to the zygote, then is closed here)."""
        ours, theirs = socket.socketpair(socket.AF_UNIX,
                                         socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        return cls(ours), theirs

    def open(self) -> None:
        try:
            self._control.send(b"go")
        finally:
            self.close()

    def close(self) -> None:
        self._control.close()


@dataclass
class PreforkedEnv:
    """A sandbox forked ahead of demand, waiting for its function on `control`."""
    process: "SpawnedEnv"
    control: socket.socket

    def assign(self, code_name: str, runtime: str, environ: dict[str, str], tmp_size_mb: int,
               output_fd: int, network_pending: bool = False,
               opt_name: str = "", mounts: tuple[tuple[str, str], ...] = (),
               exec_argv: tuple[str, ...] = (),
               join_cgroups: list[int] | None = None,
               etc_files: dict[str, str] | None = None,
               runtime_fd: int | None = None) -> NetworkGate | None:
        """Hand it its function: code directory (by name in the store), runtime, environment,
        /tmp size and the output pipe. One small datagram to a waiting peer: never blocks.
        network_pending: it sets itself up but runs no function code until the returned
        gate is opened. opt_name: its merged layers (a directory of the store) for /opt.
        mounts/exec_argv: its runtime's read-only dirs and program (runtimes/registry.py).
        join_cgroups: open cgroup.procs files (fds, sent along) it joins first: its
        function's cpu cgroup (cgroups.for_function), not in its mount namespace.
        runtime_fd: the sandbox's end of its runtime's socketpair (runtime_frames.py), sent
        after the output pipe; a built-in Python runtime speaks the Runtime API over it."""
        message = json.dumps({"code": code_name, "runtime": runtime, "environ": environ,
                              "tmp_size_mb": tmp_size_mb,
                              "network_pending": network_pending, "opt": opt_name,
                              "mounts": mounts, "exec_argv": exec_argv,
                              "etc_files": etc_files or {},
                              "runtime_fd": runtime_fd is not None}).encode()
        fds = [output_fd, *([runtime_fd] if runtime_fd is not None else []),
               *(join_cgroups or [])]
        try:
            self.control.sendmsg([message], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                              array.array("i", fds))])
        except BaseException:
            self.close()
            raise
        if not network_pending:
            self.close()
            return None
        return NetworkGate(self.control)

    def close(self) -> None:
        """Unassigned, this makes the sandbox exit (EOF on its control socket)."""
        self.control.close()


class SpawnedEnv:
    """One running execution environment (the init of its pid namespace)."""

    def __init__(self, pid: int, loop: asyncio.AbstractEventLoop) -> None:
        self.pid = pid
        self._exit: asyncio.Future[int] = loop.create_future()
        self._pidfd: int | None = None
        self.fork_ms = 0.0  # the zygote's own time for this spawn (the rest was waiting)
        with contextlib.suppress(ProcessLookupError):
            self._pidfd = os.pidfd_open(pid)

    @property
    def returncode(self) -> int | None:
        return self._exit.result() if self._exit.done() else None

    async def wait(self) -> int:
        """Exit code >= 0, or -signal (e.g. -9 after kill() or the OOM killer)."""
        return await asyncio.shield(self._exit)

    def kill(self) -> None:
        """SIGKILL the whole environment; a no-op once it has exited."""
        if self._exit.done() or self._pidfd is None:
            return
        with contextlib.suppress(ProcessLookupError):
            signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)

    def _exited(self, status: int) -> None:
        if not self._exit.done():
            self._exit.set_result(status)
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None


class Zygote:
    def __init__(self, interpreter: str, proc: asyncio.subprocess.Process,
                 conn: socket.socket, cgroup: cgroups.EnvCgroup, work_dir: Path,
                 socket_path: Path | None) -> None:
        self.interpreter = interpreter
        self.runtime_sources: frozenset[str] = frozenset()
        self.pid = proc.pid
        self._proc = proc
        self._conn = conn
        self._cgroup = cgroup
        self._work_dir = work_dir
        self._socket_path = socket_path
        self._loop = asyncio.get_running_loop()
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[SpawnedEnv]] = {}
        self._send_lock = asyncio.Lock()
        self._envs: dict[int, SpawnedEnv] = {}
        self._ready: asyncio.Future[int] = self._loop.create_future()
        self._closed = False
        self._stopping = False
        self._loop.add_reader(conn.fileno(), self._on_readable)

    @classmethod
    async def start(cls, interpreter: str, names: Names, work_dir: Path,
                    runtime_sources: tuple[str, ...] = (),
                    seccomp_program: Path | None = None) -> "Zygote":
        """runtime_sources: the host dirs its runtimes mount (RuntimeInstall.mounts); a
        pre-forked sandbox can take only runtimes whose dirs are among them.
        seccomp_program: the compiled filter (seccomp_profile.compile_to) every
        environment of this zygote loads before function code; None: no filter."""
        work_dir.mkdir(parents=True, exist_ok=True)
        tag = Path(interpreter).name
        root_dir = work_dir / "sandbox-root"  # each child mounts its own tmpfs over it
        root_dir.mkdir(exist_ok=True)
        socket_path: Path | None = work_dir / f"zygote-{tag}.sock"
        if len(str(socket_path).encode()) >= 100:  # sun_path is 108 bytes
            socket_path = None
            address = f"@lp{names.instance}-zygote-{tag}-{os.getpid()}-{id(work_dir):x}"
        else:
            address = str(socket_path)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        listener.setblocking(False)
        cgroup = cgroups.create_zygote_cgroup(names, tag)
        proc: asyncio.subprocess.Process | None = None
        try:
            if socket_path is not None:
                with contextlib.suppress(FileNotFoundError):
                    socket_path.unlink()
                listener.bind(str(socket_path))
                os.chmod(socket_path, 0o600)
            else:
                listener.bind("\0" + address[1:])
            listener.listen(1)
            args = [str(ZYGOTE_MAIN), address, "--root", str(root_dir)]
            for procs in cgroup.procs_files:
                args += ["--cgroup", procs]
            for source in runtime_sources:
                args += ["--runtime-source", source]
            if seccomp_program is not None:
                args += ["--seccomp", str(seccomp_program)]
            launch = ["-I", "-S", *args]
            if not interpreter.startswith("/usr/"):  # shown as /var/lang (zygote_lang.py)
                launch = ["-I", "-S", str(ZYGOTE_LANG), lang_prefix(interpreter), "--", *args]
            proc = await asyncio.create_subprocess_exec(
                interpreter, *launch, stdin=asyncio.subprocess.DEVNULL,
                start_new_session=True,  # a terminal's ^C is for the server, not the zygote
                env=ZYGOTE_ENVIRONMENT)  # sandboxes inherit its environ block: nothing of ours
            conn = await _accept_or_exit(listener, proc)
            conn.setblocking(False)
            zygote = cls(interpreter, proc, conn, cgroup, work_dir, socket_path)
            zygote.runtime_sources = frozenset(runtime_sources)
            try:
                await asyncio.wait_for(asyncio.shield(zygote._ready), _START_TIMEOUT_S)
            except BaseException:
                await zygote.stop()
                raise
            return zygote
        except BaseException:
            if proc is not None and proc.returncode is None:
                proc.kill()
                await proc.wait()
            for d in cgroup.dirs:  # sleeps while the kernel reaps: off the loop
                await asyncio.to_thread(kill_cgroup_tree, d)
            raise
        finally:
            listener.close()
            if socket_path is not None:
                with contextlib.suppress(FileNotFoundError):
                    socket_path.unlink()  # connected already: the name is no longer needed

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
            env = self._envs.pop(msg["pid"], None)
            if env is not None:
                env._exited(int(msg["status"]))
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
            env._exited(_KILLED)
        self._envs.clear()
        if not self._stopping:
            log.error("zygote %s (pid %d): %s", self.interpreter, self.pid, reason)


async def _accept_or_exit(listener: socket.socket,
                          proc: asyncio.subprocess.Process) -> socket.socket:
    loop = asyncio.get_running_loop()
    accept = asyncio.ensure_future(loop.sock_accept(listener))
    exited = asyncio.ensure_future(proc.wait())
    try:
        done, _ = await asyncio.wait({accept, exited}, timeout=_START_TIMEOUT_S,
                                     return_when=asyncio.FIRST_COMPLETED)
        if accept in done:
            return accept.result()[0]
        if exited in done:
            raise ZygoteError(f"zygote exited during start with status {exited.result()}")
        raise ZygoteError("zygote did not connect in time")
    finally:
        for task in (accept, exited):
            if not task.done():
                task.cancel()
