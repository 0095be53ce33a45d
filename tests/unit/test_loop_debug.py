"""lambdaplane/loop_debug.py, the loop-blocking test mode's watchdog, on a real uvloop loop: a
sleep on the loop is reported with where it happened; waiting on a lock (a futex, as for the
GIL) is not the loop's code blocking and is not reported."""
from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable

import pytest
import uvloop

from lambdaplane import loop_debug


def _run_with_watchdog(blocking: Callable[[], None], caplog: pytest.LogCaptureFixture,
                       monkeypatch: pytest.MonkeyPatch) -> list[str]:
    monkeypatch.setattr(loop_debug, "_OURS", "/tests/unit/")  # this file counts as ours
    loop = uvloop.new_event_loop()
    loop_debug.debug_loop(loop, 20)

    async def main() -> None:
        await asyncio.sleep(0.05)
        blocking()
        await asyncio.sleep(0.1)

    with caplog.at_level(logging.DEBUG, logger="lambdaplane.loop_debug"):
        try:
            loop.run_until_complete(main())
        finally:
            loop.close()
    return [r.getMessage() for r in caplog.records if r.name == "lambdaplane.loop_debug"]


def test_a_sleep_on_the_loop_is_reported_where_it_happened(
        caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    messages = _run_with_watchdog(lambda: time.sleep(0.15), caplog, monkeypatch)
    blocked = [m for m in messages if m.startswith("loop blocked")]
    assert blocked and "test_loop_debug.py" in blocked[0], messages


def test_waiting_for_a_lock_is_not_the_loops_code_blocking(
        caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    lock = threading.Lock()

    def hold() -> None:
        with lock:
            time.sleep(0.15)

    def wait_for_the_lock() -> None:
        holder = threading.Thread(target=hold)
        holder.start()
        time.sleep(0.005)  # 5 ms: under the threshold
        with lock:
            pass
        holder.join()

    messages = _run_with_watchdog(wait_for_the_lock, caplog, monkeypatch)
    assert not [m for m in messages if m.startswith("loop blocked")], messages
