"""`lambdaplane bench logs --quick` runs without a server or root and writes logs.json with
every query's timing and what it found (no timing is asserted: numbers are for the bench)."""
from __future__ import annotations

import json
from pathlib import Path

from lambdaplane.bench import logs as bench_logs


def test_quick_logs_bench_writes_json(tmp_path: Path) -> None:
    result = bench_logs.run(tmp_path, quick=True)
    written = json.loads((tmp_path / "logs.json").read_text())
    assert written["events"] == result["events"] == 20_000
    queries = written["queries_ms"]
    assert set(queries) == {"filter_term_common", "filter_term_rare_full_scan",
                            "filter_json_pattern", "filter_term_one_stream",
                            "get_log_events_latest"}
    assert queries["filter_term_common"]["events_returned"] == 100
    assert queries["filter_term_rare_full_scan"]["events_returned"] == 10  # the rare word
    assert queries["get_log_events_latest"]["events_returned"] == 100
    assert all(q["n"] == 7 for q in queries.values())
