"""A function that prints without end cannot fill the host's disk: its log file rotates at
--log-max-mb (two older files kept), a line longer than AWS's 256 KB is cut into events, and
/metrics reports the data dir's growth by part."""
from __future__ import annotations

import json
import re
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from lambdaplane.sandbox.logs import MAX_EVENT_BYTES
from tests.conftest import live_server
from tests.harness import LiveServer, create_python_function

pytestmark = pytest.mark.root

FLOOD = r'''
import sys
def handler(event, context):
    line = "f" * 1000 + "\n"
    for _ in range(event["kb"]):
        sys.stdout.write(line)
    sys.stdout.write("L" * event["long"] + "\n")
    sys.stdout.flush()
    return "flooded"
'''
LIMIT_MB = 1


@pytest.fixture
def small_logs(tmp_path: Path) -> Iterator[LiveServer]:
    yield from live_server(tmp_path, "--log-max-mb", str(LIMIT_MB))


def metric(server: LiveServer, name: str) -> dict[str, float]:
    with urllib.request.urlopen(server.endpoint + "/metrics", timeout=30) as r:
        text = r.read().decode()
    found = {}
    for m in re.finditer(rf'^{name}(?:{{part="([^"]*)"}})? (\S+)$', text, re.MULTILINE):
        found[m[1] or ""] = float(m[2])
    return found


def test_flood_is_bounded_by_rotation_and_events_by_256_kb(small_logs: LiveServer) -> None:
    server = small_logs
    lam = server.lambda_()
    create_python_function(lam, "flood", FLOOD, Timeout=60, MemorySize=256)
    for _ in range(12):  # 100 KB of lines and one 600 KB line each time: ~8.4 MB
        out = lam.invoke(FunctionName="flood",
                         Payload=json.dumps({"kb": 100, "long": 600 * 1024}))
        assert json.loads(out["Payload"].read()) == "flooded"
    logs = server.data_dir / "logs" / "us-east-1"
    files = sorted(p.name for p in logs.iterdir())
    assert files == ["flood.log", "flood.log.1", "flood.log.2"]
    sizes = [(logs / f).stat().st_size for f in files]
    limit = LIMIT_MB * 1024 * 1024
    assert all(size <= limit for size in sizes), sizes
    longest = max(len(line) for f in files for line in (logs / f).read_bytes().splitlines())
    assert longest == MAX_EVENT_BYTES  # the 600 KB lines were cut into 256 KB events
    assert metric(server, "lambdaplane_data_dir_bytes")["logs"] >= sum(sizes) * 0.9
    assert metric(server, "lambdaplane_data_dir_total_bytes")[""] > 0
    # the function and the platform still work
    out = lam.invoke(FunctionName="flood", Payload=json.dumps({"kb": 1, "long": 1}))
    assert json.loads(out["Payload"].read()) == "flooded"
