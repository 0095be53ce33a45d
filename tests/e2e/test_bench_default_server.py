"""`lambdaplane bench default-server --quick`: the before (--capacity fixed) and after
(adaptive) servers side by side, with the fork+exec ceiling, and its lines in the report.
Shapes and counts only, never a timing."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.root


def test_default_server_bench_measures_both_modes_and_reports_them(
        bench_all_quick: Path) -> None:
    out = bench_all_quick  # tests/conftest.py: `bench all --quick`, once per session
    result = json.loads((out / "default_server.json").read_text())
    plan = result["plan"]
    assert result["ceiling"]["fork_exec_python"]["n"] > 0
    for mode in ("fixed", "adaptive"):
        measured = result["modes"][mode]
        assert [b["burst"] for b in measured["bursts"]] == list(range(1, plan["bursts"] + 1))
        # every invoke of a burst was a cold start: one new environment each
        assert all(b["n"] == plan["burst"] for b in measured["bursts"])
        assert measured["distinct_cold"]["n"] == plan["distinct"]
        assert measured["distinct_cold"]["ratio_to_fork_exec_p50"] > 0
        assert measured["capacity_at_end"]["mode"] == mode
    # the adaptive server learnt the burst; the fixed one kept its flags
    assert result["modes"]["adaptive"]["capacity_at_end"]["learnt_peak"] >= plan["burst"]
    assert result["modes"]["fixed"]["capacity_before_each_burst"][-1]["pool_bound"] == "fixed"
    assert set(result["before_fixed_vs_after_adaptive"]["burst1_p99_ms"]) == {"fixed",
                                                                              "adaptive"}
    # memory after idle, on the server with a shortened window: raised, then back at floors
    memory = result["idle_memory"]
    assert memory["cold_starts_in_burst"] == memory["plan"]["burst"]
    assert memory["after_burst"]["reached"] and memory["after_idle"]["reached"]
    assert memory["at_start"]["server_rss_mb"] > 0
    assert memory["after_idle"]["environments"] == 0
    assert memory["after_idle"]["pool_target"] == memory["at_start"]["pool_target"]
    assert memory["after_idle"]["prewarmed_target"] == memory["at_start"]["prewarmed_target"]
    subprocess.run([sys.executable, "-m", "lambdaplane.cli", "bench", "report", "--out",
                    str(out)], check=True, capture_output=True, timeout=120)
    summary = (out / "summary.md").read_text()
    assert summary.count("| default_server |") == plan["bursts"] + 2  # + new functions, memory
