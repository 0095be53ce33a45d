"""How many sandboxes a runtime's pre-started pool (prewarm.py with a runtime: Node.js, node
started and warm in each) keeps ready, sized to that runtime's demand.

Each pre-started node costs ~90 ms of CPU to boot and warm up, so a pool refilled only after it
ran dry lets every cold start of a burst (or of a quick succession) miss it and exec node on its
critical path. The pool is therefore sized ahead of demand, as sandbox/capacity.py sizes the
pre-forked Python sandboxes: its cold starts are learnt (capacity.DemandLearner: the largest
number that began within a second, held for half of `--capacity-window` and then decaying), and
the target is that peak plus one — so a burst of the same size finds a node ready for each of
its cold starts and one left over while they refill. A cold start that still found none ready
adds one more for as long as misses keep coming (one given back per SHRINK_AFTER_S without
one). The `--prestart` flag is the floor; the ceiling is RUNTIME_GROWTH times it (at most
RUNTIME_CEILING) and what a share of the host's available memory holds at NODE_COST_MB each.
`--capacity fixed` learns no demand (only misses grow the pool, as before).

Pure but for reading /proc/meminfo (injectable); a fake clock in tests."""
from __future__ import annotations

import time
from collections.abc import Callable

from .capacity import MEMORY_SHARE, Clock, DemandLearner, memory_available_mb

RUNTIME_GROWTH = 4
RUNTIME_CEILING = 8
SHRINK_AFTER_S = 30.0
NODE_COST_MB = 60.0  # a pre-started, warmed-up node (~45 MB resident) and its sandbox
_KEY = "runtime"


class PrestartSizing:
    def __init__(self, floor: int, *, adaptive: bool = True, window_s: float = 600.0,
                 clock: Clock = time.monotonic,
                 memory_mb: Callable[[], int] = memory_available_mb) -> None:
        self.floor = floor
        self.adaptive = adaptive
        self.clock = clock
        self.memory_mb = memory_mb
        self.learner = DemandLearner(window_s, clock)
        self.extra = 0  # added by cold starts that found no runtime ready
        self._missed_at = -SHRINK_AFTER_S

    def ceiling(self) -> int:
        """RUNTIME_GROWTH × the floor (at most RUNTIME_CEILING), and what memory allows — never
        below the floor the operator asked for."""
        by_flag = min(self.floor * RUNTIME_GROWTH, RUNTIME_CEILING)
        by_memory = int(self.memory_mb() * MEMORY_SHARE / NODE_COST_MB)
        return max(self.floor, min(by_flag, by_memory))

    def cold_start(self, found_ready: bool) -> None:
        """One cold start of this runtime; `found_ready`: it took a sandbox whose runtime was
        ready (else it took one still starting, or none)."""
        if self.adaptive:
            self.learner.cold_start(_KEY)
        if not found_ready:
            self._missed_at = self.clock()
            self.extra = min(self.extra + 1, RUNTIME_CEILING)

    def demand(self) -> int:
        return self.learner.peak(_KEY) if self.adaptive else 0

    def target(self) -> int:
        """What to keep ready now (also gives back one of the misses' `extra` per quiet
        SHRINK_AFTER_S)."""
        if self.extra and self.clock() - self._missed_at >= SHRINK_AFTER_S:
            self.extra -= 1
            self._missed_at = self.clock()
        if self.floor <= 0:
            return 0
        demand = self.demand()
        wanted = max(self.floor, demand + 1 if demand else 0, self.floor + self.extra,
                     demand + self.extra)
        return min(wanted, self.ceiling())
