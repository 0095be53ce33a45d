"""The drift repair's timer (service/repair_timer.py), without a kernel: each period runs the
repair; what it changed is logged as repaired drift under the mode's name, a failing run is
logged and the next period runs again; stop ends it (and is safe before start or twice)."""
from __future__ import annotations

import asyncio
import logging

import pytest

from lambdaplane.service.repair_timer import RepairTimer
from lambdaplane.tasks import cancel_and_wait


async def test_runs_each_period_logs_repairs_and_survives_a_failure(
        caplog: pytest.LogCaptureFixture) -> None:
    outcomes: list[list[str] | Exception] = [["put back the link lp1-x"], RuntimeError("boom"),
                                             []]
    third = asyncio.Event()

    async def repair() -> list[str]:
        outcome = outcomes.pop(0) if outcomes else []
        if not outcomes:
            third.set()
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    log = logging.getLogger("lambdaplane.test-repair-timer")
    timer = RepairTimer(0.001, repair, log, "Legacy-test")
    with caplog.at_level(logging.WARNING, logger=log.name):
        timer.start()
        await asyncio.wait_for(third.wait(), 30)
        await timer.stop()
    messages = [r.getMessage() for r in caplog.records]
    assert "Legacy-test: repaired drift from the store: put back the link lp1-x" in messages
    assert "Legacy-test reconcile on timer failed" in messages
    assert sum("repaired drift" in m for m in messages) == 1  # an empty run logs nothing
    await timer.stop()  # twice: nothing to do


async def test_stop_before_start_and_cancel_and_wait_of_a_finished_task() -> None:
    async def never() -> list[str]:
        raise AssertionError("not started")

    await RepairTimer(1.0, never, logging.getLogger("x"), "x").stop()
    await cancel_and_wait(None)
    done = asyncio.get_running_loop().create_task(asyncio.sleep(0))
    await done
    await cancel_and_wait(done)  # already finished: no error
    sleeper = asyncio.get_running_loop().create_task(asyncio.sleep(3600))
    await cancel_and_wait(sleeper)
    assert sleeper.cancelled()
