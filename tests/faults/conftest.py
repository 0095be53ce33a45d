"""Prints the crash-recovery summary (trials, requests, acknowledged changes, violations) at the
end of any pytest run that included it, e.g. `make test`."""
from __future__ import annotations

import pytest

SUMMARY: list[str] = []  # lines the fault-injection test adds


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if SUMMARY:
        terminalreporter.section("fault injection (SIGKILL) summary")
        for line in SUMMARY:
            terminalreporter.write_line(line)
