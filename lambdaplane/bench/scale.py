"""`lambdaplane bench scale`: how many concurrent execution environments one host holds (the
goal: AWS's default account concurrency, 1,000), what each costs in memory, how cold-start
latency grows on the way there, and whether the API stays responsive meanwhile.

The concurrency rises in steps (1, 10, 100, 250, 500, 1,000). At each step N invokes are fired
at once over connections opened beforehand — half to a small Python function attached to a VPC,
half to the same function without one — and every handler holds its environment until a moment
set well after the step's last cold start should be done, so all N are alive together; the environments of earlier steps are still warm and serve part of
the next, so each step cold-starts the difference. Samples are first invocations only, hold
subtracted. While the step runs, a prober times ListFunctions every 50 ms. When it is over (all
N environments alive and idle) memory is read: each environment's cgroup usage, RSS and PSS of
its processes (smaps_rollup: the zygote's shared pages split fairly), and the host's
MemAvailable against the start (everything: kernel namespaces, veths, sockets, server)."""
from __future__ import annotations

import asyncio
import glob
import json
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

from .common import (LambdaHttp, aws_client, create_network, machine, remove_bench_objects,
                     summary, write_json, zip_bytes)
from .throughput import _read_response

# Holds its environment until an agreed moment (the host's clock is the sandbox's), so every
# environment of a step is alive at once however long the step's cold starts take.
HANDLER = """
import time
started = 0

def handler(event, context):
    global started
    started += 1
    t0 = time.perf_counter()
    delay = event["until"] - time.time()
    if delay > 0:
        time.sleep(delay)
    return {"first": started == 1, "held_ms": (time.perf_counter() - t0) * 1000}
"""
GOALS = {"environments": 1000, "api_p99_ms_while_scaling": 250.0}
ANCHOR = ("Firecracker: ≤5 MiB VMM overhead per microVM (plus guest memory); LocalStack/SAM: one "
          "Docker container per environment; published netns-per-sandbox systems: 1,600 "
          "namespaces in 120 s (Particle, SoCC'20)")
FULL = {"levels": [1, 10, 100, 250, 500, 1000], "pool": 128, "hold_base_s": 3.0,
        "hold_per_env_s": 0.06}
QUICK = {"levels": [1, 4], "pool": 8, "hold_base_s": 0.3, "hold_per_env_s": 0.0}
VPC_CIDR, SUBNET_CIDR = "10.92.0.0/16", "10.92.0.0/20"
CGROUP_ROOT = "/sys/fs/cgroup"


def server_args(quick: bool) -> tuple[str, ...]:
    plan = QUICK if quick else FULL
    # every environment stays warm across the steps; the account allows exactly the top step;
    # no pre-forked sandboxes, so every env-* cgroup measured is an environment's
    return ("--pool-size", str(plan["pool"]), "--keep-alive", "3600", "--prefork", "0",
            "--account-concurrency", str(max(1000, plan["levels"][-1])))


def run(endpoint: str, out_dir: Path, quick: bool = False) -> dict:
    plan = QUICK if quick else FULL
    ec2 = aws_client(endpoint, "ec2")
    http = LambdaHttp(endpoint)
    vpc, subnet, group = create_network(ec2, VPC_CIDR, SUBNET_CIDR, "bench-scale")
    names = {"no_vpc": "bench-scale", "vpc": "bench-scale-vpc"}
    instance = _status(endpoint)["instance"]
    baseline_kb = _mem_available_kb()
    rows: list[dict] = []
    try:
        code = zip_bytes({"app.py": HANDLER})
        http.create_function(names["no_vpc"], code, Timeout=120, MemorySize=128)
        http.create_function(names["vpc"], code, Timeout=120, MemorySize=128, VpcConfig={
            "SubnetIds": [subnet], "SecurityGroupIds": [group]})
        for n in plan["levels"]:
            hold = plan["hold_base_s"] + plan["hold_per_env_s"] * n
            started = time.monotonic()
            cold, api = asyncio.run(_step(endpoint, names, n, hold))
            elapsed = time.monotonic() - started
            status = _status(endpoint)["execution"]
            memory = _memory(instance)
            envs = sum(status["environments"].values())
            row = {"concurrency": n, "environments": envs, "step_s": round(elapsed, 2),
                   "cold_no_vpc": summary(cold["no_vpc"]), "cold_vpc": summary(cold["vpc"]),
                   "cold_all": summary(cold["no_vpc"] + cold["vpc"]),
                   "api_list_functions": summary(api),
                   "memory": memory,
                   "host_mem_used_mib": round((baseline_kb - _mem_available_kb()) / 1024, 1)}
            row["host_mib_per_env"] = round(row["host_mem_used_mib"] / envs, 2) if envs else None
            rows.append(row)
            print(f"scale bench: N={n} envs={envs} cold p50 {row['cold_all']['p50_ms']:.0f} ms "
                  f"p99 {row['cold_all']['p99_ms']:.0f} ms, PSS/env "
                  f"{memory['pss_mib_per_env']} MiB, API p99 "
                  f"{row['api_list_functions']['p99_ms']:.0f} ms", flush=True)
    finally:
        remove_bench_objects(http, names.values(), ec2, subnet, group, vpc)
    top = rows[-1]
    result = {"benchmark": "scale", "machine": machine(), "goals": GOALS, "anchor": ANCHOR,
              "plan": plan, "rows": rows,
              "reached": {"environments": top["environments"],
                          "pss_mib_per_env": top["memory"]["pss_mib_per_env"],
                          "cgroup_mib_per_env": top["memory"]["cgroup_mib_per_env"],
                          "host_mib_per_env": top["host_mib_per_env"],
                          "cold_p50_ms_at_top": top["cold_all"]["p50_ms"],
                          "cold_p99_ms_at_top": top["cold_all"]["p99_ms"],
                          "api_p99_ms_at_top": top["api_list_functions"]["p99_ms"]}}
    write_json(out_dir, "scale", result)
    _plot(out_dir, rows)
    return result


async def _step(endpoint: str, names: dict[str, str], n: int,
                hold_s: float) -> tuple[dict[str, list[float]], list[float]]:
    url = urlparse(endpoint)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    kinds = ["no_vpc" if i % 2 == 0 else "vpc" for i in range(n)]
    conns = []
    for _ in kinds:  # one at a time: a burst of connects would overflow the listen backlog
        conns.append(await asyncio.open_connection(host, port))
    payload = json.dumps({"until": time.time() + hold_s}).encode()
    cold: dict[str, list[float]] = {"no_vpc": [], "vpc": []}
    api: list[float] = []
    done = asyncio.Event()

    async def one(kind: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        name = names[kind]
        writer.write((f"POST /2015-03-31/functions/{name}/invocations HTTP/1.1\r\n"
                      f"Host: {host}:{port}\r\nContent-Length: {len(payload)}\r\n\r\n").encode()
                     + payload)
        t0 = time.perf_counter()
        status, body = await _read_response(reader)
        ms = (time.perf_counter() - t0) * 1000
        writer.close()
        if status != 200:
            raise RuntimeError(f"invoke of {name} failed: {status} {body[:300]!r}")
        answer = json.loads(body)
        if answer.get("first"):
            cold[kind].append(ms - answer["held_ms"])

    async def probe() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        request = f"GET /2015-03-31/functions/ HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
        try:
            while not done.is_set():
                t0 = time.perf_counter()
                writer.write(request)
                status, _body = await _read_response(reader)
                if status == 200:
                    api.append((time.perf_counter() - t0) * 1000)
                await asyncio.sleep(0.05)
        finally:
            writer.close()

    prober = asyncio.create_task(probe())
    try:
        await asyncio.gather(*(one(k, r, w) for k, (r, w) in zip(kinds, conns)))
    finally:
        done.set()
        await prober
    return cold, api


def _memory(instance: str) -> dict[str, float]:
    """Per environment: cgroup memory usage, and RSS/PSS of the processes in its cgroup."""
    envs = glob.glob(f"{CGROUP_ROOT}/memory/lambdaplane/{instance}/env-*")
    usage = rss = pss = 0
    for d in envs:
        try:
            usage += int(Path(d, "memory.usage_in_bytes").read_text())
            pids = Path(d, "cgroup.procs").read_text().split()
        except OSError:
            continue
        for pid in pids:
            try:
                for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                    key, _, rest = line.partition(":")
                    if key == "Rss":
                        rss += int(rest.split()[0]) * 1024
                    elif key == "Pss":
                        pss += int(rest.split()[0]) * 1024
            except OSError:
                continue
    n = len(envs) or 1
    mib = 1024 * 1024
    return {"environments_measured": len(envs),
            "cgroup_mib_per_env": round(usage / n / mib, 2),
            "rss_mib_per_env": round(rss / n / mib, 2),
            "pss_mib_per_env": round(pss / n / mib, 2)}


def _mem_available_kb() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1])
    return 0


def _status(endpoint: str) -> dict:
    with urllib.request.urlopen(endpoint + "/_lambdaplane/status", timeout=30) as r:
        return json.loads(r.read())


def _plot(out_dir: Path, rows: list[dict]) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.5))
    xs = [r["environments"] for r in rows]
    for key, label in (("cold_no_vpc", "cold start, no VPC"), ("cold_vpc", "cold start, VPC"),
                       ("api_list_functions", "ListFunctions while scaling")):
        ax1.plot(xs, [r[key]["p50_ms"] for r in rows], marker="o", label=f"{label} p50")
        ax1.plot(xs, [r[key]["p99_ms"] for r in rows], marker="x", linestyle="--",
                 label=f"{label} p99")
    ax1.set_xscale("log")
    ax1.set_yscale("log")
    ax1.set_xlabel("concurrent execution environments")
    ax1.set_ylabel("latency (ms)")
    ax1.grid(alpha=0.3)
    ax1.legend(fontsize=7)
    for key, label in (("pss_mib_per_env", "PSS"), ("rss_mib_per_env", "RSS"),
                       ("cgroup_mib_per_env", "cgroup usage")):
        ax2.plot(xs, [r["memory"][key] for r in rows], marker="o", label=label)
    ax2.plot(xs, [r["host_mib_per_env"] for r in rows], marker="s", label="host MemAvailable")
    ax2.set_xscale("log")
    ax2.set_xlabel("concurrent execution environments")
    ax2.set_ylabel("MiB per environment")
    ax2.grid(alpha=0.3)
    ax2.legend(fontsize=8)
    fig.suptitle("scaling one host to 1,000 concurrent environments")
    path = out_dir / "scale.png"
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
