"""`lambdaplane bench throughput`: warm invokes per second through the HTTP API at concurrency
1…64. The client is a minimal HTTP/1.1 keep-alive client on asyncio streams in its own process
(one connection per concurrent caller, no per-request allocations beyond the bytes), so that it
costs the server's cores as little as a Python client can; it runs on the same 2 cores as the
server, which the report says. Each level first warms up as many environments as callers, then
counts completed 200s for a fixed time; every answer is checked."""
from __future__ import annotations

import asyncio
import multiprocessing
import os
import time
from pathlib import Path
from urllib.parse import urlparse

from .common import LambdaHttp, machine, summary, write_json, zip_bytes
from .process_cpu import listening_pid, sample

HELLO = "def handler(event, context):\n    return {'hello': 'world'}\n"
FUNCTION = "bench-throughput"
GOALS = {"warm_invokes_per_s": 3000.0}
LEVELS = (1, 2, 4, 8, 16, 32, 64)
CEILING_LEVEL = 16  # callers at which the platform is compared with the hello-world server


def _request(host: str, port: int, name: str, body: bytes) -> bytes:
    return (f"POST /2015-03-31/functions/{name}/invocations HTTP/1.1\r\n"
            f"Host: {host}:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    return status, await reader.readexactly(length)


async def _caller(host: str, port: int, request: bytes, until: float,
                  latencies: list[float], errors: list[str]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while (now := time.perf_counter()) < until:
            writer.write(request)
            status, body = await _read_response(reader)
            latencies.append((time.perf_counter() - now) * 1000)
            if status != 200 or b"hello" not in body:
                errors.append(f"{status} {body[:200]!r}")
    finally:
        writer.close()


async def _level(host: str, port: int, concurrency: int, seconds: float,
                 name: str = FUNCTION) -> dict:
    request = _request(host, port, name, b'{"n": 1}')
    # Warm-up: as many environments as callers, and the connections' first requests.
    await _run_callers(host, port, request, concurrency, min(1.0, seconds / 2), [], [])
    server = listening_pid(port) if host in ("127.0.0.1", "localhost", "::1") else None
    latencies: list[float] = []
    errors: list[str] = []
    cpu_before = sample(server) if server else None
    client_before = os.times()
    started = time.perf_counter()
    await _run_callers(host, port, request, concurrency, seconds, latencies, errors)
    elapsed = time.perf_counter() - started
    client_after = os.times()
    row = {"concurrency": concurrency, "seconds": round(elapsed, 3),
           "invokes": len(latencies), "errors": len(errors), "first_errors": errors[:3],
           "invokes_per_s": round(len(latencies) / elapsed, 1), "latency": summary(latencies)}
    if cpu_before is not None and server is not None and latencies:
        # CPU per invoke from /proc: reproducible where invokes/s on a shared machine is not
        per_op = sample(server).per_op_us(cpu_before, len(latencies))
        client_s = (client_after.user + client_after.system
                    - client_before.user - client_before.system)
        per_op["client_us"] = round(client_s * 1e6 / len(latencies), 1)
        row["cpu_per_invoke"] = per_op
    return row


async def _run_callers(host: str, port: int, request: bytes, concurrency: int, seconds: float,
                       latencies: list[float], errors: list[str]) -> None:
    until = time.perf_counter() + seconds
    await asyncio.gather(*(_caller(host, port, request, until, latencies, errors)
                           for _ in range(concurrency)))


def _client_process(endpoint: str, levels: tuple[int, ...], seconds: float,
                    out: multiprocessing.Queue[list[dict]]) -> None:
    url = urlparse(endpoint)
    try:
        import uvloop  # the client's own overhead is what limits a Python client
        uvloop.install()
    except ImportError:
        pass

    async def all_levels() -> list[dict]:
        return [await _level(url.hostname or "127.0.0.1", url.port or 80, c, seconds)
                for c in levels]

    out.put(asyncio.run(all_levels()))


def run(endpoint: str, out_dir: Path, quick: bool = False) -> dict:
    levels = (1, 4) if quick else LEVELS
    seconds = 0.5 if quick else 5.0
    client = LambdaHttp(endpoint)
    try:
        client.call("DELETE", f"/2015-03-31/functions/{FUNCTION}")
        client.create_function(FUNCTION, zip_bytes({"app.py": HELLO}))
        # The client in a process of its own, so server and client each get a core's worth.
        queue: multiprocessing.Queue[list[dict]] = multiprocessing.get_context("spawn").Queue()
        proc = multiprocessing.get_context("spawn").Process(
            target=_client_process, args=(endpoint, levels, seconds, queue))
        proc.start()
        rows = queue.get(timeout=len(levels) * (seconds * 2 + 60))
        proc.join(30)
        client.call("DELETE", f"/2015-03-31/functions/{FUNCTION}")
    finally:
        client.close()
    ceiling = _hello_world_ceiling(levels[-1] if quick else CEILING_LEVEL, seconds)
    ours = next((r for r in rows if r["concurrency"] == ceiling["concurrency"]), rows[-1])
    best = max(rows, key=lambda r: r["invokes_per_s"])
    result = {"benchmark": "throughput", "machine": machine(), "goals": GOALS,
              "client": "asyncio HTTP/1.1 keep-alive, one connection per caller, in one "
                        "process on the same cores as the server",
              "levels": rows, "best": {"concurrency": best["concurrency"],
                                       "invokes_per_s": best["invokes_per_s"]},
              "ceiling": {"hello_world_aiohttp": ceiling},
              "ratio_to_hello_world": {
                  "concurrency": ceiling["concurrency"],
                  "invokes_per_s": ours["invokes_per_s"],
                  "ratio": round(ours["invokes_per_s"] / ceiling["invokes_per_s"], 3)
                  if ceiling["invokes_per_s"] else None,
                  "warm_p50_ms": ours["latency"]["p50_ms"],
                  # server CPU per warm invoke over the hello world's per request (/proc)
                  "server_cpu_ratio": _cpu_ratio(ours, ceiling)}}
    write_json(out_dir, "throughput", result)
    _plot(out_dir, rows)
    return result


def _cpu_ratio(ours: dict, ceiling: dict) -> float | None:
    mine = (ours.get("cpu_per_invoke") or {}).get("server_us")
    base = (ceiling.get("cpu_per_request") or {}).get("server_us")
    return round(mine / base, 2) if mine and base else None


def _hello_world_ceiling(concurrency: int, seconds: float) -> dict:
    """The same client against an aiohttp hello-world server, measured now (bench/ceilings.py)."""
    from .ceilings import hello_world_server

    with hello_world_server() as endpoint:
        ctx = multiprocessing.get_context("spawn")
        queue: multiprocessing.Queue[list[dict]] = ctx.Queue()
        proc = ctx.Process(target=_client_process, args=(endpoint, (concurrency,), seconds,
                                                         queue))
        proc.start()
        row = queue.get(timeout=seconds * 2 + 60)[0]
        proc.join(30)
    return {"concurrency": concurrency, "invokes_per_s": row["invokes_per_s"],
            "latency": row["latency"], "errors": row["errors"],
            "cpu_per_request": row.get("cpu_per_invoke")}


def _plot(out_dir: Path, rows: list[dict]) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    xs = [r["concurrency"] for r in rows]
    ax.plot(xs, [r["invokes_per_s"] for r in rows], marker="o", label="invokes/s")
    ax.axhline(GOALS["warm_invokes_per_s"], color="grey", linestyle="--", label="goal")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("concurrent callers")
    ax.set_ylabel("warm invokes per second")
    ax2 = ax.twinx()
    ax2.plot(xs, [r["latency"]["p99_ms"] for r in rows], color="tab:red", marker="x",
             label="p99 latency (ms)")
    ax2.set_ylabel("p99 latency (ms)")
    ax.set_title("warm invoke throughput through the HTTP API")
    ax.grid(alpha=0.3)
    fig.legend(loc="upper left")
    path = out_dir / "throughput.png"
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
