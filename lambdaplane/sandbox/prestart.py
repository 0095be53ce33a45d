"""A runtime started ahead of its function, in a pre-forked sandbox (Node.js: exec'ing node
and loading its bootstrap cost more than the rest of a cold start). The sandbox's PID 1 forks
the runtime, as the unprivileged user, before the function is known; the runtime waits on a
pipe. On assignment PID 1 mounts the code (the runtime shares its mount namespace, so it sees
it), drops its own privileges, writes the function's environment (JSON) to that pipe, then
relays the runtime's output to the environment's output pipe and exits with its status.
Before that, the runtime warms itself up and writes READY on its output; PID 1 waits for it
(wait_ready) and then tells the server on its control socket (READY_MESSAGE), so that the
server hands out a runtime that is ready before one that is still starting. So
that a log line is in the output pipe before the response that follows it (as when the
runtime writes there itself), the runtime ends what it wrote with FLUSH before each Runtime
API call and waits for PID 1's ack (one byte on a pipe of its own) once all of it is relayed.

STDLIB ONLY: loaded by path in the zygote (zygote_main.py), under the runtime's interpreter."""
from __future__ import annotations

import fcntl
import json
import os
import socket
from dataclasses import dataclass, replace
from typing import Any

SETUP_FAILED = 125
FLUSH = b"\x00lambdaplane-flush\x00"
READY = b"\x00lambdaplane-ready\x00"  # the runtime, on its output: loaded, warm, waiting
READY_MESSAGE = b"ready"  # PID 1, on its control socket, to the server (prewarm.py)
PRESTART_FD = 3  # the runtime reads its environment from here (LAMBDAPLANE_PRESTART_FD)
ACK_FD = 4  # ... and PID 1's acks of its FLUSH marks from here
_START_ENV = {"PATH": "/var/lang/bin:/usr/local/bin:/usr/bin/:/bin", "TZ": "UTC",
              "LANG": "en_US.UTF-8", "LAMBDAPLANE_PRESTART_FD": str(PRESTART_FD)}


@dataclass(frozen=True)
class Prestarted:
    pid: int
    control: int  # write end: the environment goes here, then EOF
    output: int  # read end of the runtime's stdout/stderr
    ack: int  # write end: one byte per FLUSH relayed
    early: bytes = b""  # what it wrote before READY: relayed first once assigned

    def fds(self) -> tuple[int, int, int]:
        return (self.control, self.output, self.ack)


def start(argv: list[str], uid: int, gid: int, isolation: Any, seccomp: Any = None
          ) -> Prestarted:
    """Fork and exec the runtime as uid/gid (the caller, PID 1, is still root), under the
    sandbox's seccomp filter (seccomp_load.SeccompProgram; None: --seccomp off) like every
    other process of the sandbox: it runs function code once assigned."""
    control_r, control_w = os.pipe2(os.O_CLOEXEC)
    output_r, output_w = os.pipe2(os.O_CLOEXEC)
    ack_r, ack_w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:
        try:
            # Above every target first: a pipe end that already had its target's number
            # (dup2 onto itself is a no-op) would keep O_CLOEXEC, and one that had another
            # target's number would be overwritten.
            output, control, ack = (fcntl.fcntl(fd, fcntl.F_DUPFD, ACK_FD + 1)
                                    for fd in (output_w, control_r, ack_r))
            os.dup2(output, 1)
            os.dup2(output, 2)
            os.dup2(os.open("/dev/null", os.O_RDONLY), 0)
            os.dup2(control, PRESTART_FD)
            os.dup2(ack, ACK_FD)
            for name in os.listdir("/proc/self/fd"):
                if int(name) > ACK_FD:
                    try:
                        os.close(int(name))
                    except OSError:
                        pass
            isolation.become_user(uid, gid)
            if seccomp is not None:  # no_new_privs is inherited from PID 1
                seccomp.install()
            os.chdir("/")
            os.execve(argv[0], argv, _START_ENV)
        except BaseException as e:  # noqa: BLE001 - the child must not return
            try:
                os.write(2, f"lambdaplane: cannot start the runtime {argv[0]}: {e!r}\n".encode())
            finally:
                os._exit(SETUP_FAILED)
    os.close(control_r)
    os.close(output_w)
    os.close(ack_r)
    return Prestarted(pid, control_w, output_r, ack_w)


def wait_ready(runtime: Prestarted) -> Prestarted:
    """Block until the runtime wrote READY (what it wrote before is kept in `early`). A runtime
    that exits first ends the sandbox: the server discards it, unassigned."""
    held = b""
    while READY not in held:
        try:
            chunk = os.read(runtime.output, 65536)
        except InterruptedError:
            continue
        if not chunk:
            os._exit(SETUP_FAILED)
        held += chunk
    return replace(runtime, early=held.replace(READY, b"", 1))


def tell_ready(control_fd: int) -> None:
    """READY_MESSAGE to the server on the sandbox's control socket. The server may have assigned
    the sandbox (and closed its end) already: then nobody needs to know."""
    with socket.socket(fileno=os.dup(control_fd)) as control:
        try:
            control.send(READY_MESSAGE, socket.MSG_NOSIGNAL)
        except OSError:
            pass


def _write_all(fd: int, data: bytes) -> bool:
    try:
        while data:
            data = data[os.write(fd, data):]
        return True
    except BrokenPipeError:
        return False  # nobody reads: keep draining so that the runtime never blocks


def hand_over(runtime: Prestarted, environ: dict[str, str]) -> None:
    """Give the runtime its environment, relay its output to fd 1 (acking each FLUSH) and
    exit with its status. Never returns. The caller has dropped its privileges."""
    code = SETUP_FAILED
    try:
        data = json.dumps({"environ": environ}).encode()
        while data:
            data = data[os.write(runtime.control, data):]
        os.close(runtime.control)
        writable, held = True, runtime.early
        keep = len(FLUSH) - 1  # a mark may be split between two reads
        while True:
            try:
                chunk = os.read(runtime.output, 65536)
            except InterruptedError:
                continue
            if not chunk:
                break
            held += chunk
            while (at := held.find(FLUSH)) >= 0:
                writable = writable and _write_all(1, held[:at])
                held = held[at + len(FLUSH):]
                try:
                    os.write(runtime.ack, b".")
                except OSError:
                    pass  # the runtime is gone
            if len(held) > keep:
                writable = writable and _write_all(1, held[:-keep])
                held = held[-keep:]
        if writable and held:
            _write_all(1, held)
        while True:
            try:
                _, status = os.waitpid(runtime.pid, 0)
                break
            except InterruptedError:
                continue
        code = os.waitstatus_to_exitcode(status)
        code = code if code >= 0 else 128 - code
    finally:
        os._exit(code & 0xFF)
