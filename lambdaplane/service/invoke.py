"""Invoke: the three invocation types, payload limits, concurrency admission (reserved caps and
the account's unreserved pool) and asynchronous events — written to the store before the 202,
run by background workers, retried on function error (twice, or the function's
MaximumRetryAttempts), dropped past their MaximumEventAgeInSeconds, their records sent to the
OnSuccess / OnFailure destination, resumed after a restart (at-least-once, same request id).
Events wait in the store's Event queue (store/events.py), claimed by this process under a
lease it renews, so several `serve` processes sharing one PostgreSQL database never run one
event together. Execution itself is `environments.invoke`. No HTTP here."""
from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import socket
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Protocol

from ..config import Settings
from ..errors import (AwsError, InvalidRequestContent, RequestTooLarge,
                      ServiceError, too_many_requests)
from ..sandbox.types import FunctionSpec, Invocation, InvocationResult
from ..store.db import Database
from ..store.event_invoke_config import EventInvokeConfig
from ..store.event_wakeups import EventListener
from ..store.events import DEFAULT_CLAIM_LEASE_S, EventStore, QueuedEvent
from ..store.functions import FunctionRecord
from .event_invoke_config import LATEST, destination_record
from .functions import FunctionService
from .request_ids import new_request_id

log = logging.getLogger("lambdaplane.invoke")

SYNC_PAYLOAD_LIMIT = 6 * 1024 * 1024  # 6,291,456 bytes, request and response
ASYNC_PAYLOAD_LIMIT = 1024 * 1024  # 1 MB since late 2025 (256 KB before)
LOG_TAIL_BYTES = 4096
EVENT_WORKERS = 16
THROTTLED_EVENT_DELAY_S = 1.0
RETRY_AFTER_S = 1
EVENT_POLL_S = 1.0  # events another process queued, or whose claimer died, are seen this soon
CLAIM_RACE_PAUSE_S = 0.05


class Environments(Protocol):
    async def invoke(self, spec: FunctionSpec, inv: Invocation) -> InvocationResult: ...


@dataclass
class InvokeOutcome:
    status: int  # 200 RequestResponse, 202 Event, 204 DryRun
    request_id: str
    payload: bytes = b""
    function_error: str | None = None
    log_result: str | None = None  # base64 of the log tail, for LogType=Tail
    executed_version: str | None = None


@dataclass(frozen=True)
class Slot:
    """A held unit of concurrency; released exactly once."""
    region: str
    name: str
    reserved: bool


class Admission:
    """In-flight counts. A function with reserved concurrency is capped by it and does not use
    the region's unreserved pool; every other function shares `account − Σ reservations`."""

    def __init__(self) -> None:
        self.per_function: Counter[tuple[str, str]] = Counter()
        self.unreserved: Counter[str] = Counter()

    def acquire(self, record: FunctionRecord, unreserved_capacity: int) -> Slot:
        key = (record.region, record.name)
        if record.reserved_concurrency is not None:
            if self.per_function[key] >= record.reserved_concurrency:
                raise too_many_requests("Rate Exceeded.",
                                        "ReservedFunctionConcurrentInvocationLimitExceeded",
                                        RETRY_AFTER_S)
            self.per_function[key] += 1
            return Slot(record.region, record.name, True)
        if self.unreserved[record.region] >= unreserved_capacity:
            raise too_many_requests("Rate Exceeded.", "ConcurrentInvocationLimitExceeded",
                                    RETRY_AFTER_S)
        self.per_function[key] += 1
        self.unreserved[record.region] += 1
        return Slot(record.region, record.name, False)

    def release(self, slot: Slot) -> None:
        key = (slot.region, slot.name)
        self.per_function[key] -= 1
        if self.per_function[key] <= 0:
            del self.per_function[key]
        if not slot.reserved:
            self.unreserved[slot.region] -= 1

    def in_flight(self, region: str) -> int:
        return sum(n for (r, _), n in self.per_function.items() if r == region)


class Invoker:
    def __init__(self, settings: Settings, db: Database, functions: FunctionService,
                 environments: Environments) -> None:
        self.settings = settings
        self.functions = functions
        self.environments = environments
        self.events = EventStore(db)
        self.claimer = event_claimer_id(settings)
        self.claim_lease_s = DEFAULT_CLAIM_LEASE_S
        self.admission = Admission()
        self._wake = asyncio.Event()
        self._running: dict[int, asyncio.Task[None]] = {}
        self._dispatcher: asyncio.Task[None] | None = None
        self._renewer: asyncio.Task[None] | None = None
        self._listener: EventListener | None = None

    async def start(self) -> None:
        # Events accepted before a stop or crash are still queued: the dispatcher runs them.
        # What this server held when it died is its own again at once (not after the lease).
        self.events.release_claims(self.claimer)
        loop = asyncio.get_running_loop()
        if self.settings.database and self.events.db.dialect.name == "postgresql":
            # events queued by another server sharing the database wake this one too
            self._listener = EventListener(
                self.settings.database, lambda: loop.call_soon_threadsafe(self._wake.set))
            await loop.run_in_executor(None, self._listener.start)
        self._dispatcher = loop.create_task(self._dispatch())
        self._renewer = loop.create_task(self._renew_claims())

    async def stop(self) -> None:
        if self._listener is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._listener.stop)
            self._listener = None
        tasks = list(self._running.values())
        for background in (self._dispatcher, self._renewer):
            if background is not None:
                tasks.append(background)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._dispatcher = self._renewer = None
        self.events.release_claims(self.claimer)  # unfinished events: for the next claimer

    # -- the Invoke operation ----------------------------------------------------------------
    async def invoke(self, region: str, ref: str, qualifier: str | None, invocation_type: str,
                     payload: bytes, log_type: str = "None",
                     client_context: str | None = None) -> InvokeOutcome:
        record, invoked_arn = self.functions.target(region, ref, qualifier)
        request_id = new_request_id()
        limit = ASYNC_PAYLOAD_LIMIT if invocation_type == "Event" else SYNC_PAYLOAD_LIMIT
        if len(payload) > limit:
            operation = "InvokeAsync" if invocation_type == "Event" else "InvokeFunction"
            raise RequestTooLarge(
                f"Request must be smaller than {limit} bytes for the {operation} operation")
        payload = _checked_json(payload)
        self.functions.check_invocable(record)
        if invocation_type == "DryRun":
            return InvokeOutcome(204, request_id)
        if invocation_type == "Event":
            # a qualified invoke queues name:qualifier; the attempt resolves it again
            queued_name = record.name if invoked_arn == self.functions.arn(region, record.name) \
                else f"{record.name}:{invoked_arn.rsplit(':', 1)[1]}"
            self.events.enqueue(request_id, region, queued_name, payload, client_context)
            self._wake.set()
            return InvokeOutcome(202, request_id)
        result = await self._run(record, Invocation(request_id, payload, client_context,
                                                    function_arn=invoked_arn))
        outcome = InvokeOutcome(200, request_id, result.payload, result.function_error,
                                executed_version=record.version)
        if len(result.payload) > SYNC_PAYLOAD_LIMIT:
            outcome.payload = json.dumps({
                "errorMessage": "Response payload size exceeded maximum allowed payload size "
                                f"({SYNC_PAYLOAD_LIMIT} bytes).",
                "errorType": "Function.ResponseSizeTooLarge"}).encode()
            outcome.function_error = "Unhandled"
        if log_type == "Tail":
            tail = result.log_text.encode()[-LOG_TAIL_BYTES:]
            outcome.log_result = base64.b64encode(tail).decode()
        return outcome

    async def _run(self, record: FunctionRecord, invocation: Invocation) -> InvocationResult:
        slot = self.admission.acquire(record, self.functions.unreserved_capacity(record.region))
        try:
            return await self.environments.invoke(self.functions.serving_spec(record),
                                                  invocation)
        except AwsError:
            raise
        except Exception:
            log.exception("invoking %s (request %s) failed", record.arn, invocation.request_id)
            raise ServiceError("The Lambda service encountered an internal error while running "
                               "the function.") from None
        finally:
            self.admission.release(slot)

    # -- asynchronous events -----------------------------------------------------------------
    async def _dispatch(self) -> None:
        while True:
            self._wake.clear()
            free = EVENT_WORKERS - len(self._running)
            claimed: list[QueuedEvent] = []
            if free > 0:
                claimed = self.events.claim(self.claimer, time.time(), free, self.claim_lease_s)
                for event in claimed:
                    if event.id in self._running:
                        continue  # ours already (its lease was renewed late)
                    task = asyncio.get_running_loop().create_task(self._run_event(event))
                    self._running[event.id] = task
            next_at = self.events.next_due_at(time.time())
            timeout = EVENT_POLL_S if next_at is None else \
                min(max(next_at - time.time(), 0.0), EVENT_POLL_S)
            if next_at is not None and timeout == 0.0 and len(self._running) >= EVENT_WORKERS:
                timeout = EVENT_POLL_S  # all workers busy: a finishing one wakes us
            elif next_at is not None and timeout == 0.0 and not claimed:
                timeout = CLAIM_RACE_PAUSE_S  # due, but another server is claiming it now
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except asyncio.TimeoutError:
                pass

    async def _renew_claims(self) -> None:
        """Keep the leases of the events this server is running (an attempt may take up to
        the function's timeout); renewed three times per lease."""
        while True:
            await asyncio.sleep(self.claim_lease_s / 3)
            if self._running:
                try:
                    self.events.renew_claims(self.claimer, time.time(), self.claim_lease_s)
                except Exception:  # noqa: BLE001 - the database may be back next time
                    log.exception("renewing the event claims of %s failed", self.claimer)

    async def _run_event(self, event: QueuedEvent) -> None:
        try:
            await self._attempt_event(event)
        except asyncio.CancelledError:
            raise  # stopping: the event stays queued and runs after the restart
        except Exception:  # noqa: BLE001 - one bad event must not stop the worker pool
            log.exception("event %s failed unexpectedly", event.request_id)
            self.events.retry_later(event.id, time.time() + THROTTLED_EVENT_DELAY_S,
                                    event.attempts, "ServiceException", self.claimer)
        finally:
            self._running.pop(event.id, None)
            self._wake.set()

    async def _attempt_event(self, event: QueuedEvent) -> None:
        try:
            record, invoked_arn = self.functions.target(event.region, event.name)
        except AwsError:
            record = None
        if record is None:
            log.info("dropping event %s: function %s was deleted", event.request_id, event.name)
            self.events.finish(event.id, "dropped", event.attempts, None,
                               claimer=self.claimer)
            return
        name, _, qualifier = event.name.partition(":")  # a qualified invoke queued name:qualifier
        retries, max_age_s, config = self.functions.event_invoke_configs.for_event(
            event.region, name, qualifier or LATEST)
        if time.time() - event.accepted_at > max_age_s:
            log.info("dropping event %s for %s: older than %d s", event.request_id, record.arn,
                     max_age_s)
            self._finish_event(event, record, config, "dropped", event.attempts,
                               "EventAgeExceeded", None)
            return
        try:
            self.functions.check_invocable(record)
            result = await self._run(record, Invocation(event.request_id, event.payload,
                                                        event.client_context,
                                                        function_arn=invoked_arn))
        except AwsError as e:
            if e.code in ("TooManyRequestsException", "ResourceConflictException",
                          "ResourceNotReadyException"):
                # Throttled or not ready: AWS keeps the event and tries later, not an attempt.
                self.events.retry_later(event.id, time.time() + THROTTLED_EVENT_DELAY_S,
                                        event.attempts, e.code, self.claimer)
                return
            result = InvocationResult(b"", function_error="Unhandled", error_type=e.code)
        attempts = event.attempts + 1
        if result.function_error is None:
            self._finish_event(event, record, config, "succeeded", attempts, None, result)
            return
        error_type = result.error_type or result.function_error
        delays = self.settings.event_retry_delays_s
        if attempts > min(retries, len(delays)):
            log.info("event %s for %s failed %d times (%s); discarded", event.request_id,
                     record.arn, attempts, error_type)
            self._finish_event(event, record, config, "failed", attempts, error_type, result)
            return
        self.events.retry_later(event.id, time.time() + delays[attempts - 1], attempts,
                                error_type, self.claimer)

    def _finish_event(self, event: QueuedEvent, record: FunctionRecord,
                      config: EventInvokeConfig | None, status: str, attempts: int,
                      error_type: str | None, result: InvocationResult | None) -> None:
        """Record the outcome, and queue the invocation record for the destination the
        function's configuration names for it (OnSuccess, or OnFailure for a failed or
        expired event), in one transaction."""
        destination = None
        if config is not None:
            destination = config.on_success if status == "succeeded" else config.on_failure
        target = (self.functions.event_invoke_configs.destination_function(event.region,
                                                                           destination)
                  if destination else None)
        if target is None:
            if not self.events.finish(event.id, status, attempts, error_type,
                                      claimer=self.claimer):
                _claim_lost(event)
            return
        condition = {"succeeded": "Success", "failed": "RetriesExhausted"}.get(
            status, "EventAgeExceeded")
        response = None if result is None else (result.payload, result.function_error)
        qualifier = event.name.partition(":")[2] or LATEST
        body = destination_record(event.request_id, self.functions.arn(
            event.region, record.name, qualifier), condition, attempts, event.payload, response,
            executed_version=record.version)
        if not self.events.finish(event.id, status, attempts, error_type,
                                  then_enqueue=(str(uuid.uuid4()), event.region, target, body),
                                  claimer=self.claimer):
            _claim_lost(event)
        self._wake.set()


def _claim_lost(event: QueuedEvent) -> None:
    log.warning("event %s: its claim's lease ran out and another server took it; this "
                "attempt's outcome is not recorded", event.request_id)


def event_claimer_id(settings: Settings) -> str:
    """This server's name on the Event queue: stable across its restarts (one process per
    data dir: its lock), distinct for each host and data dir sharing a database."""
    where = f"{socket.gethostname()}\0{settings.data_dir.resolve()}".encode()
    return f"lp{settings.instance}-{hashlib.sha256(where).hexdigest()[:12]}"


def _checked_json(payload: bytes) -> bytes:
    """Lambda accepts only JSON events; an empty payload is the empty object."""
    if not payload.strip():
        return b"{}"
    try:
        json.loads(payload)
    except (ValueError, UnicodeDecodeError) as e:
        raise InvalidRequestContent(
            f"Could not parse request body into json: Could not parse payload into json: {e}"
        ) from None
    return payload
