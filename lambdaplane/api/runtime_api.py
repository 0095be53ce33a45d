"""The Lambda Runtime API (`/2018-06-01/runtime/...`) that function runtimes long-poll.

Owns the HTTP listener inside the worker netns (its socket is created there on the NetThread,
then served by aiohttp on the event loop) and one `RuntimeChannel` per execution environment.
An environment is identified by the request's source address — the sandbox's own 100.64.x.y,
unforgeable thanks to the worker's reverse-path filter — and is only ever shown its own
invocations. Wire behaviour follows reference/aws-behaviour.md §4."""
from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web

from ..net import ns
from ..net.executor import NetThread
from ..sandbox.types import Invocation

log = logging.getLogger(__name__)

PREFIX = "/2018-06-01/runtime"
MAX_RESPONSE_BYTES = 6 * 1024 * 1024
_OK = {"status": "OK"}


@dataclass(frozen=True)
class Outcome:
    """How the runtime finished one invocation."""
    kind: str  # "response" | "error" | "init_error" | "too_large"
    body: bytes
    error_type: str | None = None


@dataclass
class PendingInvocation:
    invocation: Invocation
    function_arn: str
    deadline_ms: int  # epoch milliseconds
    outcome: asyncio.Future[Outcome]
    on_fetch: Callable[["PendingInvocation"], None] | None = None
    fetched_at: float | None = None  # time.monotonic() when the runtime took it

    @property
    def request_id(self) -> str:
        return self.invocation.request_id


class ChannelClosed(Exception):
    pass


@dataclass
class RuntimeChannel:
    """One environment's side of the Runtime API: invocations queued for its `next` poll and
    the one in progress (at most one: one invocation at a time per environment)."""
    address: str
    queued: deque[PendingInvocation] = field(default_factory=deque)
    current: PendingInvocation | None = None
    closed: bool = False
    init_error: Outcome | None = None  # posted before any invocation was queued
    _getter: asyncio.Future[None] | None = None

    def submit(self, invocation: Invocation, function_arn: str, deadline_ms: int,
               on_fetch: Callable[[PendingInvocation], None] | None = None
               ) -> PendingInvocation:
        pending = PendingInvocation(invocation, function_arn, deadline_ms,
                                    asyncio.get_running_loop().create_future(), on_fetch)
        if self.init_error is not None:
            pending.outcome.set_result(self.init_error)
            return pending
        self.queued.append(pending)
        self._wake()
        return pending

    async def next(self) -> PendingInvocation:
        while not self.queued:
            if self.closed:
                raise ChannelClosed
            self._getter = asyncio.get_running_loop().create_future()
            try:
                await self._getter
            finally:
                self._getter = None
        pending = self.queued.popleft()
        self.current = pending
        pending.fetched_at = time.monotonic()
        if pending.on_fetch is not None:
            pending.on_fetch(pending)
        return pending

    def finish(self, request_id: str, outcome: Outcome) -> bool:
        """Resolve the invocation in progress; False if `request_id` is not it."""
        pending = self.current
        if pending is None or pending.request_id != request_id or pending.outcome.done():
            return False
        pending.outcome.set_result(outcome)
        self.current = None
        return True

    def fail_init(self, outcome: Outcome) -> None:
        """An init error answers the invocation that is waiting for the runtime to come up."""
        target = self.current or (self.queued.popleft() if self.queued else None)
        if target is None:
            self.init_error = outcome
        elif not target.outcome.done():
            target.outcome.set_result(outcome)
        self.current = None

    def close(self) -> None:
        self.closed = True
        self._wake()

    def _wake(self) -> None:
        if self._getter is not None and not self._getter.done():
            self._getter.set_result(None)


def _error(status: int, error_type: str, message: str) -> web.Response:
    return web.json_response({"errorMessage": message, "errorType": error_type}, status=status)


def _invalid_request_id() -> web.Response:
    return _error(400, "InvalidRequestID", "Invalid request ID")


def _client_context(value: str | None) -> str | None:
    """X-Amz-Client-Context arrives base64-encoded; runtimes receive the JSON itself."""
    if not value:
        return None
    try:
        return base64.b64decode(value, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return value


async def _read_limited(request: web.Request, limit: int) -> bytes | None:
    """The body, or None once it exceeds `limit` (stop reading: it will be refused)."""
    if request.content_length is not None and request.content_length > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await request.content.read(256 * 1024)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)


class RuntimeApi:
    def __init__(self, net: NetThread, worker_netns: str, port: int) -> None:
        self.net = net
        self.worker_netns = worker_netns
        self.port = port
        self._channels: dict[str, RuntimeChannel] = {}
        self._runner: web.AppRunner | None = None

    # environments ------------------------------------------------------------------------
    def open_channel(self, address: str) -> RuntimeChannel:
        channel = RuntimeChannel(address)
        self._channels[address] = channel
        return channel

    def close_channel(self, address: str) -> None:
        channel = self._channels.pop(address, None)
        if channel is not None:
            channel.close()

    # lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        sock = await self.net.run(self._listen_in_worker)
        app = web.Application(client_max_size=MAX_RESPONSE_BYTES + 1024 * 1024,
                              middlewares=[_json_errors])
        app.router.add_get(f"{PREFIX}/invocation/next", self._next)
        app.router.add_post(f"{PREFIX}/invocation/{{request_id}}/response", self._response)
        app.router.add_post(f"{PREFIX}/invocation/{{request_id}}/error", self._invocation_error)
        app.router.add_post(f"{PREFIX}/init/error", self._init_error)
        # handler_cancellation: a long poll whose runtime died must not linger
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True,
                                     shutdown_timeout=0.5)
        await self._runner.setup()
        await web.SockSite(self._runner, sock).start()

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
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # handlers ----------------------------------------------------------------------------
    def _channel(self, request: web.Request) -> RuntimeChannel | None:
        return self._channels.get(request.remote or "")

    async def _next(self, request: web.Request) -> web.StreamResponse:
        channel = self._channel(request)
        if channel is None:
            return _error(403, "AccessDenied", "No execution environment at this address")
        try:
            pending = await channel.next()
        except ChannelClosed:
            return _error(410, "EnvironmentGone", "The execution environment is shutting down")
        inv = pending.invocation
        headers = {
            "Lambda-Runtime-Aws-Request-Id": inv.request_id,
            "Lambda-Runtime-Deadline-Ms": str(pending.deadline_ms),
            "Lambda-Runtime-Invoked-Function-Arn": pending.function_arn,
            "Lambda-Runtime-Trace-Id": inv.trace_id,
        }
        context = _client_context(inv.client_context)
        if context is not None:
            headers["Lambda-Runtime-Client-Context"] = context
        if inv.cognito_identity:
            headers["Lambda-Runtime-Cognito-Identity"] = inv.cognito_identity
        return web.Response(body=inv.payload, headers=headers, content_type="application/json")

    async def _response(self, request: web.Request) -> web.Response:
        channel = self._channel(request)
        request_id = request.match_info["request_id"]
        if channel is None or not _is_current(channel, request_id):
            return _invalid_request_id()
        body = await _read_limited(request, MAX_RESPONSE_BYTES)
        if body is None:
            # AWS answers the invoker with a function error and the runtime with 413.
            channel.finish(request_id, Outcome("too_large", json.dumps({
                "errorMessage": "Response payload size exceeded maximum allowed payload size "
                                f"({MAX_RESPONSE_BYTES} bytes).",
                "errorType": "Function.ResponseSizeTooLarge"}).encode(),
                "Function.ResponseSizeTooLarge"))
            return _error(413, "RequestEntityTooLarge",
                          f"Exceeded maximum allowed payload size ({MAX_RESPONSE_BYTES} bytes).")
        if not channel.finish(request_id, Outcome("response", body)):
            return _invalid_request_id()
        return web.json_response(_OK, status=202)

    async def _invocation_error(self, request: web.Request) -> web.Response:
        channel = self._channel(request)
        request_id = request.match_info["request_id"]
        if channel is None or not _is_current(channel, request_id):
            return _invalid_request_id()
        body = await _read_limited(request, MAX_RESPONSE_BYTES)
        outcome = _error_outcome("error", body or b"", request)
        if not channel.finish(request_id, outcome):
            return _invalid_request_id()
        return web.json_response(_OK, status=202)

    async def _init_error(self, request: web.Request) -> web.Response:
        channel = self._channel(request)
        if channel is None:
            return _error(403, "AccessDenied", "No execution environment at this address")
        body = await _read_limited(request, MAX_RESPONSE_BYTES)
        channel.fail_init(_error_outcome("init_error", body or b"", request))
        return web.json_response(_OK, status=202)


@web.middleware
async def _json_errors(request: web.Request, handler: Callable) -> web.StreamResponse:
    """Unknown paths and methods (and aiohttp's own refusals) in the Runtime API's JSON error
    shape, not aiohttp's text pages: runtimes parse every error body as JSON."""
    try:
        return await handler(request)
    except web.HTTPException as e:
        if e.status < 400:
            raise
        kind = {404: "InvalidURL", 405: "MethodNotAllowed", 413: "RequestEntityTooLarge"}.get(
            e.status, "InvalidRequest")
        return _error(e.status, kind, e.reason or "Invalid request")


def _is_current(channel: RuntimeChannel, request_id: str) -> bool:
    return channel.current is not None and channel.current.request_id == request_id


def _error_outcome(kind: str, body: bytes, request: web.Request) -> Outcome:
    """The error type: the runtime's header, else the body's errorType, else Unhandled."""
    error_type = request.headers.get("Lambda-Runtime-Function-Error-Type")
    if not error_type:
        with contextlib.suppress(ValueError, AttributeError):
            error_type = json.loads(body).get("errorType")
    if not body:
        body = json.dumps({"errorMessage": "Unknown error", "errorType": error_type or "Unhandled"}
                          ).encode()
    return Outcome(kind, body, error_type or "Unhandled")
