"""`lambdaplane bench invoke`: cold-start and warm-invoke latency of a hello-world Python
function through the HTTP API. A cold start is forced by changing the function's description
(which retires its environments) before each cold sample; warm samples reuse one environment."""
from __future__ import annotations

import json
from pathlib import Path

from .common import LambdaHttp, machine, plot_cdfs, summary, write_json, zip_bytes

HELLO = "def handler(event, context):\n    return {'hello': event.get('name', 'world')}\n"
GOALS = {"cold_p50_ms": 15.0, "warm_p50_ms": 2.0}


def run(endpoint: str, out_dir: Path, cold_n: int, warm_n: int) -> dict:
    client = LambdaHttp(endpoint)
    name = "bench-hello"
    try:
        client.call("DELETE", f"/2015-03-31/functions/{name}")
        client.create_function(name, zip_bytes({"app.py": HELLO}))
        cold, warm = [], []
        for i in range(cold_n):
            client.json("PUT", f"/2015-03-31/functions/{name}/configuration",
                        {"Description": f"cold sample {i}"})
            client.wait_for(name, lambda c: c.get("LastUpdateStatus") == "Successful")
            status, ms, body = client.invoke(name, b'{"name": "cold"}')
            _check(status, body)
            cold.append(ms)
        for _ in range(min(20, warm_n)):  # warm-up, not recorded
            client.invoke(name)
        for _ in range(warm_n):
            status, ms, body = client.invoke(name, b'{"name": "warm"}')
            _check(status, body)
            warm.append(ms)
        client.call("DELETE", f"/2015-03-31/functions/{name}")
    finally:
        client.close()
    result = {"benchmark": "invoke", "machine": machine(), "goals": GOALS,
              "cold_start": summary(cold), "warm_invoke": summary(warm),
              "samples_ms": {"cold": [round(x, 3) for x in cold], "warm": [round(x, 3) for x in warm]}}
    write_json(out_dir, "invoke", result)
    plot_cdfs(out_dir, "invoke", "hello-world invoke latency through the HTTP API",
              {"cold start": cold, "warm invoke": warm})
    return result


def _check(status: int, body: bytes) -> None:
    if status != 200 or "hello" not in json.loads(body):
        raise RuntimeError(f"invoke failed: {status} {body[:300]!r}")
