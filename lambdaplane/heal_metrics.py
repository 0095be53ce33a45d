"""The kernel watch's record in /metrics (service/kernel_watch.py): how many vanished kernel
objects of each kind the server rebuilt, and how many it finds missing right now."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from .service.kernel_watch import KINDS


class KernelHealthCollector:
    def __init__(self, watch: Any) -> None:
        self.watch = watch  # KernelWatch

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        state = self.watch.state
        c = CounterMetricFamily("lambdaplane_kernel_objects_healed",
                                "Kernel objects of the server found gone and rebuilt without a "
                                "restart (namespaces, nft tables, cgroups, pool sandboxes, zygotes)",
                                labels=["kind"])
        for kind in KINDS:
            c.add_metric([kind], state.heals.get(kind, 0))
        c.add_metric(["zygote"], getattr(self.watch.environments, "zygote_restarts", 0))
        yield c
        g = GaugeMetricFamily("lambdaplane_kernel_objects_missing",
                              "Kernel objects of the server found missing at the last look "
                              "(each second)", labels=["kind"])
        for kind in KINDS:
            g.add_metric([kind], len(state.missing_now.get(kind, [])))
        yield g
