"""`lambdaplane bench datapath --quick`: the data-path benchmark in a tiny size, so it cannot
rot. Shapes and counts are asserted (every path measured, the held connections all open and
tracked, port exhaustion failing cleanly and counted), never a timing or a ratio."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.root


def test_bench_datapath_quick(bench_all_quick: Path) -> None:
    out = bench_all_quick  # tests/conftest.py: `bench all --quick`, once per session
    result = json.loads((out / "datapath.json").read_text())
    assert set(result["paths"]) == {"direct_veth", "eni", "in_vpc", "runtime_api"}
    assert set(result["path_definitions"]) == set(result["paths"])
    for row in result["paths"].values():
        assert row["throughput_gbit_s"] > 0
        assert row["connections"]["connections"] > 0 and row["connections"]["errors"] == 0
    assert set(result["ratios"]) >= {"throughput_ratio", "conn_rate_ratio"}
    assert set(result["ratios_vs_runtime_api"]) >= {"throughput_ratio", "conn_rate_ratio"}
    held = result["concurrent"]
    assert held["established"] == held["wanted"] and held["errors"] == 0
    assert held["established_flows_in_plane_while_held"] == held["wanted"]
    ex = result["port_exhaustion"]
    assert ex["established"] == ex["snat_ports"] and ex["errors"] == 1
    assert ex["function_sees"] == ["ConnectionRefusedError"]  # at once, not a timeout
    assert ex["port_allocation_errors_counted"] >= 1
    assert ex["further_eni_connects"] is True
    assert (out / "datapath.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
