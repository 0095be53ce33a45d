"""The demand learner and the targets it sets (sandbox/capacity.py), on a fake clock."""
from __future__ import annotations

import asyncio

import pytest

from lambdaplane.sandbox import capacity
from lambdaplane.sandbox.capacity import (
    CapacityController,
    DemandLearner,
    Target,
    bounded,
    compute_targets,
)

PY = "python3.11"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def burst(learner: DemandLearner, clock: FakeClock, n: int, runtime: str = PY,
          spread_s: float = 0.2) -> None:
    for i in range(n):
        clock.now += spread_s / n
        learner.cold_start(runtime)


def test_a_burst_is_learnt_as_its_size_globally_and_per_runtime() -> None:
    clock = FakeClock()
    learner = DemandLearner(600, clock)
    burst(learner, clock, 100)
    burst(learner, clock, 7, runtime="python3.12")
    assert learner.peak(PY) == 100
    assert learner.peak("python3.12") == 7
    assert learner.peak() == 107  # the two bursts overlapped within a second
    assert learner.peak("nodejs20.x") == 0


def test_cold_starts_spread_out_are_not_a_burst() -> None:
    clock = FakeClock()
    learner = DemandLearner(600, clock)
    for _ in range(50):
        clock.now += 2.0
        learner.cold_start(PY)
    assert learner.peak() == 1


def test_the_peak_is_held_for_half_the_window_then_decays_to_nothing() -> None:
    clock = FakeClock()
    learner = DemandLearner(600, clock)
    burst(learner, clock, 100)
    clock.now += 290
    assert learner.peak() == 100
    clock.now += 160  # ≈450 s after: half-way down the decay
    assert 40 <= learner.peak() <= 60
    clock.now += 160
    assert learner.peak() == 0
    assert learner.peaks() == {}


def test_a_later_smaller_burst_does_not_hide_the_larger_one() -> None:
    clock = FakeClock()
    learner = DemandLearner(600, clock)
    burst(learner, clock, 100)
    clock.now += 60
    burst(learner, clock, 10)
    assert learner.peak() == 100


def test_bounded_reports_which_bound_applies() -> None:
    assert bounded(8, 3, 256, 10_000) == Target(8, "floor")
    assert bounded(8, 100, 256, 10_000) == Target(100, "demand")
    assert bounded(8, 300, 256, 10_000) == Target(256, "cap")
    assert bounded(8, 100, 256, 40) == Target(40, "memory")


def test_targets_follow_demand_with_the_flags_as_floors() -> None:
    clock = FakeClock()
    learner = DemandLearner(600, clock)
    quiet = compute_targets(learner, pool_floor=8, prefork_floor=4, cap=256,
                            prefork_runtime=PY, memory_available_mb=20_000)
    assert (quiet.pool, quiet.prefork) == (Target(8, "floor"), Target(4, "floor"))
    burst(learner, clock, 100)
    burst(learner, clock, 20, runtime="python3.12")
    busy = compute_targets(learner, pool_floor=8, prefork_floor=4, cap=256,
                           prefork_runtime=PY, memory_available_mb=20_000)
    assert busy.pool == Target(120, "demand")  # every cold start takes a sandbox
    assert busy.prefork == Target(100, "demand")  # only the default interpreter pre-forks
    assert busy.peaks == {"*": 120, PY: 100, "python3.12": 20}
    capped = compute_targets(learner, pool_floor=8, prefork_floor=4, cap=50,
                             prefork_runtime=PY, memory_available_mb=20_000)
    assert (capped.pool.bound, capped.prefork.bound) == ("cap", "cap")
    fixed = compute_targets(learner, pool_floor=8, prefork_floor=4, cap=256,
                            prefork_runtime=PY, memory_available_mb=20_000, adaptive=False)
    assert (fixed.pool, fixed.prefork) == (Target(8, "fixed"), Target(4, "fixed"))


def test_memory_bounds_the_targets_but_what_is_ready_stays_allowed() -> None:
    clock = FakeClock()
    learner = DemandLearner(600, clock)
    burst(learner, clock, 100)
    mb = int(10 * capacity.PREFORK_COST_MB / capacity.MEMORY_SHARE)  # room for 10 more
    t = compute_targets(learner, pool_floor=8, prefork_floor=4, cap=256, prefork_runtime=PY,
                        memory_available_mb=mb, held_prefork=30)
    assert t.prefork == Target(40, "memory")
    assert t.as_dict()["prefork_bound"] == "memory"


def test_prefork_zero_stays_off() -> None:
    clock = FakeClock()
    learner = DemandLearner(600, clock)
    burst(learner, clock, 100)
    t = compute_targets(learner, pool_floor=8, prefork_floor=0, cap=256, prefork_runtime=PY,
                        memory_available_mb=20_000)
    assert t.prefork == Target(0, "off") and t.pool == Target(100, "demand")


def test_window_must_be_positive() -> None:
    with pytest.raises(ValueError):
        DemandLearner(0)


class FakeSized:
    def __init__(self, ready: int) -> None:
        self.ready = ready
        self.target = 0

    def ready_count(self) -> int:
        return self.ready

    def set_target(self, target: int) -> None:
        self.target = target

    async def trim(self) -> int:
        extra = max(0, self.ready - self.target)
        self.ready -= extra
        return extra


def test_the_controller_raises_targets_on_a_burst_and_trims_after_idleness() -> None:
    async def scenario() -> None:
        clock = FakeClock()
        pool, prefork = FakeSized(8), FakeSized(4)
        busy = [False]
        controller = CapacityController(
            DemandLearner(10, clock), pool, prefork, pool_floor=8, prefork_floor=4, cap=256,
            prefork_runtime=lambda: PY, busy=lambda: busy[0], memory=lambda: 20_000)
        controller.apply()
        assert (pool.target, prefork.target) == (8, 4)
        busy[0] = True
        for _ in range(30):
            controller.cold_start(PY)
        controller.apply()  # the burst is running: its cold starts come first
        assert (pool.target, prefork.target) == (8, 4)
        busy[0] = False
        controller.apply()  # over: refilled ahead of the next one
        assert (pool.target, prefork.target) == (30, 30)
        assert controller.stats()["pool_bound"] == "demand"
        pool.ready, prefork.ready = 30, 30
        clock.now += 11
        controller.apply()
        assert (pool.target, prefork.target) == (8, 4)
        assert (await prefork.trim(), await pool.trim()) == (26, 22)
        assert controller.stats()["pool_bound"] == "floor"

    asyncio.run(scenario())


def test_under_endless_load_a_raise_waits_only_so_long() -> None:
    clock = FakeClock()
    pool, prefork = FakeSized(8), FakeSized(4)
    controller = CapacityController(
        DemandLearner(600, clock), pool, prefork, pool_floor=8, prefork_floor=4, cap=256,
        prefork_runtime=lambda: PY, busy=lambda: True, memory=lambda: 20_000)
    for _ in range(50):
        controller.cold_start(PY)
    controller.apply()
    assert controller.targets.pool.value == 8
    clock.now += capacity.RAISE_HOLD_S + 0.1
    controller.apply()
    assert (pool.target, prefork.target) == (50, 50)
