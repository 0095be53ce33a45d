"""The zygote: a fork server for one runtime interpreter. Started by the server (zygote.py) as
`<python3.x> -I -S zygote_main.py <socket> --root DIR [--cgroup PROCS_FILE]... [--seccomp
BPF_FILE]`, it joins its
own cgroup, pre-imports the Python bootstrap and the stdlib it (and typical handlers) use, then
connects to the server's unix SEQPACKET socket and serves spawn requests (zygote_loop.py).

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

import gc
import glob
import importlib.util
import os
import socket
import sys
from types import ModuleType

_HERE = os.path.dirname(os.path.abspath(__file__))
ZYGOTE_NICE = -10
_PRELOAD = ("json", "http.client", "traceback", "importlib", "importlib.util", "base64",
            "logging", "datetime", "decimal", "uuid", "urllib.parse", "urllib.request",
            "hashlib", "random", "typing", "dataclasses", "collections", "re", "io")


# by_path.py loads everything below; it is loaded itself the one way that needs no loader.
_spec = importlib.util.spec_from_file_location("_lambdaplane_by_path",
                                               os.path.join(_HERE, "by_path.py"))
assert _spec is not None and _spec.loader is not None
by_path = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = by_path
_spec.loader.exec_module(by_path)


def _own(stem: str) -> ModuleType:
    return by_path.load(stem, os.path.join(_HERE, stem + ".py"))


# In this order: each module finds those loaded before it in sys.modules (`_lambdaplane_<stem>`).
isolation_libc = _own("isolation_libc")
isolation_root = _own("isolation_root")
isolation = _own("isolation")
written_pages = _own("written_pages")
prestart = _own("prestart")
seccomp_load = _own("seccomp_load")
masking = _own("masking")
# The Python runtime: its parts (runtimes/bootstrap_*.py), then its loop, which finds them
# loaded; the sandbox sees them as files of /var/runtime, never by their host paths.
for _part in sorted(glob.glob(os.path.join(_HERE, "runtimes", "bootstrap_*.py"))):
    _stem = os.path.basename(_part)[:-3]
    by_path.load(_stem, _part, shown_as=f"/var/runtime/{_stem}.py")
bootstrap = by_path.load("bootstrap", os.path.join(_HERE, "runtimes", "python_bootstrap.py"),
                         shown_as="/var/runtime/bootstrap.py")
control = _own("zygote_control")
child = _own("zygote_child")
loop = _own("zygote_loop")
for _name in _PRELOAD:
    importlib.import_module(_name)


def _parse_args(argv: list[str]) -> tuple[str, str, list[str], str, list[str]]:
    """socket path, --root, --cgroup files, --seccomp file, --runtime-source dirs (what the
    runtimes of this zygote mount: a pre-forked sandbox stashes them all, since its runtime is
    not known yet; isolation.RUNTIME_STASH)."""
    socket_path, root_dir, cgroups, seccomp_file = argv[1], "", [], ""
    runtime_sources: list[str] = []
    i = 2
    while i < len(argv):
        if argv[i] == "--root":
            root_dir = argv[i + 1]
        elif argv[i] == "--cgroup":
            cgroups.append(argv[i + 1])
        elif argv[i] == "--runtime-source":
            runtime_sources.append(argv[i + 1])
        elif argv[i] == "--seccomp":
            seccomp_file = argv[i + 1]
        else:
            raise SystemExit(f"zygote: unknown argument {argv[i]!r}")
        i += 2
    if not root_dir:
        raise SystemExit("zygote: --root DIR is required")
    return socket_path, root_dir, cgroups, seccomp_file, runtime_sources


def main(argv: list[str]) -> int:
    socket_path, root_dir, cgroups, seccomp_file, runtime_sources = _parse_args(argv)
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
    loop.ZygoteServer(conn, root_dir, seccomp, runtime_sources).serve()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
