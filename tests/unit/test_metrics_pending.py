"""metrics.py: successful invokes are counted into the labelled series in batches — all of
them by the time /metrics is read, and without a scrape once PENDING_LIMIT are waiting."""
from __future__ import annotations

from pathlib import Path

from lambdaplane.metrics import PENDING_LIMIT, Metrics
from lambdaplane.sandbox.types import FunctionSpec, InvocationResult


def _spec() -> FunctionSpec:
    return FunctionSpec("us-east-1", "fn", "arn:aws:lambda:us-east-1:123456789012:function:fn",
                        "$LATEST", "python3.11", "app.handler", 128, 3, {}, "sha",
                        Path("/nonexistent"), "rev")


def _count(metrics: Metrics) -> float:
    value = metrics.registry.get_sample_value(
        "lambdaplane_invocations_total", {"function": "fn", "outcome": "success"})
    return value or 0.0


def test_successes_are_counted_in_batches_and_all_by_a_scrape() -> None:
    metrics = Metrics()
    for _ in range(PENDING_LIMIT - 1):
        metrics.observe(_spec(), InvocationResult(b"{}", duration_ms=1.0))
    assert _count(metrics) == 0  # waiting: counted together
    assert metrics.function_counts("fn").invocations == PENDING_LIMIT - 1  # the console's now
    metrics.observe(_spec(), InvocationResult(b"{}", duration_ms=1.0))
    assert _count(metrics) == PENDING_LIMIT  # a full batch is counted without a scrape
    metrics.observe(_spec(), InvocationResult(b"{}", duration_ms=2.0))
    metrics._count_pending()  # what render() does before it writes the scrape
    assert _count(metrics) == PENDING_LIMIT + 1
    assert metrics.registry.get_sample_value(
        "lambdaplane_invocation_duration_seconds_count", {"function": "fn"}) == PENDING_LIMIT + 1
