"""CPU time of a local server and of what it started, from /proc: the server process (all its
threads) and its descendants (zygotes, sandboxes) apart, so a benchmark can say how much CPU
one warm invoke costs each side — a figure a shared, noisy machine still reproduces where
wall-clock throughput does not. `listening_pid` finds the server behind a loopback port."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class CpuSample:
    """User and system seconds so far: the server's own and its live descendants' summed."""
    server_user: float
    server_system: float
    descendants: float
    threads: dict[str, float] = field(default_factory=dict)  # "main" and "other": CPU s
    switches: int = 0  # the server threads' context switches (voluntary + involuntary)

    def per_op_us(self, before: "CpuSample", ops: int) -> dict[str, float]:
        if ops <= 0:
            return {}
        scale = 1e6 / ops
        user = (self.server_user - before.server_user) * scale
        system = (self.server_system - before.server_system) * scale
        threads = {name: round((seconds - before.threads.get(name, 0.0)) * scale, 1)
                   for name, seconds in self.threads.items()}
        return {"server_us": round(user + system, 1), "server_user_us": round(user, 1),
                "server_system_us": round(system, 1),
                "descendants_us": round((self.descendants - before.descendants) * scale, 1),
                "server_context_switches": round((self.switches - before.switches) / ops, 2),
                "server_threads_us": {k: v for k, v in threads.items() if v}}


def _stat(pid: int) -> tuple[int, float, float] | None:
    """(parent pid, user s, system s) of one process, or None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()  # the name may hold spaces and parentheses
    return int(fields[1]), int(fields[11]) * TICK_S, int(fields[12]) * TICK_S


def sample(pid: int) -> CpuSample:
    """The server's CPU and that of every process below it alive now (a descendant that
    exited during a measurement loses its share: warm environments stay alive)."""
    parents: dict[int, int] = {}
    cpu: dict[int, float] = {}
    own = _stat(pid)
    if own is None:
        raise ProcessLookupError(pid)
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            found = _stat(int(entry.name))
            if found is not None:
                parents[int(entry.name)] = found[0]
                cpu[int(entry.name)] = found[1] + found[2]
    below = 0.0
    for child, seconds in cpu.items():
        up, hops = parents.get(child, 0), 0
        while up > 1 and up != pid and hops < 64:
            up, hops = parents.get(up, 0), hops + 1
        if up == pid and child != pid:
            below += seconds
    threads, switches = _threads(pid)
    return CpuSample(own[1], own[2], below, threads, switches)


def _threads(pid: int) -> tuple[dict[str, float], int]:
    """CPU seconds of the process's main thread (the server's event loop) and of its other
    threads (log ingest, executors) together, and all its threads' context switches."""
    by_name: dict[str, float] = {}
    switches = 0
    try:
        tasks = list(os.scandir(f"/proc/{pid}/task"))
    except OSError:
        return by_name, switches
    for task in tasks:
        try:
            text = Path(task.path, "stat").read_text()
            status = Path(task.path, "status").read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2:].split()
        # Python does not name its threads for the kernel: the event loop's is the main one
        name = "main" if task.name == str(pid) else "other"
        by_name[name] = by_name.get(name, 0.0) + (int(fields[11]) + int(fields[12])) * TICK_S
        switches += sum(int(line.split()[1]) for line in status.splitlines()
                        if "ctxt_switches:" in line)
    return by_name, switches


def listening_pid(port: int) -> int | None:
    """The process holding the TCP socket listening on `port` (IPv4 or IPv6), or None."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{cols[9]}]")
    if not inodes:
        return None
    holders: set[int] = set()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            if any(os.readlink(fd.path) in inodes
                   for fd in os.scandir(f"/proc/{entry.name}/fd")):
                holders.add(int(entry.name))
        except OSError:
            continue
    # a child that inherited the socket is not the server: the holder whose parent is not one
    for pid in sorted(holders):
        found = _stat(pid)
        if found is not None and found[0] not in holders:
            return pid
    return None
