"""`lambdaplane bench fabric`: a VPC function on the other host (issue 20). In the lab of
bench/fabric_lab.py (PostgreSQL, two namespace-hosts in the EVPN fabric, an agent in each, a
resource of the VPC on host A), side by side, interleaved rounds, medians:

1. cold start of the VPC function pinned to host A (the resource's host) against pinned to host
   B (across the fabric): two identical functions, each invoked only through the API server
   pinning to its host; a sample is one invoke after a Description change retired the
   environment, counted only when the handler says it was its environment's first; p50/p99 and
   the ratio B/A;
2. the datapath from the function on host B to the resource on host A (sandbox → ENI → VPC
   namespace on B → VXLAN across the fabric → VPC namespace on A → resource) against a direct
   veth between the two host namespaces, with the same code on both (bench/fabric_probe.py:
   one TCP stream's throughput, new connections/s); also the function on host A to the same
   resource (same host) for scale; the ratios fabric / direct veth.

Writes fabric.json and fabric.png."""
from __future__ import annotations

import contextlib
import json
import subprocess
import time
from pathlib import Path

from .common import LambdaHttp, machine, percentile, summary, write_json, zip_bytes
from .fabric_lab import (
    DRAIN_PORT,
    PROBE,
    RESOURCE,
    SINK_PORT,
    TRANSFER,
    Lab,
    fabric_lab,
    probe_client,
    wait_until,
)

FULL = {"cold_rounds": 40, "datapath_rounds": 5, "seconds": 3.0, "memory_mb": 1769}
QUICK = {"cold_rounds": 3, "datapath_rounds": 1, "seconds": 1.0, "memory_mb": 1769}
FUNCTIONS = {"host-a": "fabric-on-a", "host-b": "fabric-on-b"}
PATHS = {
    "direct_veth": "client in host B's namespace -> the underlay veth -> server in host A's "
                   "namespace (no VPC, no NAT, no VXLAN)",
    "eni_across_fabric": "the VPC function on host B -> its ENI (SNAT in B's port block) -> "
                         "VPC namespace on B -> VXLAN over the underlay veth -> VPC namespace "
                         "on A -> the resource on A",
    "eni_same_host": "the VPC function on host A -> its ENI -> VPC namespace on A -> the "
                     "resource on A (no fabric)"}


def run(out_dir: Path, quick: bool) -> dict:
    plan = QUICK if quick else FULL
    with fabric_lab() as lab:
        clients = {host: LambdaHttp(url) for host, url in lab.endpoints.items()}
        try:
            _create_functions(lab, clients, plan)
            cold = _cold_starts(clients, plan["cold_rounds"])
            paths = _datapath(lab, clients, plan)
        finally:
            for host, client in clients.items():
                with contextlib.suppress(OSError):  # the lab's teardown removes it anyway
                    client.call("DELETE", f"/2015-03-31/functions/{FUNCTIONS[host]}")
                client.close()
    same, across = cold["host-a"], cold["host-b"]
    result = {
        "benchmark": "fabric", "machine": machine(), "quick": quick, "plan": plan,
        "cold_start": {"same_host": summary(same), "across_fabric": summary(across),
                       "p50_ratio": _ratio(across, same, 50),
                       "p99_ratio": _ratio(across, same, 99),
                       "not_cold": cold["not_cold"]},
        "datapath": {"tools": "bench/fabric_probe.py on every path: one TCP stream of 256 KiB "
                              "writes; a connect+close(RST) loop against an accept+close loop",
                     "paths": paths, "path_definitions": PATHS,
                     "ratios": _path_ratios(paths)},
        "leftovers": lab.leftovers,
        "lab": {"host_namespaces": lab.hosts, "agent_instances": [a.instance for a in lab.agents]},
        "samples_ms": {"same_host": [round(x, 3) for x in same],
                       "across_fabric": [round(x, 3) for x in across]},
    }
    result["plot"] = str(_plot(out_dir, result))
    write_json(out_dir, "fabric", result)
    return result


def _create_functions(lab: Lab, clients: dict[str, LambdaHttp], plan: dict) -> None:
    """The two functions (one per host), and each until it reaches the resource (an agent's
    reconcile may not have built the ENI's path yet)."""
    code = zip_bytes({"app.py": PROBE.read_text()})
    for host, client in clients.items():
        client.create_function(FUNCTIONS[host], code, Timeout=120, MemorySize=plan["memory_mb"],
                               VpcConfig={"SubnetIds": [lab.subnet],
                                          "SecurityGroupIds": [lab.group]})
    for host, client in clients.items():
        wait_until(lambda: _invoke(client, FUNCTIONS[host], {
            "measure": "probe", "host": RESOURCE, "port": SINK_PORT})[1].get("ok"), 120,
            f"{FUNCTIONS[host]} reaching the resource", 1.0)


def _invoke(client: LambdaHttp, name: str, payload: dict) -> tuple[float, dict]:
    started = time.perf_counter()
    status, headers, body = client.call("POST", f"/2015-03-31/functions/{name}/invocations",
                                        json.dumps(payload).encode())
    ms = (time.perf_counter() - started) * 1000
    if status != 200 or "x-amz-function-error" in {k.lower() for k in headers}:
        raise RuntimeError(f"invoke {name}: {status} {body[:500]!r}")
    return ms, dict(json.loads(body))


def _cold_starts(clients: dict[str, LambdaHttp], rounds: int) -> dict:
    """Per host, cold-start latencies (ms); rounds alternate which host goes first."""
    samples: dict = {"host-a": [], "host-b": [], "not_cold": 0}
    for rep in range(rounds):
        order = list(clients) if rep % 2 == 0 else list(clients)[::-1]
        for host in order:
            client, name = clients[host], FUNCTIONS[host]
            client.json("PUT", f"/2015-03-31/functions/{name}/configuration",
                        {"Description": f"retired {time.monotonic_ns()}"})
            client.wait_for(name, lambda c: c.get("LastUpdateStatus") == "Successful")
            ms, out = _invoke(client, name, {})
            if out.get("first"):
                samples[host].append(ms)
            else:
                samples["not_cold"] += 1
    return samples


def _datapath(lab: Lab, clients: dict[str, LambdaHttp], plan: dict) -> dict:
    """Each path's rounds (interleaved) and medians; a measurement that failed (the function's
    error, the client's) is kept as {"error": ...} in its round and left out of the median."""
    seconds = plan["seconds"]
    got: dict[str, dict[str, list[dict]]] = {
        p: {"throughput": [], "connections": []} for p in PATHS}
    for _round in range(plan["datapath_rounds"]):
        for path in PATHS:
            for what, port in (("throughput", DRAIN_PORT), ("connections", SINK_PORT)):
                host = TRANSFER[0] if path == "direct_veth" else RESOURCE
                request = {"measure": what, "host": host, "port": port, "seconds": seconds}
                try:
                    if path == "direct_veth":
                        measured = probe_client(lab.hosts[1], request)
                    else:
                        on = "host-b" if path == "eni_across_fabric" else "host-a"
                        measured = _invoke(clients[on], FUNCTIONS[on], request)[1]
                except (RuntimeError, subprocess.SubprocessError) as e:
                    measured = {"error": str(e)[-600:]}
                got[path][what].append(measured)
    rows = {}
    for path, rounds in got.items():
        gbits = sorted(t["gbit_s"] for t in rounds["throughput"] if "gbit_s" in t)
        rates = sorted(c["per_s"] for c in rounds["connections"] if "per_s" in c)
        rows[path] = {"throughput_gbit_s": gbits[len(gbits) // 2] if gbits else None,
                      "throughput_rounds_gbit_s": [t.get("gbit_s") for t in rounds["throughput"]],
                      "connections_per_s": rates[len(rates) // 2] if rates else None,
                      "connections_rounds_per_s": [c.get("per_s")
                                                   for c in rounds["connections"]],
                      "connection_errors": sum(c.get("errors", 0)
                                               for c in rounds["connections"]),
                      "failed": [m["error"] for ms in rounds.values() for m in ms
                                 if "error" in m]}
    return rows


def _path_ratios(rows: dict) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for path, prefix in (("eni_across_fabric", ""), ("eni_same_host", "same_host_")):
        for key, name in (("throughput_gbit_s", "throughput_ratio"),
                          ("connections_per_s", "conn_rate_ratio")):
            base, over = rows["direct_veth"][key], rows[path][key]
            out[prefix + name] = round(over / base, 3) if base and over is not None else None
    return out


def _ratio(over: list[float], base: list[float], p: float) -> float | None:
    if not over or not base:
        return None
    return round(percentile(over, p) / percentile(base, p), 3)


def _plot(out_dir: Path, result: dict) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = result["datapath"]["paths"]
    cold = result["cold_start"]
    fig, (c, t, r) = plt.subplots(1, 3, figsize=(12, 4))
    labels = ["same_host", "across_fabric"]
    p50 = [cold[k]["p50_ms"] if cold[k]["n"] else 0 for k in labels]
    p99 = [cold[k]["p99_ms"] if cold[k]["n"] else 0 for k in labels]
    c.bar(labels, p50, label="p50")
    c.bar(labels, [hi - lo for hi, lo in zip(p99, p50)], bottom=p50, alpha=0.4, label="to p99")
    c.set_ylabel("ms")
    c.set_title("VPC function cold start")
    c.legend()
    t.bar(list(paths), [v["throughput_gbit_s"] or 0 for v in paths.values()])
    t.set_ylabel("Gbit/s (one stream)")
    t.set_title("TCP throughput")
    r.bar(list(paths), [v["connections_per_s"] or 0 for v in paths.values()])
    r.set_ylabel("connections/s")
    r.set_title("new TCP connections/s")
    for ax in (c, t, r):
        ax.grid(alpha=0.3, axis="y")
        ax.tick_params(axis="x", labelsize=7)
    fig.tight_layout()
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "fabric.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
