"""`lambdaplane bench nat --quick`: the NAT gateway benchmark in a tiny size, so it cannot rot.
Shapes and counts are asserted (both paths measured without errors, the NAT gateway's own
counters saw the flows), never a timing or a ratio."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.root


def test_bench_nat_quick(bench_all_quick: Path) -> None:
    out = bench_all_quick  # tests/conftest.py: `bench all --quick`, once per session
    result = json.loads((out / "nat.json").read_text())
    assert set(result["paths"]) == {"direct", "nat_gateway"} == set(result["path_definitions"])
    for row in result["paths"].values():
        assert row["throughput_gbit_s"] > 0
        assert row["connections"]["connections"] > 0 and row["connections"]["errors"] == 0
    assert set(result["ratios"]) == {"throughput_ratio", "conn_rate_ratio"}
    assert set(result["ratios_paired_median"]) == set(result["ratios"])
    # the gateway pass with nothing to change, in full and skipped (it changed nothing: the
    # benchmark checks that itself)
    assert set(result["gateway_reconcile_ms"]) == {"read_back", "unchanged", "runs"}
    counted = result["nat_gateway_metrics"]
    # the NAT path's connections were the NAT gateway's (its counters), none refused
    assert counted["ConnectionAttemptCount"] >= result["paths"]["nat_gateway"]["connections"][
        "connections"]
    assert counted["ErrorPortAllocation"] == 0 and counted["BytesOutToDestination"] > 0
