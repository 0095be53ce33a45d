"""Process identity that survives pid reuse: a pid together with its start time (clock ticks
since boot, from /proc/<pid>/stat). Used to find a namespace again through the program that
uses it (net/reconcile.py) and to tell whether an interface's owner still runs
(service/interfaces.py)."""
from __future__ import annotations

from pathlib import Path


def process_start(pid: int) -> int | None:
    """The start time of process `pid` (clock ticks since boot), None when it does not exist."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name (field 2) may contain spaces; fields after its closing ')' are fixed.
    return int(stat.rsplit(")", 1)[1].split()[19])


def process_alive(pid: int | None, start: int | None) -> bool:
    """Whether `pid` runs and is the process that started at `start` (None: any)."""
    if pid is None:
        return False
    now = process_start(pid)
    return now is not None and (start is None or now == start)
