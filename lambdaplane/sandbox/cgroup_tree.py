"""Killing a cgroup (v1, one controller's directory) with everything in it: SIGKILL every
process of the tree, wait until it is empty, remove the directories bottom-up. Used by the
sandbox's cgroups and zygotes and by `lambdaplane clean` (cleanup.py). Blocking (sleeps while
the kernel reaps): callers off the event loop run it in a thread."""
from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


def _walk_bottom_up(root: Path) -> Iterator[Path]:
    if not root.is_dir():
        return
    for dirpath, _dirs, _files in os.walk(root, topdown=False):
        yield Path(dirpath)


def pids_in(cgroup: Path) -> set[int]:
    """Every process in the tree below `cgroup`."""
    pids: set[int] = set()
    for d in _walk_bottom_up(cgroup):
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            pids.update(int(x) for x in (d / "cgroup.procs").read_text().split())
    return pids


def kill_cgroup_tree(cgroup: Path, timeout_s: float = 5.0) -> None:
    """SIGKILL every process in the tree, wait until it is empty, remove the directories."""
    deadline = time.monotonic() + timeout_s
    while True:
        pids = pids_in(cgroup)
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if time.monotonic() > deadline:
            break
        time.sleep(0.01)
    for d in _walk_bottom_up(cgroup):
        for _ in range(100):
            try:
                d.rmdir()
                break
            except FileNotFoundError:
                break
            except OSError:  # busy: a killed task not yet reaped by the kernel
                time.sleep(0.01)
    # the shared parent (`lambdaplane/` under each controller) goes with its last instance
    with contextlib.suppress(OSError):
        if cgroup.parent.name == "lambdaplane":
            cgroup.parent.rmdir()
