"""Asyncio helpers shared by every layer (imports nothing from lambdaplane, so
service/, sandbox/, net/ and bench/ may all use it).

`cancel_and_wait` is the stop path that each long-running component repeated: cancel its
task, wait until the task has really finished (so nothing it owns is touched afterwards), and
treat the task's own cancellation as the normal end. Any other exception the task ended with
is raised to the caller, as before. `until_stop_signal` is how `serve` and `agent` wait for
SIGINT/SIGTERM."""
from __future__ import annotations

import asyncio
import contextlib
from typing import Any


async def cancel_and_wait(task: asyncio.Task[Any] | None) -> None:
    """Cancel `task` (None: nothing to do) and wait for it to end; its CancelledError is
    swallowed, any other exception it ended with propagates."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def until_stop_signal() -> None:
    """Return when SIGINT or SIGTERM arrives (how `serve` and `agent` wait to be stopped)."""
    import signal

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
