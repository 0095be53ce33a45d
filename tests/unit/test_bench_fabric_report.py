"""`bench fabric`'s lines in the report (bench/report.py): its three ratios, each with its plot,
with the same run's absolute figures where the result has them; a ratio not measured (a path
that failed) shows as "—"."""
from __future__ import annotations

from lambdaplane.bench import report


def test_fabric_lines_show_the_three_ratios() -> None:
    result = {"cold_start": {"p50_ratio": 1.042},
              "datapath": {"ratios": {"throughput_ratio": 0.613, "conn_rate_ratio": None}}}
    lines = report.lines({"fabric": result})
    assert [line.measured for line in lines] == ["1.04×", "0.613", "—"]
    assert all(line.benchmark == "fabric" and line.plot == "fabric.png" and line.met is None
               for line in lines)
    assert "fabric" in report.markdown({"fabric": result})


def test_fabric_lines_give_the_figures_beside_the_ratios() -> None:
    paths = {"eni_across_fabric": {"throughput_gbit_s": 7.3, "connections_per_s": 3499},
             "direct_veth": {"throughput_gbit_s": 14.2, "connections_per_s": 11305},
             "eni_same_host": {"throughput_gbit_s": 11.6, "connections_per_s": 5130}}
    result = {"cold_start": {"p50_ratio": 1.016, "p99_ratio": 2.002,
                             "same_host": {"p50_ms": 22.63}, "across_fabric": {"p50_ms": 22.99}},
              "datapath": {"paths": paths,
                           "ratios": {"throughput_ratio": 0.516, "conn_rate_ratio": 0.31}}}
    cold, tcp, conns = (line.measured for line in report.lines({"fabric": result}))
    assert cold == "23.0 / 22.6 ms = 1.02× (p99 2.00×)"
    assert tcp == "0.516 (7.3 Gbit/s / 14.2 Gbit/s; same host through the ENI: 11.6 Gbit/s)"
    assert conns == "0.310 (3,499/s / 11,305/s; same host through the ENI: 5,130/s)"
