"""The zygote: a fork server for one runtime interpreter. Started by the server (zygote.py) as
`<python3.x> -I -S zygote_main.py <socket> --root DIR [--cgroup PROCS_FILE]... [--seccomp
BPF_FILE]`, it joins its
own cgroup, pre-imports the Python bootstrap and the stdlib it (and typical handlers) use, then
connects to the server's unix SEQPACKET socket and serves spawn requests.

A spawn forks ONE child, already PID 1 of a new pid namespace and inside the target netns (the
zygote enters both just for the fork and steps back out); the child builds the sandbox
(isolation.py) and runs the runtime: the pre-imported bootstrap's main loop for python, or an
execve of /var/task/bootstrap for provided.*. The zygote is the only one that reaps those
children and reports each exit status to the server; on stop or EOF it kills what is left.
With --seccomp, every child loads that compiled filter (seccomp_load.py) after dropping its
privileges and before any function code: it and all it forks or execs are filtered. It
learns which of its pages its environments write, and a pre-forked child copies those while it
waits for its function (written_pages.py).

STDLIB ONLY, run under the runtime's own interpreter — never the server's venv.

Wire format (one JSON object per SEQPACKET message):
  server → zygote  {"op": "spawn", "id": n, ...SpawnRequest fields}
                   + SCM_RIGHTS [output fd, target netns fd]
                   {"op": "spawn", "id": n, "prefork": true, ...} + [control socket, netns fd]
  server → a pre-forked child, on its control socket, once:
                   {"code": "<dir name in the code store>", "environ": {...}, "runtime": ...,
                   "tmp_size_mb": n} + SCM_RIGHTS [output fd, cgroup.procs fds to join...]
                   (EOF instead: it exits)
                   {"op": "stop"}
  zygote → server  {"op": "ready", "pid": p}
                   {"op": "spawned", "id": n, "pid": p} | {"op": "spawn_failed", "id": n,
                   "error": "..."}
                   {"op": "exit", "pid": p, "status": code-or-minus-signal}
"""
from __future__ import annotations

import array
import errno
import gc
import importlib.util
import json
import os
import re
import select
import signal
import socket
import sys
import time
import traceback
from types import ModuleType
from typing import Any, Callable, TypeVar

_HERE = os.path.dirname(os.path.abspath(__file__))
# --runtime-source DIRs: what runtimes of this zygote mount (a pre-forked sandbox stashes them
# all, since its runtime is not known yet; isolation.RUNTIME_STASH)
_RUNTIME_SOURCES: list[str] = []
MAX_MESSAGE = 256 * 1024
SETUP_FAILED = 125  # exit status when the sandbox could not be built
ZYGOTE_NICE = -10
_PRELOAD = ("json", "http.client", "traceback", "importlib", "importlib.util", "base64",
            "logging", "datetime", "decimal", "uuid", "urllib.parse", "urllib.request",
            "hashlib", "random", "typing", "dataclasses", "collections", "re", "io")


def _load_by_path(name: str, path: str, shown_as: str = "") -> ModuleType:
    """shown_as: the file name its code and tracebacks carry instead of the host path (what
    function code can see of it)."""
    if shown_as:
        module = ModuleType(name)
        module.__file__ = shown_as
        sys.modules[name] = module
        with open(path, encoding="utf-8") as f:
            exec(compile(f.read(), shown_as, "exec"), module.__dict__)  # noqa: S102 - our file
        return module
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


isolation = _load_by_path("_lambdaplane_isolation", os.path.join(_HERE, "isolation.py"))
written_pages = _load_by_path("_lambdaplane_written_pages",
                              os.path.join(_HERE, "written_pages.py"))
prestart = _load_by_path("_lambdaplane_prestart", os.path.join(_HERE, "prestart.py"))
seccomp_load = _load_by_path("_lambdaplane_seccomp_load", os.path.join(_HERE, "seccomp_load.py"))
masking = _load_by_path("_lambdaplane_masking", os.path.join(_HERE, "masking.py"))
bootstrap = _load_by_path("_lambdaplane_bootstrap",
                          os.path.join(_HERE, "runtimes", "python_bootstrap.py"),
                          shown_as="/var/runtime/bootstrap.py")
RUNTIME_COMMAND_LINE = ["/var/runtime/bootstrap"]  # what the sandbox sees as its argv
for _name in _PRELOAD:
    importlib.import_module(_name)


def _hostname(env_id: str) -> str:
    return ("lp-" + re.sub(r"[^a-zA-Z0-9-]", "-", env_id))[:63]


def _exec_provided(environ: dict[str, str]) -> None:
    path = "/var/task/bootstrap"
    if not os.path.exists(path):
        os.write(2, b"lambdaplane: /var/task/bootstrap not found: a provided runtime needs an "
                    b"executable file named bootstrap at the root of the code\n")
        os._exit(127)
    try:
        os.execve(path, [path], environ)
    except OSError as e:
        os.write(2, f"lambdaplane: cannot execute /var/task/bootstrap: {e.strerror} "
                    f"(is it executable, with a #! line or a native binary?)\n".encode())
        os._exit(127 if e.errno == errno.ENOENT else 126)


def _closerange(low: int, high: int) -> None:
    """os.closerange; before Python 3.10 it closes every number one by one (billions, for
    2**31), so there only the fds that are open (/proc/self/fd) are closed."""
    if sys.version_info >= (3, 10):
        os.closerange(low, high)
        return
    for name in os.listdir("/proc/self/fd"):
        if low <= int(name) < high:
            try:
                os.close(int(name))
            except OSError:
                pass  # the directory's own fd, closed by now


def _exec_runtime(argv: list[str], environ: dict[str, str]) -> None:
    """A runtime with its own program (Node.js: node + its bootstrap in /var/runtime)."""
    try:
        os.execve(argv[0], argv, environ)
    except OSError as e:
        os.write(2, f"lambdaplane: cannot execute the runtime {argv[0]}: {e.strerror}\n"
                 .encode())
        os._exit(SETUP_FAILED)


def _await_assignment(ctl_fd: int, stash: list[str] | None = None, runtime_pid: int = 0
                      ) -> tuple[dict[str, Any], socket.socket | None, int | None]:
    """A pre-forked child's wait for its function (blocking; no function code has run).
    Returns the assignment, the control socket if a `go` is still to come (a VPC
    function's network is being attached meanwhile) and the runtime's socketpair end if the
    server sent one (runtime_frames.py). runtime_pid: a runtime started ahead
    (prestart.py) moves to the function's cpu cgroup with us."""
    ctl = socket.socket(fileno=ctl_fd)
    data, ancdata, _flags, _ = _recv_past_reset(
        lambda: ctl.recvmsg(MAX_MESSAGE, socket.CMSG_SPACE(4 * 8)))
    if not data:
        os._exit(0)  # the server let this sandbox go unused
    fds = array.array("i")
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
    os.dup2(fds[0], 1)
    os.dup2(fds[0], 2)
    assignment: dict[str, Any] = json.loads(data)
    runtime_fd = fds[1] if assignment.get("runtime_fd") else None
    # then its function's cpu cgroup (opened by the server: not in our view)
    for procs in fds[2 if runtime_fd is not None else 1:]:
        os.write(procs, b"0")
        if runtime_pid:
            os.write(procs, str(runtime_pid).encode())
        os.close(procs)
    isolation.assign_code(assignment["code"], int(assignment["tmp_size_mb"]),
                          str(assignment.get("opt") or ""), assignment.get("mounts") or (),
                          _RUNTIME_SOURCES if stash is None else stash,
                          tuple((assignment.get("etc_files") or {}).items()))
    if assignment.get("network_pending"):
        return assignment, ctl, runtime_fd
    ctl.close()
    return assignment, None, runtime_fd


_Received = TypeVar("_Received")


def _recv_past_reset(receive: Callable[[], _Received]) -> _Received:
    """A receive on the control socket that the server may have closed with our READY
    (prestart.tell_ready) still unread in its queue: the kernel then reports ECONNRESET once,
    before the messages it queued for us (its assignment, its `go`), which the next receive
    returns. Without this, a runtime pre-started under load (the server's loop had not read
    READY yet when it assigned the sandbox) failed its setup (exit SETUP_FAILED)."""
    try:
        return receive()
    except ConnectionResetError:
        return receive()  # the error is reported once (sock_error clears it)


def _await_network(ctl: socket.socket) -> None:
    """Until the server's `go` (zygote.NetworkGate.open): the VPC path is there."""
    if _recv_past_reset(lambda: ctl.recv(16)) != b"go":
        os._exit(SETUP_FAILED)  # the server gave up on this environment (EOF)
    ctl.close()


def _run_child(req: dict[str, Any], out_fd: int, gate_fd: int | None, root_dir: str,
               host: Any, conn: socket.socket, copy_first: list[tuple[int, int]],
               seccomp: Any, runtime_fd: int | None = None) -> None:
    """In the forked child (PID 1 of its pid namespace, in the target netns). Never returns.
    Pre-forked (req["prefork"]): out_fd is the control socket; the sandbox is built now, takes
    its own copy of the pages `copy_first` (written_pages.py), and the function arrives later
    (_await_assignment). gate_fd (req["gated"]): no function code runs until a `go` arrives
    on it. seccomp: the SeccompProgram every sandbox loads (None: --seccomp off).
    runtime_fd: the built-in Python runtime's socketpair end (runtime_frames.py), or None (a
    pre-forked sandbox gets it with its assignment)."""
    try:
        # The zygote's connection is closed at once: a sandbox that kept it (a pre-forked one
        # waits long) would hide the zygote's death from the server, which sees it as EOF.
        os.close(conn.detach())
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGCHLD, signal.SIGPIPE, signal.SIGXFSZ):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        os.setpriority(os.PRIO_PROCESS, 0, 0)  # function code at the default priority
        # the zygote's argv names host paths: the sandbox sees the runtime's own instead
        masking.set_command_line([sys.executable, *RUNTIME_COMMAND_LINE])
        sys.orig_argv = [sys.executable, *RUNTIME_COMMAND_LINE]
        prefork = bool(req.get("prefork"))
        if prefork:
            null = os.open("/dev/null", os.O_WRONLY)
            os.dup2(null, 1)
            os.dup2(null, 2)
        else:
            os.dup2(out_fd, 1)
            os.dup2(out_fd, 2)
        spec = isolation.SandboxSpec(
            env_id=req["env_id"], cgroup_procs=list(req["cgroup_procs"]),
            code_dir=req["code_dir"], uid=int(req["uid"]), gid=int(req["gid"]),
            tmp_size_mb=int(req.get("tmp_size_mb", 512)), hostname=_hostname(req["env_id"]),
            opt_dir=str(req.get("opt_dir") or ""),
            etc_files=() if prefork else tuple((req.get("etc_files") or {}).items()))
        isolation.join_cgroups(spec.cgroup_procs)
        # a pre-forked sandbox with exec_argv starts its runtime now (prestart.py)
        prestarting = prefork and bool(req.get("exec_argv"))
        isolation.build_root(root_dir, spec, host, code_store=spec.code_dir if prefork else "",
                             runtime_mounts=(req.get("mounts") or ())
                             if prestarting or not prefork else (),
                             runtime_stash=_RUNTIME_SOURCES if prefork and not prestarting
                             else ())
        masking.mask_proc()
        pending = socket.socket(fileno=gate_fd) if gate_fd is not None else None
        prestarted = None
        if prefork:
            isolation.limit_future_privileges(host.cap_last)
            written_pages.copy_now(copy_first)
            if prestarting:
                prestarted = prestart.wait_ready(prestart.start(
                    list(req["exec_argv"]), spec.uid, spec.gid, isolation, seccomp))
                prestart.tell_ready(out_fd)  # the server may prefer us now
            assignment, pending, runtime_fd = _await_assignment(
                out_fd, [] if prestarting else None,
                prestarted.pid if prestarted is not None else 0)
            req = {**req, **assignment}
        stdin = os.open("/dev/null", os.O_RDONLY)
        os.dup2(stdin, 0)
        # whatever the zygote inherited (close_range(2)), but a control socket still needed
        keep = sorted([pending.fileno()] if pending is not None else []) + \
            (sorted(prestarted.fds()) if prestarted is not None else []) + \
            ([runtime_fd] if runtime_fd is not None else [])
        low = 3
        for fd in sorted(keep):
            _closerange(low, fd)
            low = fd + 1
        _closerange(low, 2**31 - 1)
        if prefork:
            isolation.become_user(spec.uid, spec.gid)
        else:
            isolation.drop_privileges(spec.uid, spec.gid, host.cap_last)
        if seccomp is not None:  # no_new_privs is set: the last step before function code
            seccomp.install()
        environ = {str(k): str(v) for k, v in req["environ"].items()}
        os.environ.clear()
        os.environ.update(environ)
        os.chdir("/var/task")
        if pending is not None:
            _await_network(pending)
        if prestarted is not None:
            prestart.hand_over(prestarted, environ)  # never returns
    except BaseException as e:  # noqa: BLE001 - whatever happened, this child must not return
        try:
            os.write(2, f"lambdaplane: sandbox setup failed: {e!r}\n".encode())
        finally:
            os._exit(SETUP_FAILED)
    if req["runtime"].startswith("provided"):
        _exec_provided(environ)
    if req.get("exec_argv"):
        _exec_runtime(list(req["exec_argv"]), environ)
    code = 1
    try:
        sys.argv = list(RUNTIME_COMMAND_LINE)
        if runtime_fd is not None:  # not inherited by what the function runs
            os.set_inheritable(runtime_fd, False)
        code = bootstrap.main(runtime_fd)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        if not isinstance(e.code, int) and e.code is not None:
            sys.stderr.write(f"{e.code}\n")
    except BaseException:  # noqa: BLE001
        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001
                pass
        os._exit(code & 0xFF if isinstance(code, int) else 1)


class ZygoteServer:
    def __init__(self, conn: socket.socket, root_dir: str, seccomp: Any = None) -> None:
        self.conn = conn
        self.root_dir = root_dir
        self.seccomp = seccomp
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
                MAX_MESSAGE, socket.CMSG_SPACE(4 * 8))
        except InterruptedError:
            return True
        except OSError:
            return False
        fds = array.array("i")
        for level, kind, payload in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
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
                    _run_child(req, out_fd, gate_fd, self.root_dir, self.host, self.conn,
                               self.written.runs, self.seccomp, runtime_fd)
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


def _parse_args(argv: list[str]) -> tuple[str, str, list[str], str]:
    socket_path, root_dir, cgroups, seccomp_file = argv[1], "", [], ""
    i = 2
    while i < len(argv):
        if argv[i] == "--root":
            root_dir = argv[i + 1]
        elif argv[i] == "--cgroup":
            cgroups.append(argv[i + 1])
        elif argv[i] == "--runtime-source":
            _RUNTIME_SOURCES.append(argv[i + 1])
        elif argv[i] == "--seccomp":
            seccomp_file = argv[i + 1]
        else:
            raise SystemExit(f"zygote: unknown argument {argv[i]!r}")
        i += 2
    if not root_dir:
        raise SystemExit("zygote: --root DIR is required")
    return socket_path, root_dir, cgroups, seccomp_file


def main(argv: list[str]) -> int:
    socket_path, root_dir, cgroups, seccomp_file = _parse_args(argv)
    seccomp = seccomp_load.SeccompProgram.from_file(seccomp_file) if seccomp_file else None
    isolation.join_cgroups(cgroups)  # before any fork, so `clean` finds us and our children
    isolation.private_mount_namespace()
    # Forks are serial here: in a burst, the environments already forked must not starve the
    # zygote of the CPU it needs to fork the rest (each child resets its own priority).
    try:
        os.setpriority(os.PRIO_PROCESS, 0, ZYGOTE_NICE)
    except OSError:
        pass
    # Everything loaded so far lives as long as the zygote: keep the collector off it, so
    # children do not copy-on-write pages just by traversing it.
    gc.collect()
    gc.freeze()
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    # "@name" is an abstract socket (used when the work dir's path is too long for sun_path).
    conn.connect("\0" + socket_path[1:] if socket_path.startswith("@") else socket_path)
    ZygoteServer(conn, root_dir, seccomp).serve()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
