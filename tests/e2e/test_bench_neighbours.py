"""`lambdaplane bench neighbours --quick`: the noisy-neighbour benchmark runs and writes its
figure (victim warm p50/p99 quiet and next to a spinner, and their ratio). Shapes only, never
a timing: the figure is read from the JSON, not asserted."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.root


def test_bench_neighbours_quick_writes_its_figure(bench_all_quick: Path) -> None:
    out = bench_all_quick  # tests/conftest.py: `bench all --quick`, once per session
    result = json.loads((out / "neighbours.json").read_text())
    assert result["quiet"]["n"] == result["noisy"]["n"] == 60
    assert result["spinner_concurrency"] >= 2
    assert result["noisy_over_quiet_p99"] > 0
    assert result["rounds"] == len(result["per_round"]) == 1
    assert len(result["load_before"]) == len(result["load_after"]) == 3
    # beside it, a server with the kernel's default CPU slice (cpu_slice.py), same rounds
    compared = result["compared"]["cpu-slice-us 0"]
    assert compared["median_of_rounds"]["noisy_over_quiet_p99"] > 0
    assert len(compared["per_round"]) == 1
    assert (out / "neighbours.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
