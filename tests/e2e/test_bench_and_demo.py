"""`lambdaplane bench vpc --quick` and `lambdaplane demo`, run once each in a tiny size so they
cannot rot: the benchmark writes its JSON (both modes, every concurrency, ratios, addresses) and
plots; the demo prints PostgreSQL's answer, the function's ENI and the cold starts, and leaves
nothing behind. No timing is asserted."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness import LiveServer

pytestmark = pytest.mark.root


def test_bench_vpc_quick_writes_json_and_plots(bench_all_quick: Path) -> None:
    out = bench_all_quick  # tests/conftest.py: `bench all --quick`, once per session
    result = json.loads((out / "vpc.json").read_text())
    assert set(result["modes"]) == {"hyperplane", "legacy"}
    for mode in ("hyperplane", "legacy"):
        rows = result["modes"][mode]["rows"]
        assert [r["concurrency"] for r in rows] == result["plan"]["concurrency"]
        for row in rows:
            assert row["vpc"]["n"] > 0 and row["no_vpc"]["n"] > 0
            assert row["p50_ratio"] > 0 and row["p99_ratio"] > 0
            assert row["vpc_environments"] == row["concurrency"]
    hyperplane, legacy = result["modes"]["hyperplane"]["rows"], result["modes"]["legacy"]["rows"]
    for row in hyperplane:  # N of each function in one burst
        together = row["side_by_side"]
        assert together["vpc"]["n"] == together["no_vpc"]["n"] == \
            row["concurrency"] * together["rounds"]
        assert together["p50_ratio"] > 0 and len(together["round_p50_ratios"]) == \
            together["rounds"]
    assert "side_by_side" not in legacy[0]
    # Address use is counted, not timed: one ENI whatever the concurrency, vs one each.
    assert {r["addresses_in_use"] for r in hyperplane} == {1}
    assert [r["addresses_in_use"] for r in legacy] == [r["concurrency"] for r in legacy]
    assert set(result["verdict"]) >= {"hyperplane_p50_ratios", "hyperplane_ratio_goal_met",
                                      "hyperplane_p50_ratios_apart",
                                      "hyperplane_addresses_flat", "legacy_p50_ratios"}
    for plot in result["plots"]:
        assert Path(plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_demo_queries_postgres_through_the_vpc(server: LiveServer) -> None:
    if not Path("/usr/lib/postgresql").exists():
        pytest.skip("PostgreSQL is not installed")
    done = subprocess.run([sys.executable, "-m", "lambdaplane.cli", "demo", "--endpoint",
                           server.endpoint, "--samples", "1"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "answer: 'hello from PostgreSQL" in done.stdout
    eni_line = next(line for line in done.stdout.splitlines() if "the function's ENIs" in line)
    assert ": 1 — eni-" in eni_line  # Hyperplane: a single ENI
    # ... and the database saw the function's connection come from that ENI's address
    seen = done.stdout.split("the database saw the client as ")[1].split(")")[0]
    assert eni_line.endswith(f" {seen}")
    assert "cold start p50 over 1: VPC" in done.stdout
    assert "cleaned up" in done.stderr
    # Nothing of the demo is left in the server.
    ec2, lam = server.ec2(), server.lambda_()
    assert [v for v in ec2.describe_vpcs()["Vpcs"] if not v["IsDefault"]] == []
    assert lam.list_functions()["Functions"] == []
    assert server.admin("ps")["resources"] == []  # type: ignore[index]
