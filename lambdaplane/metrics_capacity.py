"""The /metrics families of adaptive capacity (sandbox/capacity.py): each target with the
bound that set it, and the learnt peaks of concurrent cold starts it follows."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric

BOUNDS = ("floor", "demand", "cap", "memory", "fixed", "off")


def families(capacity: dict[str, Any]) -> Iterator[Metric]:
    if not capacity:
        return
    g = GaugeMetricFamily("lambdaplane_capacity_target",
                          "Sandboxes kept ready, by kind (pool: network namespaces; prefork: "
                          "pre-forked sandboxes) and the bound that set it (floor, demand, "
                          "cap, memory; fixed with --capacity fixed; off)",
                          labels=["kind", "bound"])
    for kind in ("pool", "prefork"):
        g.add_metric([kind, str(capacity.get(f"{kind}_bound", ""))],
                     capacity.get(f"{kind}_target", 0))
    yield g
    g = GaugeMetricFamily("lambdaplane_capacity_learnt_peak",
                          "Recent peak of concurrent cold starts (decaying over the capacity "
                          "window), per runtime interpreter; '*' for all", labels=["runtime"])
    g.add_metric(["*"], capacity.get("learnt_peak", 0))
    for runtime, peak in sorted(capacity.get("learnt_peaks", {}).items()):
        if runtime != "*":
            g.add_metric([runtime], peak)
    yield g
    g = GaugeMetricFamily("lambdaplane_capacity_limit",
                          "Bounds of the adaptive targets: the operator's cap "
                          "(--capacity-max) and the floors (--pool-size, --prefork)",
                          labels=["limit"])
    for key in ("cap", "pool_floor", "prefork_floor"):
        g.add_metric([key], capacity.get(key, 0))
    yield g
    g = GaugeMetricFamily("lambdaplane_host_memory_available_bytes",
                          "MemAvailable when the targets were last set")
    g.add_metric([], capacity.get("memory_available_mb", 0) * 2**20)
    yield g
