"""The server's handles on the environments a zygote forked: `SpawnedEnv` (one running
environment, the init of its pid namespace: its exit status and a pidfd-based SIGKILL),
`PreforkedEnv` (a sandbox forked ahead of demand, given its function by one datagram) and
`NetworkGate` (holds a VPC environment's function code until its network is attached).
The exit statuses an environment can end with before any function code ran are here too.
zygote.py makes these from the zygote's reports."""
from __future__ import annotations

import array
import asyncio
import contextlib
import json
import os
import signal
import socket
from dataclasses import dataclass

KILLED = -signal.SIGKILL
# Exit statuses an environment can end with before any function code ran.
SANDBOX_SETUP_FAILED = 125  # the sandbox could not be built (message on the output pipe)
BOOTSTRAP_NOT_EXECUTABLE = 126  # provided.*: /var/task/bootstrap is not executable
BOOTSTRAP_NOT_FOUND = 127  # provided.*: no /var/task/bootstrap


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
