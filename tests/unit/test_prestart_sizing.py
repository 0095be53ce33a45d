"""The size of a runtime's pre-started pool (sandbox/prestart_sizing.py), on a fake clock."""
from __future__ import annotations

from lambdaplane.sandbox.prestart_sizing import (
    RATE_WINDOW_S,
    RUNTIME_CEILING,
    SHRINK_AFTER_S,
    PrestartSizing,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def sizing(floor: int = 2, memory_mb: int = 100_000, adaptive: bool = True,
           clock: FakeClock | None = None) -> PrestartSizing:
    return PrestartSizing(floor, adaptive=adaptive, window_s=600, clock=clock or FakeClock(),
                          memory_mb=lambda: memory_mb)


def test_without_cold_starts_the_floor() -> None:
    assert sizing().target() == 2
    assert sizing(floor=0).target() == 0


def test_a_burst_sizes_the_pool_one_above_it_and_is_held() -> None:
    clock = FakeClock()
    s = sizing(clock=clock)
    for _ in range(5):  # five cold starts within a second, each finding node ready
        clock.now += 0.1
        s.cold_start(found_ready=True)
    assert s.target() == 6
    clock.now += 200  # held for half the window
    assert s.target() == 6
    clock.now += 400  # and forgotten at its end
    assert s.target() == 2


def test_misses_add_one_each_and_quiet_gives_them_back() -> None:
    clock = FakeClock()
    s = sizing(floor=1, adaptive=False, clock=clock)  # --capacity fixed: misses only
    s.cold_start(found_ready=False)
    clock.now += 5
    s.cold_start(found_ready=False)
    assert s.target() == 3
    s.cold_start(found_ready=True)  # a hit neither grows nor shrinks it
    assert s.target() == 3
    clock.now += SHRINK_AFTER_S
    assert s.target() == 2
    clock.now += SHRINK_AFTER_S
    assert s.target() == 1


def test_the_ceiling_by_flag_and_by_memory_but_never_below_the_floor() -> None:
    clock = FakeClock()
    s = sizing(floor=2, clock=clock)
    for _ in range(50):
        clock.now += 0.01
        s.cold_start(found_ready=False)
    assert s.target() == RUNTIME_CEILING  # 6 x 2, at most 12
    assert sizing(floor=1).ceiling() == 6
    starved = sizing(floor=3, memory_mb=200, clock=clock)  # 50 MB for sandboxes: none more
    starved.cold_start(found_ready=False)
    assert starved.ceiling() == 3 and starved.target() == 3


def test_a_steady_succession_is_sized_by_rate_times_boot_time_and_shrinks_when_it_stops() -> None:
    clock = FakeClock()
    s = sizing(floor=2, clock=clock)  # ceiling 12
    s.booted(0.5)
    s.booted(0.5)  # a node takes half a second from its sandbox made to READY
    assert s.boot_s == 0.5
    for _ in range(40):  # one cold start every 250 ms: never more than 4 within a second
        clock.now += 0.25
        s.cold_start(found_ready=True)
    assert s.demand() == 4
    s.booted(3.0)  # the host got loaded: boots take longer
    assert s.boot_s == 0.3 * 3.0 + 0.7 * 0.5
    assert s.rate() == 4.0 and s.in_flight_need() == 5  # ceil(4/s × 1.25 s)
    assert s.target() == 6  # that many booting and one ready
    clock.now += RATE_WINDOW_S  # the succession stopped: no rate, the burst peak remains
    assert s.rate() == 0 and s.target() == 4 + 1


def test_what_cold_starts_found_is_counted_as_the_hit_ratio() -> None:
    s = sizing()
    assert s.hit_ratio() is None and s.stats()["hit_ratio"] is None
    s.count("none")  # the first, which makes the pool
    s.cold_start(found_ready=True)
    s.cold_start(found_ready=True)
    s.cold_start(found_ready=False)  # took one still starting
    s.cold_start(found_ready=False, found_any=False)  # found the pool empty
    assert s.found == {"ready": 2, "starting": 1, "none": 2}
    assert s.stats()["hit_ratio"] == 0.4 and s.stats()["taken_none"] == 2


def test_fixed_capacity_learns_no_rate() -> None:
    clock = FakeClock()
    s = sizing(floor=2, adaptive=False, clock=clock)
    s.booted(1.0)
    for _ in range(20):
        clock.now += 0.1
        s.cold_start(found_ready=True)
    assert s.in_flight_need() == 0 and s.target() == 2
