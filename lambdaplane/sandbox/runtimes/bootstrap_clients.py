"""The Python runtime's two Runtime API clients, with the same four calls (next, response,
error, init error): RuntimeClient over HTTP/1.1 (the API at AWS_LAMBDA_RUNTIME_API, as every
runtime can use it) and FrameClient over the socketpair the server hands its built-in Python
runtimes (lambdaplane/sandbox/runtime_frames.py has the format); and `dumps`, the JSON a result
or an error is posted as. Part of the Python runtime (python_bootstrap.py loads it).

STDLIB ONLY, run under the function's interpreter (python3.9+): it is on every invocation's
path, so it stays a few lines of socket code (see RuntimeClient)."""
from __future__ import annotations

import json
import socket
import struct
import sys
from typing import Any

API_VERSION = "/2018-06-01"
NEXT_PATH = "/runtime/invocation/next"


class _Closed(ConnectionError):
    pass


_RECEIVE = bytearray(256 * 1024)
_RECEIVE_VIEW = memoryview(_RECEIVE)


def _receive(sock: socket.socket) -> bytes:
    """What has arrived, up to 256 KB, read into one buffer kept for the process: recv(256 KB)
    maps, shrinks and unmaps a fresh buffer each time (three system calls per invocation)."""
    n = sock.recv_into(_RECEIVE)
    if not n:
        raise _Closed("Runtime API closed the connection")
    return bytes(_RECEIVE_VIEW[:n])


class Headers(dict):
    """Response headers by lower-case name; `get` takes any case."""

    def get(self, name: str, default: Any = None) -> Any:  # type: ignore[override]
        return dict.get(self, name.lower(), default)


class RuntimeClient:
    """One keep-alive HTTP/1.1 connection to the Runtime API; reconnects once if the server
    closed it between requests. A few lines of socket code instead of http.client, whose
    header parsing (the email package) cost more per invocation than everything else here."""

    def __init__(self, address: str) -> None:
        host, _, port = address.rpartition(":")
        self._host, self._port = (host, int(port)) if host else (address, 80)
        self._sock: socket.socket | None = None
        self._buf = b""
        self._next_sent = False  # a GET next went out with the last POST (pipelined)

    def _connect(self) -> socket.socket:
        sock = socket.create_connection((self._host, self._port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._buf = b""
        return sock

    def _close(self) -> None:
        self._next_sent = False
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _head(self, method: str, path: str, body: bytes | None,
              headers: dict[str, str] | None) -> bytes:
        head = f"{method} {API_VERSION}{path} HTTP/1.1\r\nHost: {self._host}:{self._port}\r\n"
        for name, value in (headers or {}).items():
            head += f"{name}: {value}\r\n"
        if body is not None:
            head += f"Content-Length: {len(body)}\r\n"
        return head.encode("latin-1") + b"\r\n" + (body or b"")

    def _request(self, method: str, path: str, body: bytes | None = None,
                 headers: dict[str, str] | None = None,
                 then_next: bool = False) -> tuple[int, Headers, bytes]:
        """One request and its response. `then_next`: the GET of the next invocation goes out
        in the same write (HTTP/1.1 pipelining: one wakeup fewer on each side per invoke; the
        server then sends the 202 with the next invocation, in one write);
        next_invocation() then only reads its answer."""
        data = self._head(method, path, body, headers)
        if then_next:
            data += self._head("GET", NEXT_PATH, None, None)
        for attempt in (1, 2):
            fresh = self._sock is None
            try:
                if self._sock is None:
                    self._sock = self._connect()
                self._sock.sendall(data)
                answer = self._response()
                self._next_sent = then_next and self._sock is not None
                return answer
            except (ConnectionError, _Closed):
                self._close()
                if attempt == 2 or fresh:
                    raise
        raise AssertionError("unreachable")

    def _fill(self) -> None:
        assert self._sock is not None
        self._buf += _receive(self._sock)

    def _response(self) -> tuple[int, Headers, bytes]:
        while (end := self._buf.find(b"\r\n\r\n")) < 0:
            self._fill()
        lines = self._buf[:end].decode("latin-1").split("\r\n")
        self._buf = self._buf[end + 4:]
        status = int(lines[0].split(" ", 2)[1])
        headers = Headers()
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = self._chunked()
        else:
            length = int(headers.get("content-length") or 0)
            while len(self._buf) < length:
                self._fill()
            body, self._buf = self._buf[:length], self._buf[length:]
        if headers.get("connection", "").lower() == "close":
            self._close()
        return status, headers, body

    def _chunked(self) -> bytes:
        parts = []
        while True:
            while (eol := self._buf.find(b"\r\n")) < 0:
                self._fill()
            size = int(self._buf[:eol].split(b";")[0], 16)
            self._buf = self._buf[eol + 2:]
            while len(self._buf) < size + 2:
                self._fill()
            parts.append(self._buf[:size])
            self._buf = self._buf[size + 2:]
            if size == 0:
                return b"".join(parts)

    def next_invocation(self) -> tuple[Headers, bytes]:
        answer = None
        if self._next_sent:
            self._next_sent = False
            try:
                answer = self._response()
            except (ConnectionError, _Closed):
                self._close()  # asked again below, on a new connection
        status, headers, body = answer or self._request("GET", NEXT_PATH)
        if status != 200:
            raise RuntimeError(f"Runtime API /next answered {status}: {body[:200]!r}")
        return headers, body

    def post_response(self, request_id: str, payload: bytes) -> None:
        self._post(f"/runtime/invocation/{request_id}/response", payload, "application/json",
                   then_next=True)

    def post_error(self, request_id: str, error: dict[str, Any]) -> None:
        self._post(f"/runtime/invocation/{request_id}/error", dumps(error), "application/json",
                   error["errorType"], then_next=True)

    def post_init_error(self, error: dict[str, Any]) -> None:
        self._post("/runtime/init/error", dumps(error), "application/json",
                   error["errorType"])

    def _post(self, path: str, body: bytes, content_type: str,
              error_type: str | None = None, then_next: bool = False) -> None:
        # What the function printed goes before its result: the server attributes the output
        # to the invocation it is taking the result of (its 202 may come only with the next).
        sys.stdout.flush()
        sys.stderr.flush()
        headers = {"Content-Type": content_type}
        if error_type:
            # Header values must be latin-1; an exotic exception class name must not crash us.
            headers["Lambda-Runtime-Function-Error-Type"] = error_type.encode(
                "latin-1", "replace").decode("latin-1")
        status, _, answer = self._request("POST", path, body, headers, then_next)
        if status >= 300:
            sys.stderr.write(f"Runtime API {path} answered {status}: {answer[:200]!r}\n")


class FrameClient:
    """The same four calls over the socketpair the server hands its built-in Python runtimes
    (lambdaplane/sandbox/runtime_frames.py has the format): length-prefixed frames, no HTTP.
    The `next` goes out with each result, in one write, as RuntimeClient pipelines it."""

    _FRAME = struct.Struct("!IBH")
    _ANSWER = struct.Struct("!IHH")

    def __init__(self, fd: int) -> None:
        self._sock = socket.socket(fileno=fd)
        self._buf = b""
        self._next_sent = False

    def _frame(self, kind: bytes, head: str, body: bytes) -> bytes:
        raw = head.encode("utf-8", "replace")
        return self._FRAME.pack(3 + len(raw) + len(body), kind[0], len(raw)) + raw + body

    def _fill(self) -> None:
        self._buf += _receive(self._sock)

    def _answer(self) -> tuple[int, Headers, bytes]:
        while len(self._buf) < 8:
            self._fill()
        length, status, head_len = self._ANSWER.unpack_from(self._buf)
        while len(self._buf) < 4 + length:
            self._fill()
        head = self._buf[8:8 + head_len].decode("utf-8", "replace")
        body = self._buf[8 + head_len:4 + length]
        self._buf = self._buf[4 + length:]
        headers = Headers()
        for line in head.split("\r\n"):
            name, _, value = line.partition(":")
            if name:
                headers[name.strip().lower()] = value.strip()
        return status, headers, body

    def next_invocation(self) -> tuple[Headers, bytes]:
        if self._next_sent:
            self._next_sent = False
        else:
            self._sock.sendall(self._frame(b"N", "", b""))
        status, headers, body = self._answer()
        if status != 200:
            raise RuntimeError(f"Runtime API /next answered {status}: {body[:200]!r}")
        return headers, body

    def post_response(self, request_id: str, payload: bytes) -> None:
        self._post(b"R", request_id, payload, f"/runtime/invocation/{request_id}/response",
                   then_next=True)

    def post_error(self, request_id: str, error: dict[str, Any]) -> None:
        self._post(b"E", f"{request_id}\n{error['errorType']}", dumps(error),
                   f"/runtime/invocation/{request_id}/error", then_next=True)

    def post_init_error(self, error: dict[str, Any]) -> None:
        self._post(b"I", str(error["errorType"]), dumps(error), "/runtime/init/error")

    def _post(self, kind: bytes, head: str, body: bytes, path: str,
              then_next: bool = False) -> None:
        # What the function printed goes before its result (see RuntimeClient._post).
        sys.stdout.flush()
        sys.stderr.flush()
        data = self._frame(kind, head, body)
        if then_next:
            data += self._frame(b"N", "", b"")
        self._sock.sendall(data)
        self._next_sent = then_next
        status, _, answer = self._answer()
        if status >= 300:
            sys.stderr.write(f"Runtime API {path} answered {status}: {answer[:200]!r}\n")


def _default(value: Any) -> Any:
    cls = type(value)
    if cls.__name__ == "Decimal" and cls.__module__ == "decimal":
        return float(value)
    raise TypeError(f"Object of type {cls.__name__} is not JSON serializable")


def dumps(value: Any) -> bytes:
    return json.dumps(value, default=_default, ensure_ascii=False).encode()
