"""The thread on which kernel network work runs. Namespace switches (setns) are
per-thread, and pyroute2/libnftables handles are not shared between threads, so serialising
the work on one thread keeps it simple and keeps the event loop free.

Work comes in two lanes: `run` (what a request or a cold start waits for, e.g. a VPC
function's steering element) and `run_background` (building pooled sandboxes ahead of need).
The thread always takes the first lane first, so a burst of cold starts is never queued behind
a pile of sandbox builds; within a lane, order is kept."""
from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import threading
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")
_Item = tuple[concurrent.futures.Future[Any], Callable[[], Any]]


class NetThread:
    """One worker thread with two lanes. The server has one for all kernel work; the Hyperplane
    steering path has one of its own (see service/hyperplane.py)."""

    def __init__(self, name: str = "lp-net") -> None:
        self._lanes: tuple[deque[_Item], deque[_Item]] = (deque(), deque())
        self._wake = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._thread.start()

    async def run(self, fn: Callable[..., T], *args: object, **kwargs: object) -> T:
        return await asyncio.wrap_future(self._submit(0, functools.partial(fn, *args, **kwargs)))

    async def run_background(self, fn: Callable[..., T], *args: object, **kwargs: object) -> T:
        """Like run, but yields to everything submitted with run."""
        return await asyncio.wrap_future(self._submit(1, functools.partial(fn, *args, **kwargs)))

    def close(self) -> None:
        with self._wake:
            self._closed = True
            self._wake.notify()
        self._thread.join()

    def _submit(self, lane: int, call: Callable[[], T]) -> concurrent.futures.Future[T]:
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        with self._wake:
            if self._closed:
                raise RuntimeError("the net thread is closed")
            self._lanes[lane].append((future, call))
            self._wake.notify()
        return future

    def _work(self) -> None:
        while True:
            with self._wake:
                while not (self._lanes[0] or self._lanes[1] or self._closed):
                    self._wake.wait()
                lane = self._lanes[0] or self._lanes[1]
                if not lane:  # closed, and everything submitted before has run
                    return
                future, call = lane.popleft()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = call()
            except BaseException as e:  # noqa: BLE001 - handed to the caller
                future.set_exception(e)
            else:
                future.set_result(result)
