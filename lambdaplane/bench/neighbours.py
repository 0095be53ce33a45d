"""`lambdaplane bench neighbours`: the noisy neighbour. A victim function's warm-invoke latency
is measured quiet, then again while another function spins the CPU at full concurrency (as
many concurrent invocations of a busy loop as the bench keeps in flight). The figure is the
victim's p99 under noise over its quiet p99; the issue's goal is at most 2x. CPU shares follow
MemorySize (sandbox/cgroups.py), so the spinner gets its memory's share, not the machine."""
from __future__ import annotations

import json
import os
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


def run(endpoint: str, out_dir: Path, quick: bool = False) -> dict:
    n = 60 if quick else 600
    concurrency = (2 if quick else 4) * (os.cpu_count() or 1)
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
    quiet_s, noisy_s = summary(quiet), summary(noisy)
    result = {"benchmark": "neighbours", "machine": machine(), "goals": GOALS,
              "spinner_concurrency": concurrency, "memory_mb": 128,
              "quiet": quiet_s, "noisy": noisy_s,
              "noisy_over_quiet_p99": round(noisy_s["p99_ms"] / quiet_s["p99_ms"], 2),
              "noisy_over_quiet_p50": round(noisy_s["p50_ms"] / quiet_s["p50_ms"], 2),
              "samples_ms": {"quiet": [round(x, 3) for x in quiet],
                             "noisy": [round(x, 3) for x in noisy]}}
    write_json(out_dir, "neighbours", result)
    plot_cdfs(out_dir, "neighbours", "warm invoke of a victim, quiet vs next to a spinner",
              {"quiet": quiet, "noisy neighbour": noisy})
    return result
