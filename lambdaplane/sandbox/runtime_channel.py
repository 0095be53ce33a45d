"""One execution environment's side of the Runtime API, without any HTTP: the invocations
queued for its runtime's `next` poll, the one in progress (at most one per environment), how it
finished (`Outcome`) and an init error posted before anything was queued.
sandbox/runtime_api.py serves these channels over HTTP; sandbox/environments.py submits to them."""
from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from .types import Invocation


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
    # connections' long polls (`on_next`), in order: called, not woken, when an invocation comes
    _deliveries: deque[Callable[[PendingInvocation | None], None]] = field(default_factory=deque)

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
        return self._take()

    def on_next(self, deliver: Callable[[PendingInvocation | None], None]) -> None:
        """A long poll without a task: `deliver` is called with the next invocation as soon
        as one is queued (at once if one is, else from `submit`), or with None once the
        channel is closed. `cancel_next` withdraws it."""
        if self.queued:
            deliver(self._take())
        elif self.closed:
            deliver(None)
        else:
            self._deliveries.append(deliver)

    def cancel_next(self, deliver: Callable[[PendingInvocation | None], None]) -> None:
        try:
            self._deliveries.remove(deliver)
        except ValueError:
            pass

    def next_nowait(self) -> PendingInvocation | None:
        """The next queued invocation without waiting, or None (then await `next`)."""
        return self._take() if self.queued else None

    def _take(self) -> PendingInvocation:
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
        while self._deliveries and self.queued:
            self._deliveries.popleft()(self._take())
        if self.closed:  # from the loop: whoever closes the channel drops its connections too
            loop = asyncio.get_running_loop()
            while self._deliveries:
                loop.call_soon(self._deliveries.popleft(), None)
        if self._getter is not None and not self._getter.done():
            self._getter.set_result(None)
