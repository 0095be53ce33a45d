"""`bench fabric`'s lines in the report (bench/report.py): its three ratios, each with its plot;
a ratio not measured (a path that failed) shows as "—"."""
from __future__ import annotations

from lambdaplane.bench import report


def test_fabric_lines_show_the_three_ratios() -> None:
    result = {"cold_start": {"p50_ratio": 1.042},
              "datapath": {"ratios": {"throughput_ratio": 0.613, "conn_rate_ratio": None}}}
    lines = report.lines({"fabric": result})
    assert [line.measured for line in lines] == ["1.042", "0.613", "—"]
    assert all(line.benchmark == "fabric" and line.plot == "fabric.png" and line.met is None
               for line in lines)
    assert "fabric" in report.markdown({"fabric": result})
