"""A tiny Lambda Runtime API server for testing runtimes: invocations are queued by the test,
handed out on GET /next (long poll, HTTP/1.1 keep-alive), and everything the runtime posts
(response, error, init error) is recorded in order. Stdlib only; listens where its socket was
created (create it inside a netns to serve a sandbox there)."""
from __future__ import annotations

import json
import queue
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PREFIX = "/2018-06-01/runtime"


@dataclass
class Posted:
    kind: str  # "response" | "error" | "init_error"
    request_id: str
    body: bytes
    headers: dict[str, str]
    at: float = field(default_factory=time.perf_counter)

    def json(self) -> Any:
        return json.loads(self.body)


class RuntimeApiStub:
    def __init__(self, host: str = "127.0.0.1") -> None:
        self.invocations: queue.Queue[tuple[str, bytes, dict[str, str]]] = queue.Queue()
        self.posted: queue.Queue[Posted] = queue.Queue()
        self.next_calls: list[float] = []  # perf_counter of each GET /next
        self.next_arrived = threading.Event()  # set by every GET /next
        self.connections: set[tuple[str, int]] = set()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _reply(self, status: int, body: bytes = b"",
                       headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                stub.connections.add(self.client_address)
                if self.path != PREFIX + "/invocation/next":
                    self._reply(404)
                    return
                stub.next_calls.append(time.perf_counter())
                stub.next_arrived.set()
                try:
                    request_id, payload, headers = stub.invocations.get(timeout=60)
                except queue.Empty:
                    self._reply(500)
                    return
                self._reply(200, payload, {"Lambda-Runtime-Aws-Request-Id": request_id,
                                           "Content-Type": "application/json", **headers})

            def do_POST(self) -> None:
                stub.connections.add(self.client_address)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                headers = {k: v for k, v in self.headers.items()}
                parts = self.path[len(PREFIX):].strip("/").split("/")
                if parts == ["init", "error"]:
                    stub.posted.put(Posted("init_error", "", body, headers))
                elif len(parts) == 3 and parts[0] == "invocation" and parts[2] in (
                        "response", "error"):
                    stub.posted.put(Posted(parts[2], parts[1], body, headers))
                else:
                    self._reply(404)
                    return
                self._reply(202, b'{"status":"OK"}', {"Content-Type": "application/json"})

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # killed environments reset their connections: expected here

        self.server = Server((host, 0), Handler)
        self.address = f"{host}:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def invoke(self, request_id: str, event: Any, deadline_in_ms: int = 30_000,
               headers: dict[str, str] | None = None) -> None:
        deadline = int(time.time() * 1000) + deadline_in_ms
        self.invocations.put((request_id, json.dumps(event).encode(),
                              {"Lambda-Runtime-Deadline-Ms": str(deadline),
                               "Lambda-Runtime-Invoked-Function-Arn":
                                   "arn:aws:lambda:us-east-1:000000000000:function:f",
                               **(headers or {})}))

    def next_posted(self, timeout: float = 20) -> Posted:
        return self.posted.get(timeout=timeout)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
