"""The /metrics families of the pre-started runtimes (sandbox/prewarm.py with a runtime,
sized by sandbox/prestart_sizing.py): per Node.js runtime, what its cold starts found (a
runtime ready, one still starting, none — the hit ratio, the load-robust measure of whether the
pool keeps up), how many it keeps and has ready, its observed boot time and cold-start rate."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

FOUND = {"ready": "taken_ready", "starting": "taken_starting", "none": "taken_none"}
LEVELS = (("target", "prewarmed_target", "Pre-started sandboxes the pool keeps"),
          ("ready", "runtime_ready", "Pre-started sandboxes whose runtime is ready"),
          ("booting", "booting", "Pre-started sandboxes being made or whose runtime is starting"))


def families(prestarted: dict[str, dict[str, Any]]) -> Iterator[Metric]:
    """`prestarted`: the execution layer's stats()["prestarted"], per runtime."""
    if not prestarted:
        return
    c = CounterMetricFamily("lambdaplane_prestart_cold_starts",
                            "Cold starts of a pre-started runtime, by what they found in its "
                            "pool: a runtime ready, one still starting, none",
                            labels=["runtime", "found"])
    for runtime, stats in sorted(prestarted.items()):
        for found, key in FOUND.items():
            c.add_metric([runtime, found], stats.get(key, 0))
    yield c
    g = GaugeMetricFamily("lambdaplane_prestart_hit_ratio",
                          "Share of the cold starts so far that found their runtime ready",
                          labels=["runtime"])
    for runtime, stats in sorted(prestarted.items()):
        if stats.get("hit_ratio") is not None:
            g.add_metric([runtime], stats["hit_ratio"])
    yield g
    for name, key, help_ in LEVELS:
        g = GaugeMetricFamily(f"lambdaplane_prestart_{name}", help_, labels=["runtime"])
        for runtime, stats in sorted(prestarted.items()):
            g.add_metric([runtime], stats.get(key, 0))
        yield g
    g = GaugeMetricFamily("lambdaplane_prestart_boot_seconds",
                          "Observed time from a pre-started sandbox made to its runtime ready "
                          "(moving average)", labels=["runtime"])
    for runtime, stats in sorted(prestarted.items()):
        g.add_metric([runtime], stats.get("boot_ms", 0) / 1000)
    yield g
    g = GaugeMetricFamily("lambdaplane_prestart_cold_start_rate",
                          "Cold starts per second of the runtime, recent", labels=["runtime"])
    for runtime, stats in sorted(prestarted.items()):
        g.add_metric([runtime], stats.get("cold_start_rate", 0))
    yield g
