"""lambdaplane/tasks.py: `cancel_and_wait`, the stop path of long-running components, and
`until_stop_signal`, how serve and agent wait to be stopped."""
from __future__ import annotations

import asyncio
import os
import signal

import pytest

from lambdaplane.tasks import cancel_and_wait, until_stop_signal


def test_none_is_nothing_to_stop() -> None:
    asyncio.run(cancel_and_wait(None))


def test_a_running_task_is_cancelled_and_has_finished_on_return() -> None:
    cleaned_up: list[str] = []

    async def loop_forever() -> None:
        try:
            while True:
                await asyncio.sleep(3600)
        finally:
            await asyncio.sleep(0)  # its clean-up may itself await
            cleaned_up.append("done")

    async def main() -> asyncio.Task[None]:
        task = asyncio.create_task(loop_forever())
        await asyncio.sleep(0)
        await cancel_and_wait(task)
        return task

    task = asyncio.run(main())
    assert task.cancelled()
    assert cleaned_up == ["done"]


def test_a_task_that_already_ended_is_fine() -> None:
    async def main() -> None:
        task = asyncio.create_task(asyncio.sleep(0))
        await task
        await cancel_and_wait(task)

    asyncio.run(main())


def test_another_exception_of_the_task_reaches_the_caller() -> None:
    async def fails_on_cancel() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            raise RuntimeError("broken stop") from None

    async def main() -> None:
        task = asyncio.create_task(fails_on_cancel())
        await asyncio.sleep(0)
        await cancel_and_wait(task)

    with pytest.raises(RuntimeError, match="broken stop"):
        asyncio.run(main())


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_until_stop_signal_returns_on_sigterm_and_sigint(signum: int) -> None:
    async def main() -> None:
        asyncio.get_running_loop().call_later(0.05, os.kill, os.getpid(), signum)
        await asyncio.wait_for(until_stop_signal(), 30)

    asyncio.run(main())  # the loop's close removes the handlers again
