"""`lambdaplane bench fabric --quick`, run by `bench all --quick`: the VPC function on the
other host than its resource (issue 20) in a tiny size, so it cannot rot: its own PostgreSQL,
two namespace-hosts with agents and FRR, two API servers. Shapes and counts are asserted (cold
starts on both hosts, every datapath path measured without connection errors, ratios present,
the plot written) and that nothing of it is left (its agents' instances, its host namespaces,
its servers' instances), never a timing or a ratio's value."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from lambdaplane.bench import postgres
from lambdaplane.cleanup import leftovers
from lambdaplane.net import frr

pytestmark = [pytest.mark.root,
              pytest.mark.skipif(not frr.installed(), reason="needs Debian's frr"),
              pytest.mark.skipif(not postgres.available(), reason="needs Debian's PostgreSQL")]


def test_bench_fabric_quick(bench_all_quick: Path) -> None:
    out = bench_all_quick  # tests/conftest.py: `bench all --quick` (fabric included), once
    result = json.loads((out / "fabric.json").read_text())
    assert result["benchmark"] == "fabric" and result["quick"] is True

    cold = result["cold_start"]
    rounds = result["plan"]["cold_rounds"]
    assert cold["same_host"]["n"] + cold["across_fabric"]["n"] + cold["not_cold"] == 2 * rounds
    assert cold["same_host"]["n"] >= 1 and cold["across_fabric"]["n"] >= 1
    assert isinstance(cold["p50_ratio"], float) and isinstance(cold["p99_ratio"], float)
    assert len(result["samples_ms"]["across_fabric"]) == cold["across_fabric"]["n"]

    paths = result["datapath"]["paths"]
    assert set(paths) == {"direct_veth", "eni_across_fabric", "eni_same_host"}
    assert set(result["datapath"]["path_definitions"]) == set(paths)
    for path, row in paths.items():
        assert row["failed"] == [], (path, row["failed"])  # e.g. a stalled stream (MTU)
        assert row["throughput_gbit_s"] > 0
        assert row["connections_per_s"] > 0 and row["connection_errors"] == 0
        assert len(row["throughput_rounds_gbit_s"]) == result["plan"]["datapath_rounds"]
    assert set(result["datapath"]["ratios"]) == {
        "throughput_ratio", "conn_rate_ratio", "same_host_throughput_ratio",
        "same_host_conn_rate_ratio"}
    assert all(isinstance(v, float) for v in result["datapath"]["ratios"].values())

    assert result["leftovers"] == []
    lab = result["lab"]
    assert len(lab["host_namespaces"]) == 2 and len(lab["agent_instances"]) == 2
    assert not any(Path("/run/netns", n).exists() for n in lab["host_namespaces"])
    assert [x for i in lab["agent_instances"] for x in leftovers(i)] == []
    assert (out / "fabric.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
