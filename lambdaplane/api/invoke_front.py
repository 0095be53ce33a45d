"""The HTTP front of the API port: a lean HTTP/1.1 reader for Invoke, aiohttp for the rest.

A warm invoke spent about a quarter of the server's CPU in aiohttp (its request and response
objects, URL parsing, routing and the app's middlewares; docs/warm-path.md). This protocol
reads each connection's requests itself; a plain `POST /2015-03-31/functions/NAME/invocations`
over HTTP/1.1 with a Content-Length body of at most 6 MB goes straight to `LambdaApi.answer`,
the same code that answers it behind aiohttp, and its answer is written here.

Any other request is aiohttp's: the connection's aiohttp protocol (made when first needed) is
fed that request whole, and serves it as it always did. Once aiohttp waits for the next request
again, an Invoke is the front's again, so a client that creates a function and then invokes it
on one connection (boto3 in one thread) still gets the front. A request whose end the front
cannot tell (chunked or `Expect` bodies, `Upgrade`, obsolete header folding, HTTP/1.0, a head
over 64 KB or a body over 6 MB) gives the connection to aiohttp for good, with the bytes read
so far. Under `--auth sigv4` every connection is aiohttp's from the start (the signature check
reads aiohttp's request).

One request at a time per connection, in order: bytes that arrive while an invoke runs wait
for its answer, and while aiohttp serves a request the ones after it go to aiohttp too
(pipelining keeps its order). A client that goes away mid-invoke does not cancel it (as behind
aiohttp: the invocation runs to its end and its answer is dropped). Connections idle for
KEEP_ALIVE_S are closed by a sweep, not by a timer per request (aiohttp's own timer while it
holds one)."""
from __future__ import annotations

import asyncio
import functools
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.utils import formatdate
from http import HTTPStatus
from typing import Any, Protocol, cast
from urllib.parse import parse_qsl

from aiohttp import web
from multidict import CIMultiDict

from ..service.invoke import SYNC_PAYLOAD_LIMIT
from .function_urls import HOST as FUNCTION_URL_HOST
from .wire import JSON_TYPE, WireResponse

INVOKE_PREFIX = b"/2015-03-31/functions/"
INVOKE_SUFFIX = b"/invocations"
HEAD_LIMIT = 64 * 1024  # a longer head goes to aiohttp (which answers 431 as it always did)
BODY_LIMIT = SYNC_PAYLOAD_LIMIT  # a longer body of another operation is streamed to aiohttp
KEEP_ALIVE_S = 75.0  # aiohttp's keepalive_timeout: an idle connection is closed after it
_HANDED_OVER = ("transfer-encoding", "expect", "upgrade")
_HANDED_OVER_BYTES = tuple(name.encode() for name in _HANDED_OVER)
# header lines: RFC 9110 field names, values of visible ASCII, spaces and tabs
_FIELD = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[\t\x20-\x7e]*"
_FIELDS = re.compile(f"{_FIELD}(?:\r\n{_FIELD})*")


class Answerer(Protocol):
    async def answer(self, method: str, raw_path: str, query: dict[str, str],
                     headers: Any, read_body: Callable[[str], Any],
                     base_url: str) -> tuple[WireResponse, str]: ...

    async def handle(self, request: web.Request) -> web.StreamResponse: ...


class _Date:
    """The Date header's value, made once a second."""

    def __init__(self) -> None:
        self.second = -1
        self.value = b""

    def now(self) -> bytes:
        second = int(time.time())
        if second != self.second:
            self.second, self.value = second, formatdate(second, usegmt=True).encode()
        return self.value


class InvokeFront:
    """The protocol factory for the API port (`loop.create_server(front.protocol, …)`).
    On connections aiohttp serves, an Invoke still skips the app's middlewares and router
    (`web.Server.request_handler` is wrapped): none of them has anything to do with it."""

    def __init__(self, api: Answerer, aiohttp_server: web.Server,
                 fast_path: bool = True) -> None:
        self.api = api
        self.aiohttp_factory: Callable[[], asyncio.Protocol] = aiohttp_server
        self.fast_path = fast_path  # off under --auth sigv4: the check needs aiohttp's request
        if fast_path:
            aiohttp_server.request_handler = _invoke_first(aiohttp_server.request_handler, api)
        self.connections: set[FrontConnection] = set()
        self.date = _Date()
        self._sweeper: asyncio.TimerHandle | None = None

    def protocol(self) -> asyncio.Protocol:
        if not self.fast_path:
            return self.aiohttp_factory()
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().call_later(KEEP_ALIVE_S / 5, self._sweep)
        return FrontConnection(self)

    def _sweep(self) -> None:
        idle_since = time.monotonic() - KEEP_ALIVE_S
        for conn in list(self.connections):
            if conn.task is None and conn.aiohttp is None and conn.last_active < idle_since:
                conn.close()
        self._sweeper = asyncio.get_running_loop().call_later(KEEP_ALIVE_S / 5, self._sweep)

    def close(self) -> None:
        """Stop the sweep and close the connections still ours (the server is stopping)."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for conn in list(self.connections):
            conn.close()


class FrontConnection(asyncio.Protocol):
    def __init__(self, front: InvokeFront) -> None:
        self.front = front
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.task: asyncio.Task[None] | None = None  # the invoke being answered
        self.aiohttp: Any = None  # aiohttp's protocol, while it serves requests of this one
        self.last_active = time.monotonic()
        self.closing = False
        self.paused = False

    # -- asyncio.Protocol ------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        self.front.connections.add(self)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self.last_active = time.monotonic()
        if self.task is None:
            self._next()
        elif len(self.buffer) > HEAD_LIMIT + SYNC_PAYLOAD_LIMIT and self.transport is not None:
            self.transport.pause_reading()  # pipelined past what one request may be
            self.paused = True

    def eof_received(self) -> bool | None:
        if self.aiohttp is not None:
            return cast(bool | None, self.aiohttp.eof_received())  # as if it were aiohttp's
        self.closing = True  # answer what was asked, then close
        if self.task is None:
            self.close()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.front.connections.discard(self)
        self.transport = None
        if self.aiohttp is not None:
            self.aiohttp.connection_lost(exc)
            self.aiohttp = None

    def pause_writing(self) -> None:
        if self.aiohttp is not None:
            self.aiohttp.pause_writing()

    def resume_writing(self) -> None:
        if self.aiohttp is not None:
            self.aiohttp.resume_writing()

    # -- requests ---------------------------------------------------------------------------
    def _next(self) -> None:
        """Start answering the buffered request if it is whole, give whole requests of other
        operations to aiohttp, or hand the connection over."""
        while True:
            if self.transport is None or not self.buffer:
                if self.closing:
                    self.close()
                return
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) > HEAD_LIMIT:
                    self._hand_over()
                return
            head = bytes(self.buffer[:end])
            request = _parse_head(head)
            ours = request is not None and self._without_aiohttp()
            length = request.length if request is not None else _body_length(head)
            if length is None:
                self._hand_over()
                return
            start = end + 4
            if len(self.buffer) < start + length:
                return  # the rest of the body is on its way
            whole = bytes(self.buffer[:start + length])
            del self.buffer[:start + length]
            if ours:
                assert request is not None
                self.task = asyncio.get_running_loop().create_task(
                    self._answer(request, whole[start:]))
                return
            self._aiohttp().data_received(whole)

    async def _answer(self, request: _Request, body: bytes) -> None:
        async def read_body(_operation: str) -> bytes:
            return body

        try:
            wire, request_id = await self.front.api.answer(
                "POST", request.path, request.query, request.headers, read_body,
                f"http://{request.headers.get('Host', '')}")
            if self.transport is not None:
                self.transport.write(_response(wire, request_id, self.front.date.now(),
                                               request.close or self.closing))
        finally:
            self.task = None
            self.last_active = time.monotonic()
        if request.close:
            self.close()
            return
        if self.paused and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()
        self._next()

    def _aiohttp(self) -> Any:
        """aiohttp's protocol on this connection, made now if there is none."""
        if self.aiohttp is None:
            self.aiohttp = self.front.aiohttp_factory()
            self.aiohttp.connection_made(self.transport)
        return self.aiohttp

    def _without_aiohttp(self) -> bool:
        """True if aiohttp has no part in this connection now: it has none, or it waits for
        its next request (it was fed whole requests only, so its parser holds nothing) and
        is let go here. False while it serves a request: what follows is aiohttp's too."""
        handler = self.aiohttp
        if handler is None:
            return True
        waiter = getattr(handler, "_waiter", None)
        if (waiter is None or waiter.done() or getattr(handler, "_messages", True)
                or getattr(handler, "_request_in_progress", True)
                or getattr(handler, "_payload_parser", True) is not None
                or getattr(handler, "_upgraded", True) or getattr(handler, "_force_close", True)
                or getattr(handler, "_close", True)):
            return False
        self.aiohttp = None
        handler.transport = None  # its connection_lost must not close the connection
        handler.connection_lost(None)  # ends its wait for a next request; it forgets us
        return True

    def _hand_over(self) -> None:
        """aiohttp serves this connection from here on, starting with the bytes buffered."""
        protocol = self._aiohttp()
        transport, data = self.transport, bytes(self.buffer)
        assert transport is not None
        self.front.connections.discard(self)
        self.transport = None
        self.aiohttp = None
        self.buffer = bytearray()
        transport.set_protocol(protocol)
        if data:
            protocol.data_received(data)
        if self.closing:
            protocol.eof_received()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


def _invoke_first(app_handler: Callable[[web.BaseRequest], Awaitable[web.StreamResponse]],
                  api: Answerer) -> Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]:
    async def handle(request: web.BaseRequest) -> web.StreamResponse:
        if request.method == "POST" and _invoke_path(request.rel_url.raw_path.encode()) \
                and not FUNCTION_URL_HOST.match(request.headers.get("Host", "").lower()):
            return await api.handle(request)  # type: ignore[arg-type]
        return await app_handler(request)
    return handle


def _invoke_path(path: bytes) -> bool:
    return (path.startswith(INVOKE_PREFIX) and path.endswith(INVOKE_SUFFIX)
            and b"/." not in path and b"//" not in path)


@dataclass(frozen=True, slots=True)
class _Request:
    path: str  # raw (percent-encoded), as aiohttp's rel_url.raw_path
    query: dict[str, str]  # the first value of each name
    headers: CIMultiDict[str]
    length: int  # of the body
    close: bool  # Connection: close


def _parse_head(head: bytes) -> _Request | None:
    """An Invoke this front answers, or None: aiohttp is to serve it."""
    request_line, _, fields = head.partition(b"\r\n")
    parts = request_line.split(b" ")
    if len(parts) != 3 or parts[0] != b"POST" or parts[2] != b"HTTP/1.1":
        return None
    path, _, query_string = parts[1].partition(b"?")
    if not _invoke_path(path) or b"#" in parts[1]:
        return None
    if not head.isascii():
        return None  # aiohttp decodes such values its own way
    text = fields.decode("ascii")
    if not _FIELDS.fullmatch(text):
        return None  # obsolete folding, a bad name, control characters: aiohttp's to judge
    headers: CIMultiDict[str] = CIMultiDict(
        [(name, value.strip(" \t")) for name, _, value in
         (line.partition(":") for line in text.split("\r\n"))])
    lengths = headers.getall("Content-Length", [])
    if len(lengths) != 1 or not lengths[0].isdigit() or int(lengths[0]) > SYNC_PAYLOAD_LIMIT:
        return None  # aiohttp reads it: its limits and AWS's 413 for a payload too large
    if any(name in headers for name in _HANDED_OVER) or len(headers.getall("Host", [])) != 1 \
            or FUNCTION_URL_HOST.match(headers["Host"].lower()):
        return None
    query = {}
    if query_string:
        for name, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True,
                                     encoding="utf-8"):
            query.setdefault(name, value)
    close = headers.get("Connection", "").lower() == "close"
    return _Request(path.decode("latin-1"), query, headers, int(lengths[0]), close)


def _body_length(head: bytes) -> int | None:
    """The body length of another operation's request, which aiohttp is fed whole; None when
    the front cannot tell where the request ends, or the body is over BODY_LIMIT."""
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or parts[2] != b"HTTP/1.1":
        return None
    length = 0
    lengths = 0
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        name = name.lower()
        if not colon or name != name.strip() or name in _HANDED_OVER_BYTES:
            return None  # folding, a bad name, a body or an exchange of another kind
        if name == b"content-length":
            value = value.strip(b" \t")
            lengths += 1
            if lengths > 1 or not value.isdigit():
                return None
            length = int(value)
    return length if length <= BODY_LIMIT else None


def _response(wire: WireResponse, request_id: str, date: bytes, close: bool) -> bytes:
    """The answer as aiohttp writes it for `lambda_api._response`."""
    head = [b"HTTP/1.1 %d %s" % (wire.status, _reason(wire.status)),
            b"x-amzn-RequestId: " + request_id.encode("latin-1")]
    head += [f"{name}: {value}".encode("latin-1") for name, value in wire.headers.items()]
    if wire.body or wire.status >= 400:
        head.append(b"Content-Type: " + JSON_TYPE.encode())
    if wire.status not in (204, 304):  # no Content-Length on a 204 (RFC 9110), as aiohttp
        head.append(b"Content-Length: %d" % len(wire.body))
    head.append(b"Date: " + date)
    if close:
        head.append(b"Connection: close")
    return b"\r\n".join(head) + b"\r\n\r\n" + wire.body


@functools.cache
def _reason(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b"Unknown"
