"""Memory after idle, for `lambdaplane bench default-server`: what adaptive capacity keeps after
a burst, and that it gives it back once the burst is forgotten.

A private server with default settings but a shortened capacity window and keep-alive (the
figure says so: `--capacity-window 60 --keep-alive 30` instead of 600 s and the default
keep-alive, so the run takes ~2 minutes, not 10): memory when it has filled its floors, after
one burst of N simultaneous cold starts (the targets raised and filled), and once the burst is
forgotten (targets back at the floors, nothing ready beyond them, no environment left). Memory:
the instance's memory cgroup (sandboxes, pre-forked sandboxes, zygotes) and the server's RSS."""
from __future__ import annotations

import os
import time
from pathlib import Path

from ..net.names import Names
from ..sandbox import cgroups
from .common import LambdaHttp, zip_bytes
from .vpc import HANDLER, _burst, _status

FULL = {"burst": 100, "hold_s": 1.0, "window_s": 60.0, "keep_alive_s": 30.0}
QUICK = {"burst": 4, "hold_s": 0.2, "window_s": 6.0, "keep_alive_s": 2.0}
SETTLE_S = 60.0  # beyond window + keep-alive, at most, for the shrink to show


def server_args(plan: dict) -> tuple[str, ...]:
    return ("--capacity-window", str(plan["window_s"]), "--keep-alive", str(plan["keep_alive_s"]))


def measure(endpoint: str, plan: dict) -> dict:
    http = LambdaHttp(endpoint)
    name = "bench-idle-memory"
    http.create_function(name, zip_bytes({"app.py": HANDLER}), Timeout=60)
    try:
        start = _when(endpoint, _filled, 60.0)
        firsts = _burst(endpoint, [name] * plan["burst"], plan["hold_s"])[name]
        began_idle = time.monotonic()
        after_burst = _when(endpoint, lambda ex: _filled(ex) and _raised(ex), 60.0)
        after_idle = _when(endpoint, _at_floors, plan["window_s"] + plan["keep_alive_s"]
                           + SETTLE_S)
        after_idle["idle_s"] = round(time.monotonic() - began_idle, 1)
    finally:
        http.call("DELETE", f"/2015-03-31/functions/{name}")
        http.close()
    return {"plan": plan, "server_args": list(server_args(plan)),
            "cold_starts_in_burst": len(firsts), "at_start": start,
            "after_burst": after_burst, "after_idle": after_idle}


def _filled(ex: dict) -> bool:
    return (ex["pool_ready"] >= ex["pool_target"]
            and ex.get("prewarmed_ready", 0) >= ex.get("prewarmed_target", 0))


def _raised(ex: dict) -> bool:
    """The burst is learnt and the pool target follows it (unless the floor is larger)."""
    capacity = ex.get("capacity", {})
    peak = capacity.get("learnt_peak", 0)
    return peak > 0 and (capacity.get("pool_bound") != "floor"
                         or peak <= capacity.get("pool_floor", 0))


def _at_floors(ex: dict) -> bool:
    capacity = ex.get("capacity", {})
    return (capacity.get("pool_target") == capacity.get("pool_floor")
            and capacity.get("prefork_target") == capacity.get("prefork_floor")
            and ex["pool_ready"] <= ex["pool_target"]
            and ex.get("prewarmed_ready", 0) <= ex.get("prewarmed_target", 0)
            and not any(ex["environments"].values()))


def _when(endpoint: str, ok, timeout_s: float) -> dict:
    """The memory snapshot once `ok(execution status)` holds (or at the timeout, marked)."""
    deadline = time.monotonic() + timeout_s
    while True:
        status = _status(endpoint)
        ex = status["execution"]
        if ok(ex) or time.monotonic() > deadline:
            return {**_memory(status), "reached": ok(ex),
                    **{k: ex.get(k) for k in ("pool_ready", "pool_target", "prewarmed_ready",
                                              "prewarmed_target")},
                    "environments": sum(ex["environments"].values())}
        time.sleep(0.25)


def _memory(status: dict) -> dict:
    names = Names(status["instance"].removeprefix("lp"))
    usage = cgroups.instance_dir(names, cgroups.MEMORY) / "memory.usage_in_bytes"
    try:
        cgroup_mb: float | None = int(usage.read_text()) / 2**20
    except (OSError, ValueError):
        cgroup_mb = None
    return {"instance_cgroup_mb": None if cgroup_mb is None else round(cgroup_mb, 1),
            "server_rss_mb": _server_rss_mb(status["data_dir"])}


def _server_rss_mb(data_dir: str) -> float | None:
    """RSS of the `serve` process whose --data-dir is the server's (read from /proc)."""
    wanted = f"--data-dir\0{data_dir}\0".encode()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if wanted not in Path(f"/proc/{pid}/cmdline").read_bytes():
                continue
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return round(int(line.split()[1]) / 1024, 1)
        except OSError:
            continue
    return None
