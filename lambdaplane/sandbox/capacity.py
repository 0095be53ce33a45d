"""Capacity that follows demand: how many pre-made sandbox namespaces (sandbox/pool.py) and
pre-forked sandboxes (sandbox/prewarm.py) the server keeps ready, learnt from the cold starts
it has seen.

Owns the demand learner and the targets it sets. A cold start is recorded with its runtime's
interpreter; the learner's *burst* is the number of cold starts that began within the last
BURST_SPAN_S, and its *peak* is the largest burst of the recent past: held for the first half
of the window (`serve --capacity-window`, default 600 s), then decaying linearly to nothing at
its end — so after a burst the next one finds as many sandboxes ready, and after ~10 minutes
without traffic the server is back at its floors.

Targets: pool = max(--pool-size, global peak), prefork = max(--prefork, peak of the default
interpreter) — the flags are floors — each at most the operator's cap (`--capacity-max`) and
what host memory allows (a share of MemAvailable, at an estimated cost per sandbox). Each
target carries the bound that set it (floor, demand, cap or memory), shown by `lambdaplane
status` and `/metrics`. `--capacity fixed` keeps the flags as they are (the old behaviour).

Everything here is pure but `CapacityController`, which applies the targets to the pool and
the pre-forked sandboxes once a second — a raise once the burst that caused it is over (or 5 s
into a longer one) — and trims what is ready beyond a target that fell, when no invocation
runs."""
from __future__ import annotations

import asyncio
import logging
import math
import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from ..tasks import cancel_and_wait

log = logging.getLogger(__name__)

BURST_SPAN_S = 1.0  # cold starts this close together count as one burst
BUCKETS = 20  # the window's resolution: one peak kept per 1/BUCKETS of it
MEMORY_SHARE = 0.25  # of MemAvailable, at most, for sandboxes kept ready
PREFORK_COST_MB = 12.0  # a pre-forked sandbox: its process (copy-on-write) and root tmpfs
POOL_COST_MB = 0.5  # a pooled netns and its veth pair
TICK_S = 1.0
RAISE_HOLD_S = 5.0  # a raise waits this long at most for the invocations running to end
GLOBAL = "*"


class Clock(Protocol):
    def __call__(self) -> float: ...


@dataclass
class _Series:
    """Cold starts of one runtime (or all): recent start times and per-bucket peaks."""
    recent: deque[float] = field(default_factory=deque)
    buckets: deque[tuple[float, int]] = field(default_factory=deque)  # (bucket start, peak)


class DemandLearner:
    """The recent peak of concurrent cold starts, globally and per runtime (pure; fake clock
    in tests)."""

    def __init__(self, window_s: float = 600.0, clock: Clock = time.monotonic) -> None:
        if window_s <= 0:
            raise ValueError("window_s must be positive")
        self.window_s = window_s
        self.clock = clock
        self._series: dict[str, _Series] = {}

    def cold_start(self, runtime: str) -> None:
        now = self.clock()
        for key in (GLOBAL, runtime):
            series = self._series.setdefault(key, _Series())
            series.recent.append(now)
            while series.recent and series.recent[0] <= now - BURST_SPAN_S:
                series.recent.popleft()
            burst = len(series.recent)
            start = now - now % (self.window_s / BUCKETS)
            if series.buckets and series.buckets[-1][0] == start:
                series.buckets[-1] = (start, max(series.buckets[-1][1], burst))
            else:
                series.buckets.append((start, burst))

    def peak(self, runtime: str = GLOBAL) -> int:
        """The decayed peak: a bucket counts fully for half the window, then linearly less."""
        series = self._series.get(runtime)
        if series is None:
            return 0
        now = self.clock()
        while series.buckets and series.buckets[0][0] <= now - self.window_s:
            series.buckets.popleft()
        best = 0.0
        half = self.window_s / 2
        for start, value in series.buckets:
            age = max(0.0, now - start)
            weight = 1.0 if age <= half else max(0.0, (self.window_s - age) / half)
            best = max(best, value * weight)
        return math.ceil(best - 1e-9)

    def peaks(self) -> dict[str, int]:
        """Per runtime (the global one under "*"), those still above zero."""
        out = {key: self.peak(key) for key in list(self._series)}
        for key in [k for k, v in out.items() if v == 0]:
            del self._series[key]
        return {k: v for k, v in out.items() if v}


@dataclass(frozen=True)
class Target:
    value: int
    bound: str  # floor | demand | cap | memory | fixed | off


@dataclass(frozen=True)
class Targets:
    pool: Target
    prefork: Target
    peak: int
    peaks: dict[str, int]
    memory_available_mb: int

    def as_dict(self) -> dict:
        return {"pool_target": self.pool.value, "pool_bound": self.pool.bound,
                "prefork_target": self.prefork.value, "prefork_bound": self.prefork.bound,
                "learnt_peak": self.peak, "learnt_peaks": dict(self.peaks),
                "memory_available_mb": self.memory_available_mb}


def bounded(floor: int, demand: int, cap: int, memory_limit: int) -> Target:
    """max(floor, demand), at most the cap and the memory limit (the floor too: memory wins);
    with the bound that decided it."""
    value, bound = (demand, "demand") if demand > floor else (floor, "floor")
    if value > cap:
        value, bound = max(cap, 0), "cap"
    if value > memory_limit:
        value, bound = max(memory_limit, 0), "memory"
    return Target(value, bound)


def compute_targets(learner: DemandLearner, *, pool_floor: int, prefork_floor: int, cap: int,
                    prefork_runtime: str, memory_available_mb: int, held_pool: int = 0,
                    held_prefork: int = 0, adaptive: bool = True) -> Targets:
    """The targets for now. `held_*`: sandboxes already ready (their memory is not counted in
    MemAvailable any more, so they stay allowed)."""
    peaks = learner.peaks()
    peak = peaks.get(GLOBAL, 0)
    if not adaptive:
        return Targets(Target(pool_floor, "fixed"), Target(prefork_floor, "fixed"), peak,
                       peaks, memory_available_mb)
    budget = memory_available_mb * MEMORY_SHARE
    prefork_limit = held_prefork + int(budget / PREFORK_COST_MB)
    if prefork_floor <= 0:
        prefork = Target(0, "off")
    else:
        prefork = bounded(prefork_floor, peaks.get(prefork_runtime, 0), cap, prefork_limit)
    pool_limit = held_pool + int(max(0.0, budget - prefork.value * PREFORK_COST_MB)
                                 / POOL_COST_MB)
    pool = bounded(pool_floor, peak, cap, pool_limit)
    return Targets(pool, prefork, peak, peaks, memory_available_mb)


def memory_available_mb(path: str = "/proc/meminfo") -> int:
    try:
        with open(path) as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) // 1024
    except OSError:
        pass
    return 0


class Sized(Protocol):
    """What the controller drives: SandboxPool and PrewarmedSandboxes."""

    def ready_count(self) -> int: ...

    def set_target(self, target: int) -> None: ...

    async def trim(self) -> int: ...


class CapacityController:
    """Applies the targets to the pool and the pre-forked sandboxes."""

    def __init__(self, learner: DemandLearner, pool: Sized, prefork: Sized, *,
                 pool_floor: int, prefork_floor: int, cap: int, prefork_runtime: Callable[[], str],
                 busy: Callable[[], bool], adaptive: bool = True,
                 memory: Callable[[], int] = memory_available_mb) -> None:
        self.learner = learner
        self.pool = pool
        self.prefork = prefork
        self.pool_floor = pool_floor
        self.prefork_floor = prefork_floor
        self.cap = cap
        self.prefork_runtime = prefork_runtime
        self.busy = busy
        self.adaptive = adaptive
        self.memory = memory
        self.targets = self.compute()
        self._raise_wanted_since: float | None = None
        self._task: asyncio.Task[None] | None = None

    def compute(self) -> Targets:
        return compute_targets(
            self.learner, pool_floor=self.pool_floor, prefork_floor=self.prefork_floor,
            cap=self.cap, prefork_runtime=os.path.basename(self.prefork_runtime()),
            memory_available_mb=self.memory(), held_pool=self.pool.ready_count(),
            held_prefork=self.prefork.ready_count(), adaptive=self.adaptive)

    def cold_start(self, runtime: str) -> None:
        """Record one cold start of `runtime` (an interpreter: its file name is the key)."""
        self.learner.cold_start(os.path.basename(runtime))

    def apply(self) -> Targets:
        """Set the targets for now. A raise waits while invocations run (up to RAISE_HOLD_S):
        the pool refills whatever else runs once it is low against its target, and during a
        burst those builds would take their CPU from the burst's own cold starts."""
        targets = self.compute()
        raising = (targets.pool.value > self.targets.pool.value
                   or targets.prefork.value > self.targets.prefork.value)
        if raising and self.adaptive and self.busy():
            now = self.learner.clock()
            if self._raise_wanted_since is None:
                self._raise_wanted_since = now
            if now - self._raise_wanted_since < RAISE_HOLD_S:
                return self.targets
        self._raise_wanted_since = None
        self.targets = targets
        self.pool.set_target(self.targets.pool.value)
        self.prefork.set_target(self.targets.prefork.value)
        return self.targets

    async def start(self) -> None:
        self.apply()
        if self.adaptive:
            self._task = asyncio.create_task(self._loop(), name="lp-capacity")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    def stats(self) -> dict:
        return {"mode": "adaptive" if self.adaptive else "fixed", "cap": self.cap,
                "pool_floor": self.pool_floor, "prefork_floor": self.prefork_floor,
                **self.targets.as_dict(), "learnt_peak": self.learner.peak(),
                "learnt_peaks": self.learner.peaks()}

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            try:
                self.apply()
                if not self.busy():  # shrinking is never urgent: not while invocations run
                    await self.prefork.trim()
                    await self.pool.trim()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("applying capacity targets failed")
