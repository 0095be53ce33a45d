"""Same-run ceilings the benchmarks compare with: an aiohttp hello-world server (the most a
Python asyncio HTTP server answers on this machine, measured by the same client as the
platform), run in a process of its own on the server's event loop (uvloop); and fork+exec of
the interpreter that runs functions, to exit (what no cold start that starts a fresh
interpreter can beat on this machine). The data path's ceiling, a direct veth, is measured by
bench/datapath.py itself."""
from __future__ import annotations

import multiprocessing
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

from .common import summary

BODY = b'{"hello": "world"}'


def _serve_hello(port: int) -> None:
    import uvloop
    from aiohttp import web

    async def hello(_request: web.Request) -> web.Response:
        return web.Response(body=BODY, content_type="application/json")

    app = web.Application()
    app.router.add_post("/2015-03-31/functions/{name}/invocations", hello)
    app.router.add_get("/health", hello)
    uvloop.install()
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


@contextmanager
def hello_world_server() -> Iterator[str]:
    """An aiohttp hello-world answering the invoke path; its endpoint."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = multiprocessing.get_context("spawn").Process(target=_serve_hello, args=(port,),
                                                        daemon=True)
    proc.start()
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(endpoint + "/health", timeout=1).read()
                break
            except OSError:
                if time.monotonic() > deadline or not proc.is_alive():
                    raise RuntimeError("the hello-world server did not start") from None
                time.sleep(0.05)
        yield endpoint
    finally:
        proc.terminate()
        proc.join(10)


def fork_exec_ceiling(n: int = 20) -> dict[str, float]:
    """fork+exec of the interpreter (`python3 -c pass`) to its exit, measured now: the
    cold-start ceiling (ratios beside absolute figures)."""
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        samples.append((time.perf_counter() - t0) * 1000)
    return summary(samples)


def ratio(value: float | None, ceiling: dict[str, float]) -> float | None:
    """value / the ceiling's p50, rounded; None without both."""
    base = ceiling.get("p50_ms")
    return round(value / base, 3) if value is not None and base else None
