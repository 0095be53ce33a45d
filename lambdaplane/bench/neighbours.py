"""`lambdaplane bench neighbours`: the noisy neighbour. A victim function's warm-invoke latency
is measured quiet, then again while another function spins the CPU at full concurrency (as
many concurrent invocations of a busy loop as the bench keeps in flight). The figure is the
victim's p99 under noise over its quiet p99 (the median over rounds); the issue's goal is at
most 2x. CPU shares follow MemorySize (sandbox/cgroups.py), so the spinner gets its memory's
share, not the machine; each function's cpu group is a top-level cgroup and the server has a
heavier one of its own (sandbox/server_cpu.py), and short CPU slices (cpu_slice.py), so the
victim's wake-ups preempt the spinner (docs/security.md, CPU).
Without --endpoint the bench runs two private servers, the default and `--cpu-slice-us 0`
(the kernel's slice), and alternates rounds between them; the host's load average before and
after is in the result (the machine may be shared: quiet figures move with it)."""
from __future__ import annotations

import json
import os
import statistics
import threading
import time
from pathlib import Path

from .common import LambdaHttp, machine, plot_cdfs, summary, write_json, zip_bytes

VICTIM = "def handler(event, context):\n    return {'hello': event.get('name', 'world')}\n"
SPINNER = ("import time\n"
           "def handler(event, context):\n"
           "    end = time.monotonic() + float(event.get('seconds', 1))\n"
           "    n = 0\n"
           "    while time.monotonic() < end:\n"
           "        n += 1\n"
           "    return {'spins': n}\n")
GOALS = {"noisy_over_quiet_p99": 2.0}


def _spin(endpoint: str, name: str, stop: threading.Event, done: list[int]) -> None:
    client = LambdaHttp(endpoint)
    try:
        while not stop.is_set():
            status, _ms, _body = client.invoke(name, b'{"seconds": 1}')
            if status == 200:
                done.append(1)
    finally:
        client.close()


def _sample(client: LambdaHttp, name: str, n: int) -> list[float]:
    samples = []
    for _ in range(n):
        status, ms, body = client.invoke(name, b'{"name": "victim"}')
        if status != 200 or "hello" not in json.loads(body):
            raise RuntimeError(f"victim invoke failed: {status} {body[:300]!r}")
        samples.append(ms)
        time.sleep(0.005)  # an interactive caller, not a flood of its own
    return samples


def _round(endpoint: str, n: int, concurrency: int) -> tuple[list[float], list[float]]:
    """One quiet sample, then one next to the spinner (the functions made and removed here)."""
    client = LambdaHttp(endpoint)
    names = ("bench-victim", "bench-spinner")
    try:
        for name in names:
            client.call("DELETE", f"/2015-03-31/functions/{name}")
        client.create_function(names[0], zip_bytes({"app.py": VICTIM}), MemorySize=128)
        client.create_function(names[1], zip_bytes({"app.py": SPINNER}), MemorySize=128,
                               Timeout=30)
        _sample(client, names[0], 20)  # warm-up
        quiet = _sample(client, names[0], n)
        stop, done = threading.Event(), []
        spinners = [threading.Thread(target=_spin, args=(endpoint, names[1], stop, done),
                                     daemon=True) for _ in range(concurrency)]
        for t in spinners:
            t.start()
        deadline = time.monotonic() + 60
        while len(done) < concurrency and time.monotonic() < deadline:
            time.sleep(0.1)  # every spinner environment started and spinning
        try:
            noisy = _sample(client, names[0], n)
        finally:
            stop.set()
            for t in spinners:
                t.join(35)
        for name in names:
            client.call("DELETE", f"/2015-03-31/functions/{name}")
    finally:
        client.close()
    return quiet, noisy


def _ratios(quiet: list[float], noisy: list[float]) -> dict:
    q, z = summary(quiet), summary(noisy)
    return {"quiet_p99_ms": q["p99_ms"], "noisy_p99_ms": z["p99_ms"],
            "quiet_p50_ms": q["p50_ms"], "noisy_p50_ms": z["p50_ms"],
            "noisy_over_quiet_p99": round(z["p99_ms"] / q["p99_ms"], 2),
            "noisy_over_quiet_p50": round(z["p50_ms"] / q["p50_ms"], 2)}


def _median_of(rounds: list[dict]) -> dict:
    return {key: round(statistics.median(r[key] for r in rounds), 3) for key in rounds[0]}


def run(endpoint: str, out_dir: Path, quick: bool = False,
        others: dict[str, str] | None = None) -> dict:
    """Rounds of (quiet, noisy) against `endpoint`; with `others` ({label: endpoint}) the
    rounds alternate between the servers, so each sees the same moments of the host's load."""
    n = 60 if quick else 600
    rounds = 1 if quick else 3
    concurrency = (2 if quick else 4) * (os.cpu_count() or 1)
    servers = {"server": endpoint, **(others or {})}
    per: dict[str, list[dict]] = {label: [] for label in servers}
    samples: dict[str, tuple[list[float], list[float]]] = {}
    load_before = os.getloadavg()
    for _ in range(rounds):
        for label, url in servers.items():
            quiet, noisy = _round(url, n, concurrency)
            per[label].append({**_ratios(quiet, noisy), "load1": round(os.getloadavg()[0], 2)})
            samples[label] = (quiet, noisy)
    quiet, noisy = samples["server"]
    quiet_s, noisy_s = summary(quiet), summary(noisy)
    medians = _median_of([{k: v for k, v in r.items()} for r in per["server"]])
    result = {"benchmark": "neighbours", "machine": machine(), "goals": GOALS,
              "spinner_concurrency": concurrency, "memory_mb": 128, "rounds": rounds,
              "load_before": [round(x, 2) for x in load_before],
              "load_after": [round(x, 2) for x in os.getloadavg()],
              "quiet": quiet_s, "noisy": noisy_s,
              "noisy_over_quiet_p99": medians["noisy_over_quiet_p99"],
              "noisy_over_quiet_p50": medians["noisy_over_quiet_p50"],
              "median_of_rounds": medians, "per_round": per["server"],
              "samples_ms": {"quiet": [round(x, 3) for x in quiet],
                             "noisy": [round(x, 3) for x in noisy]}}
    if others:
        result["compared"] = {label: {"median_of_rounds": _median_of(per[label]),
                                      "per_round": per[label]} for label in others}
    write_json(out_dir, "neighbours", result)
    plot_cdfs(out_dir, "neighbours", "warm invoke of a victim, quiet vs next to a spinner",
              {"quiet": quiet, "noisy neighbour": noisy})
    return result
