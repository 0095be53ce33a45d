"""What the Runtime API's two server-side transports share (runtime_api.py's HTTP connection,
runtime_frames.py's socketpair): one asyncio.Protocol base for a runtime's connection — its
life (registered with the RuntimeApi while open; a long poll whose runtime went away is
cancelled, so it cannot take an invocation), a body over the limit swallowed, reading paused
while requests queue behind a waiting `next`, and the long poll itself with its answer — and
the answers both send: an error, and a `next`'s invocation as header lines."""
from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
from typing import TYPE_CHECKING

from .runtime_channel import ChannelClosed, PendingInvocation

if TYPE_CHECKING:
    from .runtime_api import RuntimeApi

log = logging.getLogger(__name__)

Answer = tuple[int, bytes, str]  # status, JSON body, extra header lines ("Name: value" CRLF)


def error_answer(status: int, error_type: str, message: str) -> Answer:
    return status, json.dumps({"errorMessage": message, "errorType": error_type}).encode(), ""


def _client_context(value: str | None) -> str | None:
    """X-Amz-Client-Context arrives base64-encoded; runtimes receive the JSON itself."""
    if not value:
        return None
    try:
        return base64.b64decode(value, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return value


def _header_value(value: str) -> str:
    # values partly come from the invoker (client context): never let them end the header
    return value.replace("\r", " ").replace("\n", " ").replace("\0", " ")


def next_answer(pending: PendingInvocation) -> Answer:
    """A `next`'s answer: the invocation's payload, its ids and deadline as headers."""
    inv = pending.invocation
    lines = [f"Lambda-Runtime-Aws-Request-Id: {_header_value(inv.request_id)}\r\n",
             f"Lambda-Runtime-Deadline-Ms: {pending.deadline_ms}\r\n",
             f"Lambda-Runtime-Invoked-Function-Arn: {_header_value(pending.function_arn)}\r\n",
             f"Lambda-Runtime-Trace-Id: {_header_value(inv.trace_id)}\r\n"]
    context = _client_context(inv.client_context)
    if context is not None:
        lines.append(f"Lambda-Runtime-Client-Context: {_header_value(context)}\r\n")
    if inv.cognito_identity:
        lines.append(f"Lambda-Runtime-Cognito-Identity: {_header_value(inv.cognito_identity)}\r\n")
    return 200, inv.payload, "".join(lines)


class RuntimeConnection(asyncio.Protocol):
    """One runtime's connection to the Runtime API: requests are answered strictly in order;
    a `next` that has to wait (`waiting`) holds the requests behind it until it is answered.
    Subclasses parse their wire format in `_serve`, write answers with `_write`, and say where
    the RuntimeApi keeps them (`_register`, `_unregister`)."""

    hold_limit = 0  # bytes queued behind a waiting `next` before reading pauses

    def __init__(self, api: RuntimeApi, remote: str) -> None:
        self.api = api
        self.remote = remote  # the environment's address: RuntimeApi.dispatch finds its channel
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.waiting: asyncio.Task[PendingInvocation] | None = None
        self.discard = 0  # bytes of an over-limit body still to swallow
        # A 202 for a result whose runtime sent its next `next` right behind it: sent with
        # that request's answer, in one write (one wakeup of the runtime, not two).
        self.held = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # (uvloop's transports are not asyncio.Transport subclasses; same methods)
        self.transport = transport  # type: ignore[assignment]
        self._register()

    def connection_lost(self, exc: Exception | None) -> None:
        self._unregister()
        self.transport = None
        # a long poll whose runtime went away must not linger (nor take an invocation)
        if self.waiting is not None:
            self.waiting.cancel()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        if self.discard:
            data = self._swallow(data)
            if not data:
                return
        self.buf += data
        if self.waiting is None:
            self._serve()
        elif len(self.buf) > self.hold_limit and self.transport is not None:
            self.transport.pause_reading()  # queued behind a long poll: hold, don't hoard

    def _swallow(self, data: bytes) -> bytes:
        """What follows the over-limit body being swallowed (`discard` bytes still to go)."""
        take = min(self.discard, len(data))
        self.discard -= take
        return data[take:]

    def _long_poll(self, keep_alive: bool = True) -> None:
        """`next` has to wait for an invocation (RuntimeApi.dispatch answered None)."""
        channel = self.api._channels.get(self.remote)
        assert channel is not None
        self.waiting = asyncio.ensure_future(channel.next())
        self.waiting.add_done_callback(self._polled if keep_alive else self._polled_then_close)

    def _polled(self, task: asyncio.Task[PendingInvocation], keep_alive: bool = True) -> None:
        self.waiting = None
        if task.cancelled() or self.transport is None:
            return
        exc = task.exception()
        if isinstance(exc, ChannelClosed):
            answer = error_answer(410, "EnvironmentGone",
                                  "The execution environment is shutting down")
        elif exc is not None:
            log.error("Runtime API next failed", exc_info=exc)
            answer = error_answer(500, "ServiceException", "Internal error")
        else:
            answer = next_answer(task.result())
        self._write(*answer, close=not keep_alive)
        if self.transport is not None and not self.transport.is_reading():
            self.transport.resume_reading()
        self._serve()

    def _polled_then_close(self, task: asyncio.Task[PendingInvocation]) -> None:
        self._polled(task, keep_alive=False)

    # what a transport provides -------------------------------------------------------------
    def _register(self) -> None:
        raise NotImplementedError

    def _unregister(self) -> None:
        raise NotImplementedError

    def _serve(self) -> None:
        """Answer what `buf` holds, in order, until a `next` has to wait."""
        raise NotImplementedError

    def _write(self, status: int, body: bytes, extra: str, close: bool = False) -> None:
        """One answer (after a held 202, if any); `close`: then close the connection."""
        raise NotImplementedError
