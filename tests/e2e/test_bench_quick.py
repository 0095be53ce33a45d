"""`lambdaplane bench all --quick`: every benchmark once, in a tiny size, so none can rot, and
the one report they make. Shapes and counts are asserted — every figure present, every sample
a first invocation, plots are PNGs — never a timing."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.root

PNG = b"\x89PNG\r\n\x1a\n"


def test_bench_all_quick_writes_every_result_and_the_summary(bench_all_quick: Path) -> None:
    out = bench_all_quick  # tests/conftest.py: `bench all --quick`, once per session

    invoke = json.loads((out / "invoke.json").read_text())
    assert invoke["cold_start"]["n"] == 5 and invoke["warm_invoke"]["n"] == 20
    # the same-run cold-start ceiling: fork+exec of the interpreter, and the ratio to it
    assert invoke["ceiling"]["fork_exec_python"]["n"] > 0
    assert invoke["ratio_to_fork_exec"]["cold_p50"] > 0
    # bench all measures Node.js beside python3.11 where it is installed (the README's row)
    from lambdaplane.bench.run import _all_invoke_runtimes
    assert list(invoke.get("per_runtime", {})) == _all_invoke_runtimes()

    throughput = json.loads((out / "throughput.json").read_text())
    assert [r["concurrency"] for r in throughput["levels"]] == [1, 4]
    # the same-run ceiling: an aiohttp hello-world, same client, and the ratio to it
    assert throughput["ceiling"]["hello_world_aiohttp"]["invokes_per_s"] > 0
    assert throughput["ratio_to_hello_world"]["ratio"] > 0
    for row in throughput["levels"]:
        assert row["invokes"] > 0 and row["errors"] == 0
        assert row["invokes_per_s"] > 0 and row["latency"]["n"] == row["invokes"]
        # CPU per invoke read from /proc: the server (its event loop's thread among it), the
        # sandboxes it started, the client
        cpu = row["cpu_per_invoke"]
        assert cpu["server_us"] > 0 and cpu["server_threads_us"]["main"] > 0
        assert set(cpu) >= {"server_user_us", "server_system_us", "descendants_us",
                            "client_us", "server_context_switches"}
    assert throughput["ceiling"]["hello_world_aiohttp"]["cpu_per_request"]["server_us"] > 0
    assert throughput["ratio_to_hello_world"]["server_cpu_ratio"] > 0

    burst = json.loads((out / "burst.json").read_text())
    # every invoke of a burst is a cold start: one new environment each
    assert burst["vpc"]["n"] == burst["no_vpc"]["n"] == burst["plan"]["burst"]
    # the server's first burst of each, measured apart from the rounds
    assert {k: v["n"] for k, v in burst["first_burst_after_start"].items()} == {
        "vpc": burst["plan"]["burst"], "no_vpc": burst["plan"]["burst"]}
    assert burst["ceiling"]["fork_exec_python"]["n"] > 0
    assert burst["ratio_to_fork_exec"]["vpc_p99"] > 0
    for kind in ("vpc", "no_vpc"):
        assert set(burst["server_phase_mean_ms"][kind]) == {
            "pool_take", "vpc_attach", "cgroup", "spawn", "runtime_ready"}

    scale = json.loads((out / "scale.json").read_text())
    assert [r["concurrency"] for r in scale["rows"]] == [1, 4]
    for row in scale["rows"]:
        assert row["environments"] == row["concurrency"]  # all alive together
        assert row["memory"]["environments_measured"] == row["environments"]
        assert row["memory"]["pss_mib_per_env"] > 0
        assert row["api_list_functions"]["n"] > 0
    first, second = scale["rows"]
    # the second step reuses the first step's warm environment: one cold start fewer
    assert first["cold_all"]["n"] == 1 and second["cold_all"]["n"] == 3

    assert json.loads((out / "vpc.json").read_text())["modes"]
    default_server = json.loads((out / "default_server.json").read_text())
    assert set(default_server["modes"]) == {"fixed", "adaptive"}
    assert default_server["ceiling"]["fork_exec_python"]["n"] > 0
    assert default_server["idle_memory"]["after_idle"]["reached"]
    # the data path's ceiling: a direct veth, same run
    datapath = json.loads((out / "datapath.json").read_text())
    assert datapath["ratios"]["throughput_ratio"] > 0 and datapath["ratios"]["conn_rate_ratio"] > 0

    nat = json.loads((out / "nat.json").read_text())  # bench nat: NAT gateway vs direct
    assert set(nat["ratios"]) == {"throughput_ratio", "conn_rate_ratio"}

    summary = (out / "summary.md").read_text()
    for name in ("invoke", "throughput", "burst", "scale", "neighbours", "vpc", "datapath",
                 "default_server", "nat"):
        assert f"| {name} |" in summary
    lines = json.loads((out / "summary.json").read_text())["lines"]
    assert all(line["measured"] not in ("", "—") for line in lines)
    for png in ("invoke", "throughput", "burst", "scale", "vpc-cold-start-cdf"):
        assert (out / f"{png}.png").read_bytes()[:8] == PNG


def test_bench_report_writes_the_run_into_the_readme(bench_all_quick: Path,
                                                      tmp_path: Path) -> None:
    """`bench report --readme` on a copy of this repo's README: its markers are all there, and
    every marked block is rewritten from the run (the text around them is kept)."""
    import subprocess
    import sys
    readme = tmp_path / "README.md"
    original = (Path(__file__).parents[2] / "README.md").read_text()
    readme.write_text(original)
    done = subprocess.run([sys.executable, "-m", "lambdaplane.cli", "bench", "report", "--out",
                           str(bench_all_quick), "--readme", str(readme)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "wrote measured-run, measured, vpc" in done.stdout
    text = readme.read_text()
    summary = json.loads((bench_all_quick / "summary.json").read_text())
    assert all(line["measured"] in text for line in summary["lines"])
    before_marker = original.split("<!-- bench:measured-run -->")[0]
    assert text.startswith(before_marker)
