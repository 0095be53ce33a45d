"""The pre-started runtimes' /metrics families (metrics_prestart.py), rendered from the stats
the execution layer reports per runtime."""
from __future__ import annotations

from prometheus_client import generate_latest
from prometheus_client.registry import Collector, CollectorRegistry

from lambdaplane import metrics_prestart

STATS = {"nodejs22.x": {"prewarmed_target": 5, "runtime_ready": 3, "booting": 2,
                        "taken_ready": 8, "taken_starting": 1, "taken_none": 1,
                        "hit_ratio": 0.8, "boot_ms": 250.0, "cold_start_rate": 1.5}}


class _Fixed(Collector):
    def __init__(self, stats: dict) -> None:
        self.stats = stats

    def collect(self):  # type: ignore[no-untyped-def]
        return metrics_prestart.families(self.stats)


def _render(stats: dict) -> str:
    registry = CollectorRegistry()
    registry.register(_Fixed(stats))
    return generate_latest(registry).decode()


def test_hit_ratio_counts_and_levels_per_runtime() -> None:
    text = _render(STATS)
    for line in ('lambdaplane_prestart_cold_starts_total{found="ready",runtime="nodejs22.x"} 8.0',
                 'lambdaplane_prestart_cold_starts_total{found="starting",runtime="nodejs22.x"} '
                 '1.0',
                 'lambdaplane_prestart_cold_starts_total{found="none",runtime="nodejs22.x"} 1.0',
                 'lambdaplane_prestart_hit_ratio{runtime="nodejs22.x"} 0.8',
                 'lambdaplane_prestart_target{runtime="nodejs22.x"} 5.0',
                 'lambdaplane_prestart_ready{runtime="nodejs22.x"} 3.0',
                 'lambdaplane_prestart_booting{runtime="nodejs22.x"} 2.0',
                 'lambdaplane_prestart_boot_seconds{runtime="nodejs22.x"} 0.25',
                 'lambdaplane_prestart_cold_start_rate{runtime="nodejs22.x"} 1.5'):
        assert line in text, text


def test_no_ratio_before_a_cold_start_and_nothing_without_a_pool() -> None:
    text = _render({"nodejs20.x": {"hit_ratio": None}})
    assert 'lambdaplane_prestart_hit_ratio{runtime="nodejs20.x"}' not in text
    assert 'lambdaplane_prestart_cold_starts_total{found="ready",runtime="nodejs20.x"} 0.0' in text
    assert _render({}) == ""
