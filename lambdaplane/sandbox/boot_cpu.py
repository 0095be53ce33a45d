"""The cpu group a runtime's pre-started sandboxes boot in (prewarm.py with a runtime: node
starting and warming up in each, ≈90 ms of CPU), and the order in which they get it.

Each runtime's pool has a top-level cpu group of its own, `lp-<instance>-fn-boot-<runtime>`
(named like a function's group, sandbox/cgroups.py: "boot" is no hex hash, so every path that
stops or cleans function groups stops and cleans it too), weighing as much as the shared
`lambdaplane` group (one busy process per CPU). Its sandboxes sit in it, an env-<id> group
each, until they are assigned: no longer below the shared group with the Python pre-forked
sandboxes taking their assignments and the zygotes forking cold starts.

Inside it the boots go oldest first: the oldest FIRST_PER_CPU × CPUs sandboxes still booting —
and one a cold start took while its node was still starting, which it waits for — weigh BOOST,
the others LOW (each still runs when those do not want the CPU). So the next node is ready
after about one boot's CPU, not after every boot in the group has had its share: up to 12
nodes booting at once each progressed at 1/12 of the group's share, and a cold start that came
meanwhile found none of them ready. A sandbox taken with its node ready leaves the group before
it is told its function (move_tasks, by the server): its PID 1 takes the assignment at its
function's weight. One taken with its node still starting stays until that node is ready (its
PID 1 then moves both, as it always does): its boot keeps taking the pool's share — moving it
out at once made it finish sooner but, on a loaded host, took the CPU the pool's next boots
needed, and fewer cold starts found a node ready."""
from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

from ..net.names import Names
from .cgroups import EnvCgroup, function_cpu_dir, functions_parent_shares

PREFIX = "fn-boot-"
FIRST_PER_CPU = 1  # sandboxes booting at the BOOST weight, per CPU
BOOST = 1024
LOW = 2  # the kernel's minimum cpu.shares


def group_for(runtime: str) -> str:
    """The boot group's name (cgroups.create_env_cgroup's `group`) of a runtime's pool."""
    return PREFIX + re.sub(r"[^a-z0-9]", "", runtime.lower())


def is_boot_dir(cpu_dir: Path | None) -> bool:
    """Whether an environment's cpu group is in a boot group (not yet moved out)."""
    return cpu_dir is not None and f"-{PREFIX}" in cpu_dir.parent.name


def first_count() -> int:
    """How many boots go first (FIRST_PER_CPU per CPU this process may run on)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(1, FIRST_PER_CPU * cpus)


class BootOrder:
    """A runtime pool's boot group and the weights of the sandboxes booting in it."""

    def __init__(self, names: Names, runtime: str) -> None:
        self.group = group_for(runtime)
        self.dir = function_cpu_dir(names, self.group)
        self.first = first_count()
        self._weights: dict[Path, int] = {}  # what was written, by env cpu group

    def made(self) -> None:
        """A sandbox was made in the group, which may be new: its weight (re)written."""
        with contextlib.suppress(OSError):  # no group (no v1 cpu hierarchy) or gone again
            _write(self.dir / "cpu.shares", str(functions_parent_shares()))

    def order(self, booting: list[Path], waited_for: list[Path]) -> None:
        """`booting`: the env cpu groups of the sandboxes booting, oldest first; `waited_for`:
        those of taken ones still booting. Those first (and the oldest) weigh BOOST."""
        boosted = set(waited_for) | set(booting[:max(0, self.first - len(waited_for))])
        wanted = {d: BOOST if d in boosted else LOW for d in [*waited_for, *booting]}
        for cpu_dir, weight in wanted.items():
            if self._weights.get(cpu_dir) != weight:
                with contextlib.suppress(OSError):  # gone meanwhile
                    _write(cpu_dir / "cpu.shares", str(weight))
                self._weights[cpu_dir] = weight
        for gone in set(self._weights) - set(wanted):
            del self._weights[gone]


def has_tasks(cpu_dir: Path) -> bool:
    """Whether a process is still in this cpu group (a taken sandbox's node still booting
    in its boot group: its PID 1 leaves with it once it is ready)."""
    try:
        return bool((cpu_dir / "cgroup.procs").read_text().strip())
    except OSError:
        return False


def move_tasks(cg: EnvCgroup, left: Path) -> None:
    """Move the processes in the cpu group `left` (a sandbox's in its boot group) into cg's
    (its function's), before the sandbox is told its function."""
    if cg.cpu_dir is None:
        return
    with contextlib.suppress(FileNotFoundError):
        pids = (left / "cgroup.procs").read_text().split()
        procs = os.open(cg.cpu_dir / "cgroup.procs", os.O_WRONLY | os.O_CLOEXEC)
        try:
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):  # exited meanwhile
                    os.write(procs, pid.encode())
        finally:
            os.close(procs)


def _write(path: Path, value: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)
