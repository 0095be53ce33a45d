"""The forked child of a zygote (zygote_main.py), PID 1 of its own pid namespace in the target
netns: it builds its sandbox (isolation.py), waits for its function if it was pre-forked
(zygote_control.py; a runtime may start ahead meanwhile: prestart.py), closes what it
inherited, drops its privileges, loads the seccomp filter, and runs the runtime — the
pre-loaded Python bootstrap's main loop (runtimes/python_bootstrap.py), an exec of
/var/task/bootstrap for provided.*, or a runtime's own program. It never returns.

STDLIB ONLY: loaded by path in the zygote (zygote_main.py), under the runtime's interpreter,
after the modules it names below (found in sys.modules as `_lambdaplane_<name>`)."""
from __future__ import annotations

import errno
import os
import re
import signal
import socket
import sys
import traceback
from typing import Any

# loaded by path before us (zygote_main.py)
isolation = sys.modules["_lambdaplane_isolation"]
written_pages = sys.modules["_lambdaplane_written_pages"]
prestart = sys.modules["_lambdaplane_prestart"]
masking = sys.modules["_lambdaplane_masking"]
control = sys.modules["_lambdaplane_zygote_control"]
bootstrap = sys.modules["_lambdaplane_bootstrap"]
SETUP_FAILED = control.SETUP_FAILED
RUNTIME_COMMAND_LINE = ["/var/runtime/bootstrap"]  # what the sandbox sees as its argv


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



def run_child(req: dict[str, Any], out_fd: int, gate_fd: int | None, root_dir: str,
              host: Any, conn: socket.socket, copy_first: list[tuple[int, int]],
              seccomp: Any, runtime_sources: list[str], runtime_fd: int | None = None
              ) -> None:
    """In the forked child (PID 1 of its pid namespace, in the target netns). Never returns.
    Pre-forked (req["prefork"]): out_fd is the control socket; the sandbox is built now, takes
    its own copy of the pages `copy_first` (written_pages.py), and the function arrives later
    (zygote_control.await_assignment). gate_fd (req["gated"]): no function code runs until a
    `go` arrives on it. seccomp: the SeccompProgram every sandbox loads (None: --seccomp off).
    runtime_sources: the host dirs this zygote's runtimes mount (--runtime-source): a
    pre-forked sandbox stashes them all, since its runtime is not known yet.
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
                             runtime_stash=runtime_sources if prefork and not prestarting
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
            assignment, pending, runtime_fd = control.await_assignment(
                out_fd, [] if prestarting else runtime_sources,
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
            control.await_network(pending)
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
