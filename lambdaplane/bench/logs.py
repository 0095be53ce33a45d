"""`lambdaplane bench logs`: the log store under 1 M events (`--quick`: 20,000). Fills one
log group of 10 streams spread over a day (1 % of lines carry ERROR, 10 carry a rare word, a
tenth are JSON), then times the Logs service's own calls — the code under the API handler,
without HTTP — each several times: FilterLogEvents with a common term, a rare term (a scan of
every event), a JSON pattern and a term in one stream, limit 100; GetLogEvents (latest 100);
and the ingest rate. Needs no server and no root; writes logs.json."""
from __future__ import annotations

import json
import random
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..config import Settings
from ..service.logs import LogsService
from .common import machine, summary, write_json

GROUP = "/aws/lambda/bench-logs"
STREAMS = 10
BATCH = 10_000
RARE = "needle"
REPEATS = 7


def _message(rng: random.Random, i: int) -> str:
    if i % 10 == 0:
        return json.dumps({"level": "ERROR" if i % 100 == 0 else "INFO",
                           "latency": rng.randint(1, 1000), "request": i})
    level = "ERROR" if i % 100 == 1 else "INFO"
    return (f"[{level}] 2026-12-06T12:00:00.000Z req-{i:08d} GET /items/{rng.randint(1, 9999)} "
            f"served in {rng.randint(1, 500)} ms")


def fill(service: LogsService, events: int) -> float:
    """Write `events` events; the seconds it took."""
    rng = random.Random(7)
    service.create_log_group("us-east-1", {"logGroupName": GROUP})
    group = service.store.group("us-east-1", GROUP)
    assert group is not None
    streams = []
    for s in range(STREAMS):
        service.create_log_stream("us-east-1", {"logGroupName": GROUP,
                                                "logStreamName": f"2026/12/06/[$LATEST]{s:032x}"})
        stream = service.store.stream(group.id, f"2026/12/06/[$LATEST]{s:032x}")
        assert stream is not None
        streams.append(stream.id)
    start_ms = int(time.time() * 1000) - 24 * 3600 * 1000
    step = max(1, 24 * 3600 * 1000 // events)
    rare_at = {events * k // 11 for k in range(1, 11)}
    began = time.perf_counter()
    for first in range(0, events, BATCH):
        rows: dict[int, list[tuple[int, str]]] = {}
        for i in range(first, min(first + BATCH, events)):
            message = _message(rng, i) + (f" {RARE}" if i in rare_at else "")
            rows.setdefault(streams[i % STREAMS], []).append((start_ms + i * step, message))
        for stream_id, batch in rows.items():
            service.store.put_events(group.id, stream_id, batch)
    return time.perf_counter() - began


def _time(call: Callable[[], dict[str, Any]]) -> tuple[dict[str, float], int]:
    samples, found = [], 0
    for _ in range(REPEATS):
        began = time.perf_counter()
        out = call()
        samples.append((time.perf_counter() - began) * 1000)
        found = len(out["events"])
    return summary(samples), found


def run(out_dir: Path, quick: bool) -> dict[str, Any]:
    events = 20_000 if quick else 1_000_000
    with tempfile.TemporaryDirectory(prefix="lp-bench-logs-") as tmp:
        service = LogsService(Settings(data_dir=Path(tmp)))
        try:
            fill_s = fill(service, events)
            region = "us-east-1"
            one_stream = f"2026/12/06/[$LATEST]{1:032x}"
            queries: dict[str, Callable[[], dict[str, Any]]] = {
                "filter_term_common": lambda: service.filter_log_events(
                    region, {"logGroupName": GROUP, "filterPattern": "ERROR", "limit": 100}),
                "filter_term_rare_full_scan": lambda: service.filter_log_events(
                    region, {"logGroupName": GROUP, "filterPattern": RARE, "limit": 100}),
                "filter_json_pattern": lambda: service.filter_log_events(
                    region, {"logGroupName": GROUP, "filterPattern": "{ $.latency > 990 }",
                             "limit": 100}),
                "filter_term_one_stream": lambda: service.filter_log_events(
                    region, {"logGroupName": GROUP, "filterPattern": "ERROR", "limit": 100,
                             "logStreamNames": [one_stream]}),
                "get_log_events_latest": lambda: service.get_log_events(
                    region, {"logGroupName": GROUP, "logStreamName": one_stream,
                             "limit": 100}),
            }
            results: dict[str, Any] = {}
            for name, call in queries.items():
                timing, found = _time(call)
                results[name] = {**timing, "events_returned": found}
            size = (Path(tmp) / "logs.sqlite3").stat().st_size
        finally:
            service.store.close()
    data = {"machine": machine(), "events": events, "streams": STREAMS,
            "ingest_events_per_s": round(events / fill_s), "db_bytes": size,
            "queries_ms": results,
            "note": "LogsService calls in-process (the API handler's code minus HTTP); "
                    "limit 100; p50 of 7 runs"}
    write_json(out_dir, "logs", data)
    return data
