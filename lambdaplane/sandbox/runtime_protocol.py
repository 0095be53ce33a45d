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
from collections.abc import Callable
from typing import TYPE_CHECKING

from .runtime_channel import PendingInvocation, RuntimeChannel

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
        # a `next` waiting for an invocation: its delivery and the channel it waits on
        self.waiting: Callable[[PendingInvocation | None], None] | None = None
        self.waiting_on: RuntimeChannel | None = None
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
        if self.waiting is not None and self.waiting_on is not None:
            self.waiting_on.cancel_next(self.waiting)
            self.waiting = self.waiting_on = None

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
        """`next` has to wait for an invocation (RuntimeApi.dispatch answered None): the
        channel calls back with it (no task, no loop round trip between the invoke that
        queues it and the answer written to the runtime)."""
        channel = self.api._channels.get(self.remote)
        assert channel is not None

        def deliver(pending: PendingInvocation | None) -> None:
            self.waiting = self.waiting_on = None
            self._polled(pending, keep_alive)

        self.waiting, self.waiting_on = deliver, channel
        channel.on_next(deliver)

    def _polled(self, pending: PendingInvocation | None, keep_alive: bool = True) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        if pending is None:
            answer = error_answer(410, "EnvironmentGone",
                                  "The execution environment is shutting down")
        else:
            answer = next_answer(pending)
        self._write(*answer, close=not keep_alive)
        if self.transport is not None and not self.transport.is_reading():
            self.transport.resume_reading()
        if self.buf:  # requests held behind the poll: answered from the loop, not from inside
            asyncio.get_running_loop().call_soon(self._serve_held)  # the invoke that came

    def _serve_held(self) -> None:
        if self.transport is not None and self.waiting is None:
            self._serve()

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
