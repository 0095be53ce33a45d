"""`lambdaplane bench burst`: 100 simultaneous cold starts of a VPC-attached function (the case
where systems that build a network per sandbox took 10–14 s), and of the same function without
a VPC for comparison, on a server whose sandbox pool holds enough pre-made namespaces and
which keeps as many sandboxes pre-forked (`serve --prefork 100`): the configuration for bursts.

Each round retires every environment and waits for a full pool, then fires N invokes at once
over connections opened beforehand (bench/vpc.py's `_burst`: the handler holds its environment
for a moment so none is reused, and the hold is subtracted). The server's own view of the same
cold starts — each phase of them, from `GET /metrics` before and after — shows which part of
the work is on the critical path.

The first burst of each function after the server starts is measured apart
(`first_burst_after_start`), not in the rounds: its pre-forked sandboxes were made before any
environment had run, so they had not learnt which of the zygote's pages to copy ahead of time
(sandbox/written_pages.py) and copy them during the cold start instead.

The cold-start ceiling, fork+exec of the interpreter, is measured in the same run
(bench/ceilings.py); p50 and p99 are also given as ratios to its p50."""
from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from .ceilings import fork_exec_ceiling, ratio
from .common import (LambdaHttp, aws_client, create_network, machine, plot_cdfs,
                     remove_bench_objects, summary, write_json, zip_bytes)
from .vpc import HANDLER, _burst, _retire_all

GOALS = {"vpc_burst_p99_ms": 250.0}
ANCHOR = ("100 concurrent sandboxes each building its own netns + veth: 14.4 s "
          "(Mohan et al., HotCloud'19); ~10 s (Particle, SoCC'20)")
FULL = {"burst": 100, "rounds": 5, "hold_s": 0.5, "pool": 128, "prefork": 100}
QUICK = {"burst": 4, "rounds": 1, "hold_s": 0.2, "pool": 8, "prefork": 4}
VPC_CIDR, SUBNET_CIDR = "10.91.0.0/16", "10.91.0.0/24"
PHASES = ("pool_take", "vpc_attach", "cgroup", "spawn", "runtime_ready")


def server_args(quick: bool) -> tuple[str, ...]:
    """What the private server needs: a pool that covers the whole burst, and as many
    sandboxes pre-forked (sandbox/prewarm.py)."""
    plan = QUICK if quick else FULL
    return ("--pool-size", str(plan["pool"]), "--prefork", str(plan["prefork"]))


def run(endpoint: str, out_dir: Path, quick: bool = False) -> dict:
    plan = QUICK if quick else FULL
    ec2 = aws_client(endpoint, "ec2")
    http = LambdaHttp(endpoint)
    vpc, subnet, group = create_network(ec2, VPC_CIDR, SUBNET_CIDR, "bench-burst")
    names = {"vpc": "bench-burst-vpc", "no_vpc": "bench-burst-novpc"}
    cold: dict[str, list[float]] = {"vpc": [], "no_vpc": []}
    rounds: dict[str, list[dict]] = {"vpc": [], "no_vpc": []}
    phases: dict[str, dict[str, float]] = {}
    try:
        code = zip_bytes({"app.py": HANDLER})
        http.create_function(names["vpc"], code, Timeout=60, VpcConfig={
            "SubnetIds": [subnet], "SecurityGroupIds": [group]})
        http.create_function(names["no_vpc"], code, Timeout=60)
        first: dict[str, dict[str, float]] = {}
        for kind in ("vpc", "no_vpc"):
            _retire_all(http, endpoint, names.values(), plan["pool"])
            first[kind] = summary(_burst(endpoint, [names[kind]] * plan["burst"],
                                         plan["hold_s"])[names[kind]])
        for rep in range(plan["rounds"]):
            for kind in (["vpc", "no_vpc"] if rep % 2 == 0 else ["no_vpc", "vpc"]):
                _retire_all(http, endpoint, names.values(), plan["pool"])
                before = _phase_sums(endpoint)
                firsts = _burst(endpoint, [names[kind]] * plan["burst"],
                                plan["hold_s"])[names[kind]]
                after = _phase_sums(endpoint)
                cold[kind] += firsts
                rounds[kind].append({"round": rep, **summary(firsts),
                                     "max_ms": round(max(firsts), 3) if firsts else None})
                # server-side phase time spent on this round's cold starts
                sums = phases.setdefault(kind, {})
                for phase, (total, count) in after.items():
                    b_total, b_count = before.get(phase, (0.0, 0.0))
                    sums[phase] = sums.get(phase, 0.0) + total - b_total
                    sums["_starts"] = sums.get("_starts", 0.0) + (
                        count - b_count if phase == "spawn" else 0.0)
        _retire_all(http, endpoint, names.values(), plan["pool"])
    finally:
        remove_bench_objects(http, names.values(), ec2, subnet, group, vpc)
    server_phases = {kind: {p: round(v / sums["_starts"] * 1000, 3)
                            for p, v in sums.items() if p != "_starts" and sums.get("_starts")}
                     for kind, sums in phases.items()}
    ceiling = fork_exec_ceiling(5 if quick else 20)
    result = {"benchmark": "burst", "machine": machine(), "goals": GOALS, "anchor": ANCHOR,
              "plan": plan, "server_args": list(server_args(quick)),
              "ceiling": {"fork_exec_python": ceiling},
              "ratio_to_fork_exec": {
                  f"{kind}_{p}": ratio(summary(cold[kind])[f"{p}_ms"], ceiling)
                  for kind in ("vpc", "no_vpc") for p in ("p50", "p99")}, "vpc": summary(cold["vpc"]), "no_vpc": summary(cold["no_vpc"]),
              "max_ms": {k: round(max(v), 3) if v else None for k, v in cold.items()},
              "first_burst_after_start": first,
              "rounds": rounds, "server_phase_mean_ms": server_phases,
              "samples_ms": {k: [round(x, 3) for x in v] for k, v in cold.items()}}
    write_json(out_dir, "burst", result)
    plot_cdfs(out_dir, "burst", f"{plan['burst']} simultaneous cold starts "
              f"({plan['rounds']} rounds)", {"VPC function": cold["vpc"],
                                             "no VPC": cold["no_vpc"]})
    return result


def _phase_sums(endpoint: str) -> dict[str, tuple[float, float]]:
    """(sum seconds, count) of each cold-start phase histogram, from GET /metrics."""
    try:
        with urllib.request.urlopen(endpoint + "/metrics", timeout=30) as r:
            text = r.read().decode()
    except urllib.error.HTTPError:  # a server without /metrics: client-side figures only
        return {}
    sums: dict[str, list[float]] = {}
    for family in text_string_to_metric_families(text):
        if family.name != "lambdaplane_cold_start_phase_seconds":
            continue
        for s in family.samples:
            phase = s.labels.get("phase", "")
            if s.name.endswith("_sum"):
                sums.setdefault(phase, [0.0, 0.0])[0] = s.value
            elif s.name.endswith("_count"):
                sums.setdefault(phase, [0.0, 0.0])[1] = s.value
    return {k: (v[0], v[1]) for k, v in sums.items()}
