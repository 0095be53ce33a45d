"""One invocation in one environment: hand the event to its runtime through the Runtime API,
wait for the response, the runtime's exit or the timeout (init gets INIT_TIMEOUT_S, the
function its own timeout from the moment its runtime takes the event), and turn what happened
into the InvocationResult: payload or error (Runtime.ExitError, Runtime.OutOfMemory,
Sandbox.Timedout), durations, the cold start's phase timings, and the log text with its
START/END/REPORT lines. It decides whether the environment may be reused (`retiring`); the
registry (env_registry.py) acts on that."""
from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from . import cgroups
from .cgroups import EnvCgroup
from .cold_start import ColdStartTimings
from .environment import INIT_TIMEOUT_S, Environment, exit_description
from .log_format import InvocationFacts, LogSettings, end_lines, start_line
from .logs import aws_timestamp
from .runtime_api import Outcome, PendingInvocation
from .types import Invocation, InvocationResult


async def run_invocation(env: Environment, inv: Invocation,
                         cold: ColdStartTimings | None) -> InvocationResult:
    """Run `inv` in `env` (cold: the timings of the cold start that just made it)."""
    spec = env.spec
    began = cold.began if cold is not None else time.monotonic()
    fetched: asyncio.Future[float] = asyncio.get_running_loop().create_future()
    outside_text: list[str] = []

    def on_fetch(pending: PendingInvocation) -> None:
        # the function's own timeout runs from the moment its runtime takes the event
        pending.deadline_ms = int((time.time() + spec.timeout_s) * 1000)
        # taken from inside `submit` (a runtime already waiting): what it printed before it
        # asked was read by the loop in an earlier round (logs.py); else read the pipe now
        outside_text.append(env.output.take_outside_and_begin(inv.request_id,
                                                              read_by_loop=submitting[0]))
        if not fetched.done():
            fetched.set_result(time.monotonic())

    submitting = [True]
    pending = env.channel.submit(inv, inv.function_arn or spec.arn,
                                 int((time.time() + spec.timeout_s) * 1000), on_fetch)
    submitting[0] = False
    assert env.exited is not None
    await _first_of((pending.outcome, env.exited, fetched),
                    INIT_TIMEOUT_S if cold is not None else spec.timeout_s)
    if fetched.done() and not pending.outcome.done() and not env.exited.done():
        remaining = spec.timeout_s - (time.monotonic() - fetched.result())
        await _first_of((pending.outcome, env.exited), max(remaining, 0))
    ended = time.monotonic()
    start = fetched.result() if fetched.done() else ended
    init_ms = (start - began) * 1000 if cold is not None else None
    duration_ms = (ended - start) * 1000

    result, error_line, healthy = await _outcome(env, pending, inv)
    # a posted result: its output was flushed before it and read by the loop (logs.py)
    output = env.output.end(read_by_loop=healthy and pending.outcome.done()) \
        if fetched.done() else env.output.take_outside()
    max_used = _max_memory_mb(env.cgroup)
    facts = InvocationFacts(inv.request_id, spec.version, duration_ms, spec.memory_mb,
                            max_used, init_ms, _status(result))
    settings = LogSettings.from_config(spec.logging_config)
    # start_line, error_line and end_lines end with a newline (or are empty); only what the
    # function printed may not
    result.log_text = (_ended(outside_text[0] if outside_text else "")
                       + start_line(settings, facts) + _ended(output) + error_line
                       + end_lines(settings, facts))
    env.output.function_log.append(result.log_text)
    result.duration_ms = duration_ms
    result.init_duration_ms = init_ms
    result.cold_start = cold is not None
    result.extra = {**cold.phases_ms(), "duration_ms": duration_ms} if cold is not None \
        else {"duration_ms": duration_ms}
    if init_ms is not None:
        result.extra["init_ms"] = init_ms
    if not healthy:
        env.retiring = True
    return result


async def _outcome(env: Environment, pending: PendingInvocation, inv: Invocation
                   ) -> tuple[InvocationResult, str, bool]:
    """(result, extra log line, whether the environment may be reused)."""
    if pending.outcome.done():
        outcome: Outcome = pending.outcome.result()
        if outcome.kind == "response":
            return InvocationResult(payload=outcome.body), "", True
        if outcome.kind == "init_error":
            return (InvocationResult(payload=outcome.body, function_error="Unhandled",
                                     error_type=outcome.error_type), "", False)
        return (InvocationResult(payload=outcome.body, function_error="Unhandled",
                                 error_type=outcome.error_type), "", True)
    assert env.exited is not None
    if env.exited.done():
        code = env.exited.result() if not env.exited.cancelled() else -9
        oom = env.cgroup is not None and await asyncio.to_thread(cgroups.oom_killed,
                                                                 env.cgroup)
        error_type = "Runtime.OutOfMemory" if oom else "Runtime.ExitError"
        message = (f"RequestId: {inv.request_id} Error: Runtime exited with error: "
                   f"{exit_description(code)}")
        payload = json.dumps({"errorType": error_type, "errorMessage": message}).encode()
        return (InvocationResult(payload=payload, function_error="Unhandled",
                                 error_type=error_type), f"{message}\n{error_type}\n", False)
    # timed out: the environment is killed, its state cannot be trusted
    if env.process is not None:
        env.process.kill()
    message = (f"{aws_timestamp()} {inv.request_id} Task timed out after "
               f"{env.spec.timeout_s:.2f} seconds")
    payload = json.dumps({"errorMessage": message, "errorType": "Sandbox.Timedout"}).encode()
    return (InvocationResult(payload=payload, function_error="Unhandled",
                             error_type="Sandbox.Timedout"), message + "\n", False)


def _status(result: InvocationResult) -> str:
    """The invocation's outcome as platform.runtimeDone/report name it."""
    if result.error_type == "Sandbox.Timedout":
        return "timeout"
    if result.error_type in ("Runtime.ExitError", "Runtime.OutOfMemory"):
        return "failure"
    return "error" if result.function_error else "success"


async def _first_of(futures: tuple[asyncio.Future[Any], ...], timeout_s: float) -> None:
    """Until one of `futures` is done or `timeout_s` has passed. asyncio.wait does the same
    with more bookkeeping, twice per warm invoke; this is a visible share of one."""
    if any(f.done() for f in futures):
        return
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[None] = loop.create_future()

    def wake(_: object = None) -> None:
        if not waiter.done():
            waiter.set_result(None)

    for f in futures:
        f.add_done_callback(wake)
    timer = loop.call_later(timeout_s, wake)
    try:
        await waiter
    finally:
        timer.cancel()
        for f in futures:
            f.remove_done_callback(wake)


def _ended(text: str) -> str:
    """`text` ending with a newline, unless empty."""
    return text if not text or text[-1] == "\n" else text + "\n"


def _max_memory_mb(cg: EnvCgroup | None) -> int:
    if cg is None:
        return 0
    return max(1, round(cgroups.memory_peak_bytes(cg) / (1024 * 1024)))
