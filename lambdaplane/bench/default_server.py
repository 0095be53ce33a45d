"""`lambdaplane bench default-server`: what a new user gets from `lambdaplane serve` with no
tuning flag, before and after adaptive capacity (sandbox/capacity.py), side by side in one run.

For each of `--capacity fixed` (the flags as they are: pool 8, prefork 4 — the behaviour before)
and the default `--capacity adaptive`, a private server with otherwise default settings:
- three bursts in a row of N simultaneous invokes of one VPC function (N threads released
  together, a connection each opened just before, the handler holding `hold_s` so that every
  call is a cold start; the hold is subtracted). Before each burst a Description change retires
  the previous burst's environments, then the bench waits `gap_s` — not for any pool;
- M distinct functions created, then invoked once each back to back: their cold starts.
Then memory after idle on an adaptive server with a shortened window (bench/idle_memory.py).
The cold-start ceiling is measured in the same run: fork+exec of the interpreter
(`python3 -c pass`), and ratios are given beside the absolute figures."""
from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

from . import idle_memory
from .ceilings import fork_exec_ceiling

from .common import (
    LambdaHttp,
    aws_client,
    create_network,
    machine,
    private_server,
    remove_bench_objects,
    summary,
    write_json,
    zip_bytes,
)
from .vpc import HANDLER, _burst, _status

GOALS = {"burst1_p99_ms": 1000.0, "burst2plus_p99_ms": 300.0, "distinct_cold_p50_ms": 15.0}
FULL = {"burst": 100, "bursts": 3, "hold_s": 1.0, "gap_s": 3.0, "distinct": 30}
QUICK = {"burst": 4, "bursts": 2, "hold_s": 0.2, "gap_s": 0.5, "distinct": 3}
HELLO = "def handler(event, context):\n    return {'hello': 'world'}\n"
VPC_CIDR, SUBNET_CIDR = "10.93.0.0/16", "10.93.0.0/24"
MODES = ("fixed", "adaptive")


def run(out_dir: Path, quick: bool = False) -> dict:
    plan = QUICK if quick else FULL
    ceiling = fork_exec_ceiling(5 if quick else 20)
    modes: dict[str, dict] = {}
    for mode in MODES:
        with private_server("--capacity", mode) as endpoint:
            modes[mode] = _measure(endpoint, plan)
    idle_plan = idle_memory.QUICK if quick else idle_memory.FULL
    with private_server(*idle_memory.server_args(idle_plan)) as endpoint:
        memory = idle_memory.measure(endpoint, idle_plan)
    fork_p50 = ceiling["p50_ms"]
    for result in modes.values():
        cold = result["distinct_cold"]
        cold["ratio_to_fork_exec_p50"] = round(cold["p50_ms"] / fork_p50, 3) if fork_p50 else None
    comparison = {
        f"burst{i + 1}_p99_ms": {mode: modes[mode]["bursts"][i]["p99_ms"] for mode in MODES}
        for i in range(int(plan["bursts"]))}
    comparison["distinct_cold_p50_ms"] = {m: modes[m]["distinct_cold"]["p50_ms"] for m in MODES}
    result = {"benchmark": "default_server", "machine": machine(), "goals": GOALS,
              "plan": plan, "ceiling": {"fork_exec_python": ceiling},
              "before_fixed_vs_after_adaptive": comparison, "modes": modes,
              "idle_memory": memory}
    write_json(out_dir, "default_server", result)
    return result


def _measure(endpoint: str, plan: dict) -> dict:
    ec2 = aws_client(endpoint, "ec2")
    http = LambdaHttp(endpoint)
    vpc, subnet, group = create_network(ec2, VPC_CIDR, SUBNET_CIDR, "bench-default")
    name = "bench-default-vpc"
    distinct = [f"bench-default-{i}" for i in range(plan["distinct"])]
    bursts, capacity = [], []
    try:
        http.create_function(name, zip_bytes({"app.py": HANDLER}), Timeout=60, VpcConfig={
            "SubnetIds": [subnet], "SecurityGroupIds": [group]})
        for i in range(plan["bursts"]):
            http.json("PUT", f"/2015-03-31/functions/{name}/configuration",
                      {"Description": f"burst {i}"})  # retires the previous burst's envs
            http.wait_for(name, lambda c: c.get("LastUpdateStatus") == "Successful")
            time.sleep(plan["gap_s"])
            execution = _status(endpoint)["execution"]
            firsts = _burst(endpoint, [name] * plan["burst"], plan["hold_s"])[name]
            bursts.append({"burst": i + 1, **summary(firsts),
                           "max_ms": round(max(firsts), 3) if firsts else None,
                           "ready_before": {k: execution.get(k) for k in (
                               "pool_ready", "pool_target", "prewarmed_ready",
                               "prewarmed_target")}})
            capacity.append(execution.get("capacity", {}))
        code = zip_bytes({"app.py": HELLO})
        for fn in distinct:
            http.create_function(fn, code)
        cold = []
        for fn in distinct:
            status, ms, body = http.invoke(fn)
            if status != 200 or "hello" not in json.loads(body):
                raise RuntimeError(f"invoke of {fn} failed: {status} {body[:300]!r}")
            cold.append(ms)
        after = _status(endpoint)["execution"]
    finally:
        for fn in distinct:
            http.call("DELETE", f"/2015-03-31/functions/{fn}")
        remove_bench_objects(http, [name], ec2, subnet, group, vpc)
    return {"bursts": bursts, "capacity_before_each_burst": capacity,
            "distinct_cold": {**summary(cold), "samples_ms": [round(x, 3) for x in cold]},
            "capacity_at_end": after.get("capacity", {}),
            "distinct_cold_stdev_ms": round(statistics.pstdev(cold), 3) if cold else None}
