"""The server's own cpu group: `cpu/lp<instance>-server`, a top-level cgroup (v1) that the
server process (all its threads) joins at start and leaves at stop. The server handles every
invoke of every function (the Lambda API, the Runtime API, logs), so it must not compete with
the sandboxes at one process's weight: left in the root cgroup, each of its threads weighed
one process (1024), as much as one busy function's group (sandbox/cgroups.py), so a few
spinning functions would take most of every core the server wakes on. Its group weighs four
busy processes per CPU; weights are work-conserving, so this costs the functions nothing
while the server sleeps. Children it starts inherit the group until they join their
own (zygotes and sandboxes do, before any function code). Hosts without a v1 cpu hierarchy
keep the server where it is."""
from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

from .cgroup_tree import CGROUP_ROOT, kill_cgroup_tree
from ..net.names import Names

log = logging.getLogger(__name__)

_CPU = CGROUP_ROOT / "cpu"


def server_shares() -> int:
    return min(262144, 4 * 1024 * (os.cpu_count() or 1))


def server_cpu_dir(names: Names) -> Path:
    return _CPU / f"{names.prefix}-server"


def _cpu_cgroup_of(pid: int) -> str | None:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
            _id, controllers, path = line.split(":", 2)
            if "cpu" in controllers.split(","):
                return path
    return None


def join(names: Names) -> Path | None:
    """Move this process into its own cpu group; returns the cgroup it came from (to go
    back to at `leave`), None when nothing was changed."""
    if not (_CPU / "cpu.shares").exists():
        return None
    previous = _cpu_cgroup_of(os.getpid())
    if previous is None:
        return None
    group = server_cpu_dir(names)
    try:
        kill_cgroup_tree(group)  # a SIGKILLed server of this instance left it behind
        group.mkdir()
        (group / "cpu.shares").write_text(str(server_shares()))
        (group / "cgroup.procs").write_text(str(os.getpid()))
    except OSError as e:
        log.info("cannot give the server a cpu group of its own (%s): it stays in %s",
                 e, previous)
        with contextlib.suppress(OSError):
            group.rmdir()
        return None
    return _CPU / previous.lstrip("/")


def leave(names: Names, previous: Path | None) -> None:
    """Go back to the cgroup `join` came from and remove the server's group (and anything
    the server started that is still in it)."""
    if previous is None:
        return
    group = server_cpu_dir(names)
    with contextlib.suppress(OSError):
        if _cpu_cgroup_of(os.getpid()) == "/" + str(group.relative_to(_CPU)):
            (previous / "cgroup.procs").write_text(str(os.getpid()))
    if _cpu_cgroup_of(os.getpid()) != "/" + str(group.relative_to(_CPU)):
        kill_cgroup_tree(group)
