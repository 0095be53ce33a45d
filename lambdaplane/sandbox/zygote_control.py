"""What the zygote and its sandboxes receive on their unix SEQPACKET sockets: the file
descriptors a message carries (SCM_RIGHTS), and a pre-forked sandbox's control socket — its
assignment (the function it is given, with the fds it needs), then, for a VPC function whose
network is still being attached, the `go` — read past the one ECONNRESET the kernel reports
when the server closed its end with our READY unread (recv_past_reset).

STDLIB ONLY: loaded by path in the zygote (zygote_main.py), under the runtime's interpreter,
after isolation.py (found in sys.modules as `_lambdaplane_isolation`)."""
from __future__ import annotations

import array
import json
import os
import socket
import sys
from typing import Any, Callable, TypeVar

isolation = sys.modules["_lambdaplane_isolation"]  # loaded by path before us (zygote_main.py)
MAX_MESSAGE = 256 * 1024
MAX_FDS = 8  # the most a message carries
SETUP_FAILED = 125  # exit status when the sandbox could not be built

_Received = TypeVar("_Received")


def fds_of(ancdata: list[tuple[int, int, bytes]]) -> array.array[int]:
    """The file descriptors a message carried (SCM_RIGHTS), in order."""
    fds = array.array("i")
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
    return fds


def recv_past_reset(receive: Callable[[], _Received]) -> _Received:
    """A receive on the control socket that the server may have closed with our READY
    (prestart.tell_ready) still unread in its queue: the kernel then reports ECONNRESET once,
    before the messages it queued for us (its assignment, its `go`), which the next receive
    returns. Without this, a runtime pre-started under load (the server's loop had not read
    READY yet when it assigned the sandbox) failed its setup (exit SETUP_FAILED)."""
    try:
        return receive()
    except ConnectionResetError:
        return receive()  # the error is reported once (sock_error clears it)


def await_assignment(ctl_fd: int, stash: list[str], runtime_pid: int = 0
                     ) -> tuple[dict[str, Any], socket.socket | None, int | None]:
    """A pre-forked child's wait for its function (blocking; no function code has run).
    Returns the assignment, the control socket if a `go` is still to come (a VPC
    function's network is being attached meanwhile) and the runtime's socketpair end if the
    server sent one (runtime_frames.py). stash: the runtime source dirs the sandbox stashed
    (isolation.RUNTIME_STASH). runtime_pid: a runtime started ahead (prestart.py) moves to
    the function's cpu cgroup with us."""
    ctl = socket.socket(fileno=ctl_fd)
    data, ancdata, _flags, _ = recv_past_reset(
        lambda: ctl.recvmsg(MAX_MESSAGE, socket.CMSG_SPACE(4 * MAX_FDS)))
    if not data:
        os._exit(0)  # the server let this sandbox go unused
    fds = fds_of(ancdata)
    os.dup2(fds[0], 1)
    os.dup2(fds[0], 2)
    assignment: dict[str, Any] = json.loads(data)
    runtime_fd = fds[1] if assignment.get("runtime_fd") else None
    # then its function's cpu cgroup (opened by the server: not in our view)
    joined = fds[2 if runtime_fd is not None else 1:]
    for procs in joined:
        os.write(procs, b"0")
        if runtime_pid:
            os.write(procs, str(runtime_pid).encode())
        os.close(procs)
    if joined:  # a cgroup namespace rooted at the new cgroup: /proc/self/cgroup shows "/"
        isolation.unshare(isolation.CLONE_NEWCGROUP)
    isolation.assign_code(assignment["code"], int(assignment["tmp_size_mb"]),
                          str(assignment.get("opt") or ""), assignment.get("mounts") or (),
                          stash, tuple((assignment.get("etc_files") or {}).items()))
    if assignment.get("network_pending"):
        return assignment, ctl, runtime_fd
    ctl.close()
    return assignment, None, runtime_fd


def await_network(ctl: socket.socket) -> None:
    """Until the server's `go` (zygote.NetworkGate.open): the VPC path is there."""
    if recv_past_reset(lambda: ctl.recv(16)) != b"go":
        os._exit(SETUP_FAILED)  # the server gave up on this environment (EOF)
    ctl.close()
