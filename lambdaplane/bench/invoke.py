"""`lambdaplane bench invoke`: cold-start and warm-invoke latency of a hello-world Python
function through the HTTP API. A cold start is forced by changing the function's description
(which retires its environments) before each cold sample; warm samples reuse one environment.
With `--runtimes python3.11,nodejs22.x,...` the same hello world runs in each runtime, side by
side in one run (cold samples taken in turn), reported under `per_runtime` (for Node.js also
the server's pre-started sandbox counts: how many cold starts found node ready, still
starting or none, and the hit ratio); the top-level figures are then the first runtime's. The
cold-start ceiling, fork+exec of the interpreter, is measured in the same run
(bench/ceilings.py) and each cold p50 is given as a ratio to it."""
from __future__ import annotations

import json
from pathlib import Path

from .ceilings import fork_exec_ceiling, ratio
from .common import LambdaHttp, machine, plot_cdfs, summary, write_json, zip_bytes

HELLO = "def handler(event, context):\n    return {'hello': event.get('name', 'world')}\n"
NODE_HELLO = "exports.handler = async (event) => ({hello: event.name || 'world'});\n"
GOALS = {"cold_p50_ms": 15.0, "warm_p50_ms": 2.0}


def run(endpoint: str, out_dir: Path, cold_n: int, warm_n: int,
        runtimes: list[str] | None = None) -> dict:
    chosen = runtimes or ["python3.11"]
    client = LambdaHttp(endpoint)
    names = {rt: "bench-hello" if rt == "python3.11" and not runtimes
             else "bench-hello-" + rt.replace(".", "") for rt in chosen}
    cold: dict[str, list[float]] = {rt: [] for rt in chosen}
    warm: dict[str, list[float]] = {rt: [] for rt in chosen}
    try:
        for rt, name in names.items():
            client.call("DELETE", f"/2015-03-31/functions/{name}")
            if rt.startswith("nodejs"):
                client.create_function(name, zip_bytes({"index.js": NODE_HELLO}), runtime=rt,
                                       handler="index.handler")
            else:
                client.create_function(name, zip_bytes({"app.py": HELLO}), runtime=rt)
        for i in range(cold_n):  # in turn: every runtime sees the same machine
            for rt, name in names.items():
                client.json("PUT", f"/2015-03-31/functions/{name}/configuration",
                            {"Description": f"cold sample {i}"})
                client.wait_for(name, lambda c: c.get("LastUpdateStatus") == "Successful")
                status, ms, body = client.invoke(name, b'{"name": "cold"}')
                _check(status, body)
                cold[rt].append(ms)
        # Node.js: how many cold starts found node started and warm, or still starting
        prestarted = client.json("GET", "/_lambdaplane/status")["execution"].get("prestarted", {})
        for rt, name in names.items():
            for _ in range(min(20, warm_n)):  # warm-up, not recorded
                client.invoke(name)
            for _ in range(warm_n):
                status, ms, body = client.invoke(name, b'{"name": "warm"}')
                _check(status, body)
                warm[rt].append(ms)
        for name in names.values():
            client.call("DELETE", f"/2015-03-31/functions/{name}")
    finally:
        client.close()
    first = chosen[0]
    ceiling = fork_exec_ceiling(20 if cold_n >= 20 else 5)
    result = {"benchmark": "invoke", "machine": machine(), "goals": GOALS,
              "cold_start": summary(cold[first]), "warm_invoke": summary(warm[first]),
              "ceiling": {"fork_exec_python": ceiling},
              "ratio_to_fork_exec": {"cold_p50": ratio(summary(cold[first])["p50_ms"],
                                                       ceiling)},
              "samples_ms": {"cold": [round(x, 3) for x in cold[first]],
                             "warm": [round(x, 3) for x in warm[first]]}}
    if runtimes:
        result["runtime"] = first
        result["per_runtime"] = {rt: {"cold_start": summary(cold[rt]),
                                      "warm_invoke": summary(warm[rt]),
                                      "cold_p50_ratio_to_fork_exec": ratio(
                                          summary(cold[rt])["p50_ms"], ceiling),
                                      "cold_samples_ms": [round(x, 3) for x in cold[rt]],
                                      **({"prestarted": prestarted[rt]} if rt in prestarted
                                         else {})} for rt in chosen}
    write_json(out_dir, "invoke", result)
    series = {}
    for rt in chosen:
        label = f"{rt} " if runtimes else ""
        series[f"{label}cold start"] = cold[rt]
        series[f"{label}warm invoke"] = warm[rt]
    plot_cdfs(out_dir, "invoke", "hello-world invoke latency through the HTTP API", series)
    return result


def _check(status: int, body: bytes) -> None:
    if status != 200 or "hello" not in json.loads(body):
        raise RuntimeError(f"invoke failed: {status} {body[:300]!r}")
