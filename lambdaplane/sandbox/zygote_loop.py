"""The zygote's loop (zygote_main.py starts it): it serves the server's spawn requests on its
unix SEQPACKET connection — one fork per environment, already PID 1 of a new pid namespace and
inside the target netns (the zygote enters both just for the fork and steps back out; the
child is zygote_child.py) — reaps its children and reports each exit to the server, learns
which pages its environments write (written_pages.py), and on stop or EOF kills what is left.
The wire format is in zygote_main.py.

STDLIB ONLY: loaded by path in the zygote (zygote_main.py), under the runtime's interpreter,
after the modules it names below (found in sys.modules as `_lambdaplane_<name>`)."""
from __future__ import annotations

import json
import os
import select
import signal
import socket
import sys
import time
from typing import Any

# loaded by path before us (zygote_main.py)
isolation = sys.modules["_lambdaplane_isolation"]
written_pages = sys.modules["_lambdaplane_written_pages"]
control = sys.modules["_lambdaplane_zygote_control"]
child = sys.modules["_lambdaplane_zygote_child"]


class ZygoteServer:
    def __init__(self, conn: socket.socket, root_dir: str, seccomp: Any = None,
                 runtime_sources: list[str] | None = None) -> None:
        """runtime_sources: the host dirs this zygote's runtimes mount (--runtime-source)."""
        self.conn = conn
        self.root_dir = root_dir
        self.seccomp = seccomp
        self.runtime_sources = list(runtime_sources or ())
        self.host = isolation.HostFiles.load()
        self.live: set[int] = set()
        self.written = written_pages.WrittenPagesLearner()
        self.own_net = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        self.own_pid = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(self.wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)  # a handler, so the wakeup fd fires

    def send(self, msg: dict[str, Any]) -> None:
        try:
            self.conn.send(json.dumps(msg).encode())
        except OSError:
            pass  # server gone: we notice EOF on the next read

    def serve(self) -> None:
        self.send({"op": "ready", "pid": os.getpid()})
        poller = select.poll()
        poller.register(self.conn.fileno(), select.POLLIN)
        poller.register(self.wake_r, select.POLLIN)
        while True:
            try:
                events = poller.poll()
            except InterruptedError:
                continue
            for fd, _ in events:
                if fd == self.wake_r:
                    self._drain_wakeups()
                    # environments start to go: learn from those still here that have run
                    self.written.learn(self.live)
                    self.reap()
                elif not self._handle_message():
                    self.shutdown()
                    return

    def _drain_wakeups(self) -> None:
        try:
            while os.read(self.wake_r, 512):
                pass
        except BlockingIOError:
            pass

    def _handle_message(self) -> bool:
        try:
            data, ancdata, _flags, _ = self.conn.recvmsg(
                control.MAX_MESSAGE, socket.CMSG_SPACE(4 * control.MAX_FDS))
        except InterruptedError:
            return True
        except OSError:
            return False
        fds = control.fds_of(ancdata)
        if not data:
            return False
        msg = json.loads(data)
        if msg["op"] == "stop":
            return False
        if msg["op"] == "spawn":
            try:
                gated = bool(msg.get("gated"))
                wanted = 2 + gated + bool(msg.get("runtime_fd"))
                if len(fds) != wanted:
                    raise ValueError(f"spawn needs {wanted} fds (output, netns[, gate]"
                                     f"[, runtime]), got {len(fds)}")
                self.spawn(msg, fds[0], fds[1], fds[2] if gated else None,
                           fds[wanted - 1] if msg.get("runtime_fd") else None)
            except Exception as e:  # noqa: BLE001 - reported to the server, zygote lives on
                self.send({"op": "spawn_failed", "id": msg["id"], "error": f"{e}"})
            finally:
                for fd in fds:
                    os.close(fd)
        return True

    def spawn(self, req: dict[str, Any], out_fd: int, netns_fd: int,
              gate_fd: int | None, runtime_fd: int | None = None) -> None:
        started = time.perf_counter()
        if req.get("prefork"):  # off the cold-start path: learn what its child should copy
            self.written.learn(self.live)
        # Enter the target netns and make our next child PID 1 of a new pid namespace,
        # fork once, step back: one fork per environment instead of two.
        isolation.setns(netns_fd, isolation.CLONE_NEWNET)
        try:
            isolation.unshare(isolation.CLONE_NEWPID)
            try:
                pid = os.fork()
                if pid == 0:
                    child.run_child(req, out_fd, gate_fd, self.root_dir, self.host, self.conn,
                                    self.written.runs, self.seccomp, self.runtime_sources,
                                    runtime_fd)
            finally:
                isolation.setns(self.own_pid, isolation.CLONE_NEWPID)
        finally:
            isolation.setns(self.own_net, isolation.CLONE_NEWNET)
        self.live.add(pid)
        self.send({"op": "spawned", "id": req["id"], "pid": pid,
                   "fork_ms": (time.perf_counter() - started) * 1000})

    def reap(self, block: bool = False) -> None:
        while self.live:
            try:
                pid, status = os.waitpid(-1, 0 if block else os.WNOHANG)
            except ChildProcessError:
                self.live.clear()
                return
            except InterruptedError:
                continue
            if pid == 0:
                return
            if pid in self.live:
                self.live.discard(pid)
                self.send({"op": "exit", "pid": pid,
                           "status": os.waitstatus_to_exitcode(status)})

    def shutdown(self) -> None:
        """Leave nothing behind: every environment still running is killed and reaped."""
        for pid in list(self.live):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.reap(block=True)
        self.send({"op": "bye"})
        self.conn.close()
