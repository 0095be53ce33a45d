"""The data dir's disk use, for /metrics: bytes on disk (du-style, allocated blocks) per
top-level part of the data dir (code, code-zips, logs, the database ...), so an operator sees
which part grows. Walking a large code store costs milliseconds, so a reading is kept for
`max_age_s` and scrapes in between reuse it."""
from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

from prometheus_client.core import GaugeMetricFamily, Metric

MAX_AGE_S = 30.0


def tree_bytes(path: str) -> int:
    """Allocated bytes of a file or directory tree (symlinks not followed)."""
    try:
        st = os.lstat(path)
    except OSError:
        return 0
    total = st.st_blocks * 512
    if not os.path.isdir(path) or os.path.islink(path):
        return total
    stack = [path]
    while stack:
        try:
            entries = os.scandir(stack.pop())
        except OSError:
            continue
        with entries:
            for entry in entries:
                try:
                    total += entry.stat(follow_symlinks=False).st_blocks * 512
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
                except OSError:
                    continue
    return total


def usage_by_part(data_dir: Path) -> dict[str, int]:
    parts: dict[str, int] = {}
    try:
        entries = list(os.scandir(data_dir))
    except OSError:
        return parts
    for entry in entries:
        parts[entry.name] = tree_bytes(entry.path)
    return parts


class DataDirCollector:
    """A prometheus collector: lambdaplane_data_dir_bytes{part=...}."""

    def __init__(self, data_dir: Path, max_age_s: float = MAX_AGE_S) -> None:
        self.data_dir = data_dir
        self.max_age_s = max_age_s
        self._read_at = -1e9
        self._parts: dict[str, int] = {}

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        if time.monotonic() - self._read_at > self.max_age_s:
            self._parts = usage_by_part(self.data_dir)
            self._read_at = time.monotonic()
        g = GaugeMetricFamily("lambdaplane_data_dir_bytes",
                              "Disk used by the data dir, by its top-level part (code, "
                              "code-zips, logs, database ...), read at most every "
                              f"{self.max_age_s:g} s", labels=["part"])
        for part, used in sorted(self._parts.items()):
            g.add_metric([part], used)
        yield g
        g = GaugeMetricFamily("lambdaplane_data_dir_total_bytes", "Disk used by the data dir")
        g.add_metric([], sum(self._parts.values()))
        yield g
