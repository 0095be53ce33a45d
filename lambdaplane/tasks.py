"""Small asyncio helpers every layer may use (no imports of the project's own): stopping a
background task the one way every component's stop path does it."""
from __future__ import annotations

import asyncio
import contextlib
from typing import Any


async def cancel_and_wait(task: asyncio.Task[Any] | None) -> None:
    """Cancel `task` if it is not done yet and wait until it has ended; its CancelledError is
    swallowed (a stop path asked for it). None is a no-op, for a component never started."""
    if task is None:
        return
    if not task.done():
        task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
