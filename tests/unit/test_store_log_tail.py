"""The console's live tail over the Logs store (service/store_log_tail.py), on a real
LogsService and its ingest thread: the last lines, then each new one once; an event stored
late (an earlier timestamp than one already shown, from another execution environment) still
shown; a scan longer than a page continued without loss or repeat; a group made again followed
from its start; names that cannot be a function's refused."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from lambdaplane.config import Settings
from lambdaplane.service import store_log_tail
from lambdaplane.service.logs import LogsService
from lambdaplane.service.store_log_tail import StoreLogTail
from lambdaplane.store.log_store import now_ms

REGION = "us-east-1"
GROUP = "/aws/lambda/fn"
STREAM = "2026/12/06/[$LATEST]" + "a" * 32


@pytest.fixture
def logs(tmp_path: Path, database_url: str | None) -> Iterator[LogsService]:
    svc = LogsService(Settings(data_dir=tmp_path, logs_max_bytes=10_000_000,
                               database=database_url or ""))
    svc.ingest.start()
    try:
        yield svc
    finally:
        svc.ingest.stop()
        svc.store.close()


def tail_of(logs: LogsService) -> StoreLogTail:
    return StoreLogTail(logs, lambda region, name: f"/aws/lambda/{name}")


def write(logs: LogsService, text: str, stream: str = STREAM) -> None:
    logs.ingest.feed_for(REGION, GROUP, stream)(text)
    assert logs.ingest.flush(10)


def put(logs: LogsService, stream: str, *events: tuple[int, str]) -> None:
    logs.put_log_events(REGION, {"logGroupName": GROUP, "logStreamName": stream, "logEvents": [
        {"timestamp": t, "message": m} for t, m in events]})


def test_the_last_lines_then_each_new_line_once(logs: LogsService) -> None:
    tail = tail_of(logs)
    lines, cursor = tail.follow(REGION, "fn", None, 2)
    assert lines == []  # no output yet: no group
    write(logs, "one\ntwo\nthree")
    lines, cursor = tail.follow(REGION, "fn", cursor, 2)
    assert lines == ["two", "three"]
    assert tail.follow(REGION, "fn", cursor, 2)[0] == []
    write(logs, "four")
    lines, cursor = tail.follow(REGION, "fn", cursor, 2)
    assert lines == ["four"]
    assert tail.follow(REGION, "fn", cursor, 2)[0] == []
    fresh, _ = tail.follow(REGION, "fn", None, 3)  # another page opening: its own cursor
    assert fresh == ["two", "three", "four"]


def test_an_event_stored_late_is_still_shown(logs: LogsService) -> None:
    tail = tail_of(logs)
    logs.create_log_group(REGION, {"logGroupName": GROUP})
    for stream in ("env-a", "env-b"):
        logs.create_log_stream(REGION, {"logGroupName": GROUP, "logStreamName": stream})
    now = now_ms()
    put(logs, "env-a", (now - 1000, "a at -1000"))
    lines, cursor = tail.follow(REGION, "fn", None, 10)
    assert lines == ["a at -1000"]
    # another environment's line, written earlier, reaches the store only now
    put(logs, "env-b", (now - 2000, "b at -2000"))
    put(logs, "env-a", (now - 500, "a at -500"))
    lines, cursor = tail.follow(REGION, "fn", cursor, 10)
    assert lines == ["b at -2000", "a at -500"]  # in time order, each once
    assert tail.follow(REGION, "fn", cursor, 10)[0] == []


def test_a_long_scan_goes_on_over_several_calls(logs: LogsService,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_log_tail, "PAGE", 3)
    tail = tail_of(logs)
    write(logs, "first")
    lines, cursor = tail.follow(REGION, "fn", None, 10)
    assert lines == ["first"]
    write(logs, "\n".join(f"line {i}" for i in range(10)))
    seen: list[str] = []
    for _ in range(10):
        lines, cursor = tail.follow(REGION, "fn", cursor, 10)
        seen += lines
    assert seen == [f"line {i}" for i in range(10)]


def test_a_group_made_again_is_followed_from_its_start(logs: LogsService) -> None:
    tail = tail_of(logs)
    write(logs, "old one\nold two")
    _, cursor = tail.follow(REGION, "fn", None, 10)
    logs.delete_log_group(REGION, {"logGroupName": GROUP})
    assert tail.follow(REGION, "fn", cursor, 10)[0] == []
    write(logs, "new")
    lines, _ = tail.follow(REGION, "fn", cursor, 10)
    assert lines == ["new"]


def test_a_name_that_is_no_functions_is_refused(logs: LogsService) -> None:
    with pytest.raises(ValueError):
        tail_of(logs).follow(REGION, "../../etc/passwd", None, 10)
