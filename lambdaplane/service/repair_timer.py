"""The drift repair on a timer, beside the one reconciler (service/reconciler.py): every
`--reconcile-interval` a full run of it puts back what drifted from the store (a link, a
table, a route removed by hand) without a restart. One helper for both VPC modes: the
Hyperplane service (service/hyperplane.py) and legacy mode (service/legacy.py) each start one
with their own repair and the name their log lines carry."""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from ..tasks import cancel_and_wait


class RepairTimer:
    """Runs `repair` every `interval_s` seconds from `start` until `stop`; a run's changes are
    logged as repaired drift ("<what>: repaired drift from the store: ..."), a failed run is
    logged and the next period tries again."""

    def __init__(self, interval_s: float, repair: Callable[[], Awaitable[list[str]]],
                 log: logging.Logger, what: str) -> None:
        self.interval_s = interval_s
        self._repair = repair
        self._log = log
        self._what = what
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                done = await self._repair()
            except Exception:  # noqa: BLE001 - logged; the next period tries again
                self._log.exception("%s reconcile on timer failed", self._what)
                continue
            if done:
                self._log.warning("%s: repaired drift from the store: %s", self._what,
                                  "; ".join(done))
