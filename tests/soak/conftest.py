"""Prints the soak summary (invocations, baseline vs after) at the end of any pytest run that
included it, e.g. `make test`."""
from __future__ import annotations

import pytest

SUMMARY: list[str] = []  # lines the soak test adds


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if SUMMARY:
        terminalreporter.section("soak summary")
        for line in SUMMARY:
            terminalreporter.write_line(line)
