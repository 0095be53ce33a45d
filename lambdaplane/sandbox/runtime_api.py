"""The Lambda Runtime API (`/2018-06-01/runtime/...`) that function runtimes long-poll.

Owns the HTTP listener inside the worker netns (its socket is created there on the NetThread,
then served on the event loop by a small asyncio.Protocol speaking just the HTTP/1.1 this API
needs: Content-Length and chunked bodies, keep-alive, pipelining (a 202 held back to go out with
the answer of the `next` pipelined behind it), 100-continue — three requests per invoke go
through here, so a general web framework's per-request work is a visible share of an invoke),
the routing of its paths, and one `RuntimeChannel` per execution environment (the channel itself
is sandbox/runtime_channel.py; the HTTP parsing and encoding, sandbox/runtime_http.py).
An environment is identified by the request's source address — the sandbox's own 100.64.x.y,
unforgeable thanks to the worker's reverse-path filter — and is only ever shown its own
invocations. Wire behaviour follows reference/aws-behaviour.md §4."""
from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from typing import TYPE_CHECKING
from urllib.parse import unquote

from ..net import ns
from ..net.executor import NetThread
from .runtime_channel import ChannelClosed, Outcome, PendingInvocation, RuntimeChannel
from .runtime_http import ChunkedBody, ChunkedRequest, encode_response, parse_head
from .runtime_protocol import Answer, RuntimeConnection, error_answer, next_answer

if TYPE_CHECKING:
    from .runtime_frames import FrameConnection

__all__ = ["MAX_RESPONSE_BYTES", "ChannelClosed", "Outcome", "PendingInvocation", "RuntimeApi",
           "RuntimeChannel"]

PREFIX = "/2018-06-01/runtime"
MAX_RESPONSE_BYTES = 6 * 1024 * 1024
_OK = b'{"status": "OK"}'
MAX_HEAD_BYTES = 16 * 1024  # request line + headers; the runtimes' are a few hundred bytes
INVOCATION = f"{PREFIX}/invocation/"
INIT_ERROR = f"{PREFIX}/init/error"
_NEXT_REQUEST = f"GET {INVOCATION}next ".encode()


def _invalid_request_id() -> Answer:
    return error_answer(400, "InvalidRequestID", "Invalid request ID")


class RuntimeApi:
    def __init__(self, net: NetThread, worker_netns: str, port: int) -> None:
        self.net = net
        self.worker_netns = worker_netns
        self.port = port
        self._channels: dict[str, RuntimeChannel] = {}
        self._server: asyncio.AbstractServer | None = None
        self._connections: set[_Connection] = set()
        # the built-in Python runtimes' socketpairs (runtime_frames.py), by environment address
        self._frame_connections: dict[str, set[FrameConnection]] = {}

    # environments ------------------------------------------------------------------------
    def open_channel(self, address: str) -> RuntimeChannel:
        channel = RuntimeChannel(address)
        self._channels[address] = channel
        return channel

    def close_channel(self, address: str) -> None:
        channel = self._channels.pop(address, None)
        if channel is not None:
            channel.close()
        for conn in list(self._frame_connections.pop(address, ())):
            conn.abort()

    # lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        sock = await self.net.run(self._listen_in_worker)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Connection(self), sock=sock)

    def _listen_in_worker(self) -> socket.socket:
        # A socket belongs to the namespace it was created in: create it inside the worker.
        # 0.0.0.0 because 169.254.1.1 exists only once a sandbox veth does; the worker's nft
        # input chain admits only sandboxes, and only to 169.254.1.1:9001.
        with ns.entered(self.worker_netns):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("0.0.0.0", self.port))
        sock.listen(1024)
        sock.setblocking(False)
        return sock

    async def stop(self) -> None:
        for address in list(self._channels):
            self.close_channel(address)
        for frame_conns in list(self._frame_connections.values()):
            for frame_conn in list(frame_conns):
                frame_conn.abort()
        if self._server is not None:
            self._server.close()
            for conn in list(self._connections):
                conn.abort()
            await self._server.wait_closed()
            self._server = None

    # requests ----------------------------------------------------------------------------
    def dispatch(self, conn: RuntimeConnection, method: str, path: str,
                 headers: dict[str, str], body: bytes | None) -> Answer | None:
        """The answer (status, JSON body, extra header lines), or None when `next` must wait
        (the connection then awaits `channel.next()` itself). `body` is None when it was
        over the limit and not read."""
        channel = self._channels.get(conn.remote)
        if path.startswith(INVOCATION):
            rest = path[len(INVOCATION):]
            if rest == "next":
                if method != "GET":
                    return error_answer(405, "MethodNotAllowed", "Method Not Allowed")
                if channel is None:
                    return error_answer(403, "AccessDenied",
                                        "No execution environment at this address")
                pending = channel.next_nowait()
                return None if pending is None else next_answer(pending)
            request_id, _, what = rest.rpartition("/")
            if request_id and "/" not in request_id and what in ("response", "error"):
                if method != "POST":
                    return error_answer(405, "MethodNotAllowed", "Method Not Allowed")
                request_id = unquote(request_id, errors="replace")
                if what == "response":
                    return self._response(channel, request_id, body)
                return self._invocation_error(channel, request_id, headers, body)
        elif path == INIT_ERROR:
            if method != "POST":
                return error_answer(405, "MethodNotAllowed", "Method Not Allowed")
            if channel is None:
                return error_answer(403, "AccessDenied",
                                    "No execution environment at this address")
            channel.fail_init(_error_outcome("init_error", body or b"", headers))
            return 202, _OK, ""
        return error_answer(404, "InvalidURL", "Not Found")

    def _response(self, channel: RuntimeChannel | None, request_id: str,
                  body: bytes | None) -> Answer:
        if channel is None or not _is_current(channel, request_id):
            return _invalid_request_id()
        if body is None:
            # AWS answers the invoker with a function error and the runtime with 413.
            channel.finish(request_id, Outcome("too_large", json.dumps({
                "errorMessage": "Response payload size exceeded maximum allowed payload size "
                                f"({MAX_RESPONSE_BYTES} bytes).",
                "errorType": "Function.ResponseSizeTooLarge"}).encode(),
                "Function.ResponseSizeTooLarge"))
            return error_answer(
                413, "RequestEntityTooLarge",
                f"Exceeded maximum allowed payload size ({MAX_RESPONSE_BYTES} bytes).")
        if not channel.finish(request_id, Outcome("response", body)):
            return _invalid_request_id()
        return 202, _OK, ""

    def _invocation_error(self, channel: RuntimeChannel | None, request_id: str,
                          headers: dict[str, str], body: bytes | None) -> Answer:
        if channel is None or not _is_current(channel, request_id):
            return _invalid_request_id()
        if not channel.finish(request_id, _error_outcome("error", body or b"", headers)):
            return _invalid_request_id()
        return 202, _OK, ""


class _Connection(RuntimeConnection):
    """One runtime's keep-alive HTTP connection: requests are answered strictly in order; a
    `next` that has to wait holds the requests pipelined behind it until it is answered
    (runtime_protocol.py)."""

    hold_limit = MAX_RESPONSE_BYTES + MAX_HEAD_BYTES

    def __init__(self, api: RuntimeApi) -> None:
        super().__init__(api, "")
        self.continued = False  # 100 Continue sent for the request at the head of `buf`
        self.chunked: ChunkedRequest | None = None  # a chunked body being read

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        self.remote = peer[0] if peer else ""
        super().connection_made(transport)

    def _register(self) -> None:
        self.api._connections.add(self)

    def _unregister(self) -> None:
        self.api._connections.discard(self)

    def _swallow(self, data: bytes) -> bytes:
        """A refused body is swallowed, then the connection closed: nothing after it is read."""
        self.discard -= min(self.discard, len(data))
        if not self.discard and self.transport is not None:
            self.transport.close()
        return b""

    def _serve(self) -> None:
        while self.transport is not None and self.waiting is None and self.buf:
            if self.chunked is not None:
                if not self._read_chunked():
                    return
                continue
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buf) > MAX_HEAD_BYTES:
                    self._refuse(400, "InvalidRequest", "Request header too large")
                return
            if end > MAX_HEAD_BYTES:
                self._refuse(400, "InvalidRequest", "Request header too large")
                return
            try:
                method, path, headers, keep_alive = parse_head(bytes(self.buf[:end]))
                encoding = headers.get("transfer-encoding")
                if encoding is not None and (encoding.lower() != "chunked"
                                             or "content-length" in headers):
                    raise ValueError("only chunked or Content-Length bodies")
                length = int(headers.get("content-length", "0"))
                if length < 0:
                    raise ValueError("negative Content-Length")
            except (ValueError, UnicodeDecodeError):
                self._refuse(400, "InvalidRequest", "Bad Request")
                return
            start = end + 4
            if encoding is not None:
                del self.buf[:start]
                self.chunked = ChunkedRequest(method, path, headers, keep_alive,
                                              ChunkedBody(MAX_RESPONSE_BYTES))
                if headers.get("expect", "").lower() == "100-continue":
                    self._raw(b"HTTP/1.1 100 Continue\r\n\r\n")
                continue
            if length > MAX_RESPONSE_BYTES:
                # refused unread, as the old server did: answer now, swallow the rest, close
                del self.buf[:start]
                swallowed = min(length, len(self.buf))
                self.buf.clear()
                answer = (self.api.dispatch(self, method, path, headers, None)
                          if method == "POST" else None)
                self._write(*(answer or error_answer(413, "RequestEntityTooLarge",
                                                     "Request Entity Too Large")), close=False)
                self.discard = length - swallowed
                if not self.discard and self.transport is not None:
                    self.transport.close()
                return
            if len(self.buf) < start + length:
                if (not self.continued and headers.get("expect", "").lower() == "100-continue"
                        and self.transport is not None):
                    self.continued = True
                    self._raw(b"HTTP/1.1 100 Continue\r\n\r\n")
                return  # the rest of the body is still on its way
            body = bytes(self.buf[start:start + length])
            del self.buf[:start + length]
            self.continued = False
            self._answer(method, path, headers, body, keep_alive, hold=method == "POST"
                         and self.buf.startswith(_NEXT_REQUEST) and b"\r\n\r\n" in self.buf)

    def _answer(self, method: str, path: str, headers: dict[str, str], body: bytes,
                keep_alive: bool, hold: bool = False) -> None:
        answer = self.api.dispatch(self, method, path, headers, body)
        if hold and keep_alive and answer is not None and answer[0] == 202:
            self.held += encode_response(*answer, close=False)
            return
        if answer is None:
            self._long_poll(keep_alive)
            return
        self._write(*answer, close=not keep_alive)

    def _read_chunked(self) -> bool:
        """Decode what has arrived of a chunked body; True once the request was answered.
        Over the limit, the runtime is answered at once (413, as for a Content-Length body),
        the rest of the body is swallowed and the connection closed after it."""
        request = self.chunked
        assert request is not None
        try:
            done = request.body.feed(self.buf)
        except ValueError:
            self.chunked = None
            self._refuse(400, "InvalidRequest", "Bad Request")
            return False
        if request.body.too_large and not request.answered:
            request.answered = True
            answer = (self.api.dispatch(self, request.method, request.path, request.headers, None)
                      if request.method == "POST" else None)
            self._write(*(answer or error_answer(413, "RequestEntityTooLarge",
                                                 "Request Entity Too Large")), close=False)
        if not done:
            return False
        self.chunked = None
        if request.answered:
            self.buf.clear()
            if self.transport is not None:
                self.transport.close()
            return False
        self._answer(request.method, request.path, request.headers, bytes(request.body.data),
                     request.keep_alive)
        return True

    def _refuse(self, status: int, kind: str, message: str) -> None:
        self.buf.clear()
        self._write(*error_answer(status, kind, message)[:2], "", close=True)

    def _write(self, status: int, body: bytes, extra: str, close: bool = False) -> None:
        if self.transport is None:
            return
        data = encode_response(status, body, extra, close)
        if self.held:  # answers go out in order: a held 202 first
            data, self.held = self.held + data, b""
        self.transport.write(data)
        if close:
            self.transport.close()

    def _raw(self, data: bytes) -> None:
        if self.transport is not None:
            data, self.held = self.held + data, b""
            self.transport.write(data)


def _is_current(channel: RuntimeChannel, request_id: str) -> bool:
    return channel.current is not None and channel.current.request_id == request_id


def _error_outcome(kind: str, body: bytes, headers: dict[str, str]) -> Outcome:
    """The error type: the runtime's header, else the body's errorType, else Unhandled."""
    error_type = headers.get("lambda-runtime-function-error-type")
    if not error_type:
        with contextlib.suppress(ValueError, AttributeError):
            error_type = json.loads(body).get("errorType")
    if not body:
        body = json.dumps({"errorMessage": "Unknown error", "errorType": error_type or "Unhandled"}
                          ).encode()
    return Outcome(kind, body, error_type or "Unhandled")
