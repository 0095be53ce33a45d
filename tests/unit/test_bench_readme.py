"""`bench report --readme` (bench/readme.py): the README's marked blocks are rewritten from one
run's results — the stamp, the Measured table with links into the run's directory, bench vpc's
table — and nothing outside them; a README without the markers is refused, unchanged."""
from __future__ import annotations

from pathlib import Path

import pytest

from lambdaplane.bench import readme

README = """# x
Prose stays.
<!-- bench:measured-run -->
old stamp
<!-- /bench:measured-run -->
<!-- bench:measured -->
| old |
<!-- /bench:measured -->
Between.
<!-- bench:vpc -->
| old vpc |
<!-- /bench:vpc -->
End.
"""


def _row(concurrency: int, vpc: float, no_vpc: float, side: dict | None) -> dict:
    row = {"concurrency": concurrency, "vpc": {"p50_ms": vpc, "p99_ms": 2 * vpc},
           "no_vpc": {"p50_ms": no_vpc, "p99_ms": 2 * no_vpc}, "p50_ratio": vpc / no_vpc,
           "addresses_in_use": 1 if side else concurrency}
    if side:
        row["side_by_side"] = side
    return row


RESULTS = {
    "invoke": {"machine": {"time": "2026-12-07T18:32:30Z"}, "runtime": "python3.11",
               "cold_start": {"p50_ms": 14.1, "p99_ms": 117.6},
               "warm_invoke": {"p50_ms": 0.555, "p99_ms": 7.4},
               "ceiling": {"fork_exec_python": {"p50_ms": 23.2}}},
    "vpc": {"machine": {"time": "2026-12-07T18:50:00Z"},
            "modes": {"hyperplane": {"rows": [
                _row(1, 9.7, 9.0, {"p50_ratio": 1.04, "round_p50_ratios": [0.7, 3.29]}),
                _row(10, 31.5, 31.2, {"p50_ratio": 1.11, "round_p50_ratios": [0.88, 1.36]})]},
                "legacy": {"rows": [_row(1, 203.3, 9.8, None)]}}},
}


def test_blocks_are_rewritten_from_the_run(tmp_path: Path) -> None:
    path = tmp_path / "README.md"
    path.write_text(README)
    out = tmp_path / "docs" / "bench"
    assert readme.update(path, out, RESULTS) == ["measured-run", "measured", "vpc"]
    text = path.read_text()
    assert not any(old in text for old in ("old stamp", "| old |", "old vpc"))
    assert text.startswith("# x\nProse stays.\n") and "\nBetween.\n" in text
    assert text.endswith("<!-- /bench:vpc -->\nEnd.\n")
    assert "2026-12-07 18:32–18:50 UTC" in text and "same run: 23.2 ms p50" in text
    assert "[cold start p50 (HTTP API, hello world, python3.11)](docs/bench/invoke.png)" in text
    assert "| 14.1 ms (0.61× fork+exec of `python3 -c pass` in the same run, 23.2 ms) |" in text
    assert "| 1.11× (1.04, 1.11 at 1, 10) | ≤ 1.05× | **no** |" in text
    assert "| hyperplane | 10 | 31.5 / 63.0 | 31.2 / 62.4 | 1.01 | 1.11 (rounds 0.88–1.36) | 1 |" \
        in text
    assert "| legacy | 1 | 203.3 / 406.6 | 9.80 / 19.6 | 20.74 | — | 1 |" in text
    readme.update(path, out, RESULTS)  # again: the same text, the markers kept
    assert path.read_text() == text


def test_a_file_without_the_markers_is_refused_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "README.md"
    path.write_text("# nothing marked\n")
    with pytest.raises(readme.MissingMarkers, match="bench:measured-run"):
        readme.update(path, tmp_path, RESULTS)
    assert path.read_text() == "# nothing marked\n"
