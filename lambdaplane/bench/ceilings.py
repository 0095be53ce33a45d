"""Same-run ceilings the benchmarks compare with: an aiohttp hello-world server (the most a
Python asyncio HTTP server answers on this machine, measured by the same client as the
platform), run in a process of its own on the server's event loop (uvloop)."""
from __future__ import annotations

import multiprocessing
import socket
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

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
