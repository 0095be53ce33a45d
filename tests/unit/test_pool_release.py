"""SandboxPool.release with a fake kernel: many environments ending at once recycle only as
many sandboxes as the pool wants; the rest are deleted (sandbox/pool.py)."""
from __future__ import annotations

import asyncio
from typing import Any

import pytest

from lambdaplane.net.names import Names
from lambdaplane.sandbox import pool as pool_module
from lambdaplane.sandbox.pool import Sandbox, SandboxPool


class FakeNet:
    """Runs the work at once, but only after yielding to the event loop, like the real
    net thread (a release always waits at least once)."""

    def __init__(self) -> None:
        self.destroyed: list[int] = []

    async def run(self, fn: Any, *args: Any) -> Any:
        await asyncio.sleep(0)
        if fn is pool_module.destroy_sandbox:
            self.destroyed.append(args[1].slot)
            return None
        return fn(*args)

    run_background = run


def _pool(size: int, monkeypatch: pytest.MonkeyPatch) -> tuple[SandboxPool, FakeNet]:
    monkeypatch.setattr(pool_module, "is_pristine", lambda box: True)
    net = FakeNet()
    pool = SandboxPool(Names("t9"), net, size)  # type: ignore[arg-type]
    pool._worker = object()  # type: ignore[assignment]  # started (no refill loop)
    for slot in range(100):
        pool._in_use[slot] = Sandbox(slot, f"ns{slot}", f"100.64.0.{slot}", f"v{slot}")
    return pool, net


async def test_simultaneous_releases_recycle_no_more_than_the_pool_wants(
        monkeypatch: pytest.MonkeyPatch) -> None:
    pool, net = _pool(8, monkeypatch)
    await asyncio.gather(*(pool.release(slot) for slot in range(100)))
    assert pool.ready_count() == 8
    assert pool.recycled == 8
    assert len(net.destroyed) == 92
    assert not pool._in_use


async def test_releases_after_a_lowered_target_are_deleted(
        monkeypatch: pytest.MonkeyPatch) -> None:
    pool, net = _pool(50, monkeypatch)
    await asyncio.gather(*(pool.release(slot) for slot in range(40)))
    pool.set_target(10)
    await asyncio.gather(*(pool.release(slot) for slot in range(40, 100)))
    assert pool.ready_count() == 40  # trim removes the surplus, not release
    assert len(net.destroyed) == 60


async def test_a_take_ahead_of_demand_does_not_defer_the_refill(
        monkeypatch: pytest.MonkeyPatch) -> None:
    pool, _net = _pool(20, monkeypatch)
    pool._in_use.clear()
    for slot in range(10):
        pool._ready.append(Sandbox(slot, f"ns{slot}", f"100.64.0.{slot}", f"v{slot}"))
    await pool.take(ahead=True)  # pre-forking: the refill goes on at once
    now = pool_module.time.monotonic()
    assert not pool._may_wait(now, now)
    await pool.take()  # a cold start: a burst may be starting, the refill waits a moment
    assert pool._may_wait(pool_module.time.monotonic(), now)
