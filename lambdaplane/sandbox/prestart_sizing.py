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

A burst is not the only demand: a steady succession of cold starts (one every ~100 ms, as `bench
invoke` makes them) never has many within a second but needs, by Little's law, its rate × a
node's boot time of nodes booting at any moment, plus one ready. So the rate of the recent cold
starts (those of the last RATE_WINDOW_S) and the boot time the pool observes (exec to READY,
wall time: it grows with the host's load, an EWMA) size it too; once the cold starts stop, the
rate falls to zero within RATE_WINDOW_S and the pool shrinks back to what the rest asks for.
It also counts what each cold start found (a node ready, one still starting, none: the hit
ratio, `lambdaplane status` and /metrics), the load-robust measure of whether it keeps up.

Pure but for reading /proc/meminfo (injectable); a fake clock in tests."""
from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable

from .capacity import MEMORY_SHARE, Clock, DemandLearner, memory_available_mb

RUNTIME_GROWTH = 6
RUNTIME_CEILING = 12
SHRINK_AFTER_S = 30.0
NODE_COST_MB = 60.0  # a pre-started, warmed-up node (~45 MB resident) and its sandbox
_KEY = "runtime"
RATE_WINDOW_S = 10.0  # the cold starts whose rate sizes the pool
BOOT_EWMA_ALPHA = 0.3  # weight of the newest boot time in the estimate
FOUND = ("ready", "starting", "none")  # what a cold start found in the pool


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
        self._recent: deque[float] = deque()  # times of the cold starts of RATE_WINDOW_S
        self.boot_s = 0.0  # EWMA of a node's boot, sandbox made to READY (0: none seen)
        self.found = dict.fromkeys(FOUND, 0)  # cold starts by what they found

    def ceiling(self) -> int:
        """RUNTIME_GROWTH × the floor (at most RUNTIME_CEILING), and what memory allows — never
        below the floor the operator asked for."""
        by_flag = min(self.floor * RUNTIME_GROWTH, RUNTIME_CEILING)
        by_memory = int(self.memory_mb() * MEMORY_SHARE / NODE_COST_MB)
        return max(self.floor, min(by_flag, by_memory))

    def cold_start(self, found_ready: bool, found_any: bool = True) -> None:
        """One cold start of this runtime; `found_ready`: it took a sandbox whose runtime was
        ready (else it took one still starting, or none: `found_any` False)."""
        self.count("ready" if found_ready else "starting" if found_any else "none")
        if self.adaptive:
            self.learner.cold_start(_KEY)
            self._recent.append(self.clock())
        if not found_ready:
            self._missed_at = self.clock()
            self.extra = min(self.extra + 1, RUNTIME_CEILING)

    def count(self, found: str) -> None:
        """Counts a cold start that found `found` (one of FOUND) without sizing on it: the
        first of a runtime, which makes the pool."""
        self.found[found] += 1

    def booted(self, seconds: float) -> None:
        """A sandbox of the pool had its runtime ready `seconds` after it was made."""
        self.boot_s = seconds if not self.boot_s else \
            BOOT_EWMA_ALPHA * seconds + (1 - BOOT_EWMA_ALPHA) * self.boot_s

    def rate(self) -> float:
        """Cold starts per second over the last RATE_WINDOW_S."""
        now = self.clock()
        while self._recent and self._recent[0] <= now - RATE_WINDOW_S:
            self._recent.popleft()
        return len(self._recent) / RATE_WINDOW_S

    def in_flight_need(self) -> int:
        """Little's law: the nodes booting at once for the recent rate to find one ready."""
        return math.ceil(self.rate() * self.boot_s) if self.adaptive else 0

    def hit_ratio(self) -> float | None:
        """Of the cold starts so far, the share that found a runtime ready (None: none yet)."""
        total = sum(self.found.values())
        return self.found["ready"] / total if total else None

    def stats(self) -> dict[str, float | int | None]:
        ratio = self.hit_ratio()
        return {"taken_none": self.found["none"],
                "hit_ratio": round(ratio, 4) if ratio is not None else None,
                "cold_start_rate": round(self.rate(), 3), "boot_ms": round(self.boot_s * 1000, 1),
                "demand": self.demand()}

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
        need = self.in_flight_need()
        wanted = max(self.floor, demand + 1 if demand else 0, self.floor + self.extra,
                     demand + self.extra, need + 1 if need else 0)
        return min(wanted, self.ceiling())
