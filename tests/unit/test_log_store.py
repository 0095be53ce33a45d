"""The log store and LogsService without a server: the ingest thread's batches (group and
stream made on first use, one event per line, long lines split), durability across a reopen,
retention and the size bound really deleting events, the filter planner's two access paths
agreeing, and the lines `lambdaplane logs` reads."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from lambdaplane.config import Settings
from lambdaplane.errors import AwsError
from lambdaplane.service.logs import DAY_MS, LogsService
from lambdaplane.store import log_store
from lambdaplane.store.log_ingest import LogIngest
from lambdaplane.store.log_store import MAX_EVENT_BYTES, LogStore

REGION = "us-east-1"


@pytest.fixture
def service(tmp_path: Path, database_url: str | None):
    svc = LogsService(Settings(data_dir=tmp_path, logs_max_bytes=1_000_000,
                               database=database_url or ""))
    svc.ingest.start()
    try:
        yield svc
    finally:
        svc.ingest.stop()
        svc.store.close()


def _messages(svc: LogsService, group: str, **kw) -> list[str]:
    out = svc.filter_log_events(REGION, {"logGroupName": group, **kw})
    return [e["message"] for e in out["events"]]


def test_ingest_makes_group_and_stream_and_splits_lines(service: LogsService) -> None:
    feed = service.ingest.feed_for(REGION, "/aws/lambda/f", "2026/12/06/[$LATEST]" + "a" * 32)
    feed("START RequestId: r1 Version: $LATEST\nhello\n\nworld\n")
    feed("x" * (MAX_EVENT_BYTES + 10) + "\n")
    assert service.ingest.flush(10)
    assert _messages(service, "/aws/lambda/f")[:3] == [
        "START RequestId: r1 Version: $LATEST", "hello", "world"]  # empty lines dropped
    long_parts = _messages(service, "/aws/lambda/f")[3:]
    assert [len(p) for p in long_parts] == [MAX_EVENT_BYTES, 10]
    streams = service.describe_log_streams(REGION, {"logGroupName": "/aws/lambda/f"})
    assert streams["logStreams"][0]["logStreamName"].endswith("a" * 32)
    # a deleted group is made again by the next output (as Lambda does)
    service.delete_log_group(REGION, {"logGroupName": "/aws/lambda/f"})
    feed("again\n")
    assert service.ingest.flush(10)
    assert _messages(service, "/aws/lambda/f") == ["again"]
    # even when the ingest thread's cached ids are stale, nothing is written to a dead stream
    group = service.store.group(REGION, "/aws/lambda/f")
    assert group is not None
    service.store.delete_group(group.id)  # behind the ingest thread's back: no forget()
    feed("once more\n")
    assert service.ingest.flush(10)
    assert _messages(service, "/aws/lambda/f") == ["once more"]
    assert service.store.conn.execute("SELECT count(*) FROM log_events").fetchone()[0] == 1


def test_events_survive_a_reopen(tmp_path: Path, database_url: str | None) -> None:
    store = LogStore(tmp_path, database_url)
    store.create_group(REGION, "g", None, "STANDARD", {"k": "v"})
    group = store.group(REGION, "g")
    assert group is not None and store.create_stream(group.id, "s")
    stream = store.stream(group.id, "s")
    assert stream is not None
    store.put_events(group.id, stream.id, [(1000, "one"), (2000, "two")])
    store.close()
    again = LogStore(tmp_path, database_url)
    group = again.group(REGION, "g")
    assert group is not None and group.tags == {"k": "v"} and group.stored_bytes == 6 + 52
    found = again.events(log_store.EventQuery(group.id))
    assert [e.message for e in found] == ["one", "two"]
    again.close()


def test_retention_and_size_bound_delete_events(service: LogsService) -> None:
    service.create_log_group(REGION, {"logGroupName": "r"})
    service.create_log_stream(REGION, {"logGroupName": "r", "logStreamName": "s"})
    now = int(time.time() * 1000)
    service.put_log_events(REGION, {"logGroupName": "r", "logStreamName": "s", "logEvents": [
        {"timestamp": now - 4 * DAY_MS, "message": "old"},
        {"timestamp": now - 4 * DAY_MS + 1, "message": "old too"}]})
    service.put_log_events(REGION, {"logGroupName": "r", "logStreamName": "s",
                                    "logEvents": [{"timestamp": now, "message": "new"}]})
    service.store.set_retention(service.store.group(REGION, "r").id, 3)  # type: ignore[union-attr]
    assert service.sweep() == 2
    assert _messages(service, "r") == ["new"]
    stream = service.describe_log_streams(REGION, {"logGroupName": "r"})["logStreams"][0]
    assert stream["firstEventTimestamp"] == now and stream["storedBytes"] == 3 + 26
    # the size bound (1,000,000 bytes here): the oldest-ingested events go first
    service.create_log_stream(REGION, {"logGroupName": "r", "logStreamName": "big"})
    for i in range(12):
        service.put_log_events(REGION, {"logGroupName": "r", "logStreamName": "big",
                                        "logEvents": [{"timestamp": now + i,
                                                       "message": f"{i:02d}" + "x" * 99_000}]})
    service.sweep()
    assert service.store.total_bytes() <= 1_000_000
    kept = [m[:2] for m in _messages(service, "r", logStreamNames=["big"])]
    assert kept == [f"{i:02d}" for i in range(12 - len(kept), 12)] and len(kept) >= 9
    assert _messages(service, "r", logStreamNames=["s"]) == []  # "new" was older still


def test_filter_planner_paths_agree(service: LogsService, monkeypatch) -> None:
    service.create_log_group(REGION, {"logGroupName": "p"})
    group = service.store.group(REGION, "p")
    assert group is not None
    for s in ("a", "b"):
        service.create_log_stream(REGION, {"logGroupName": "p", "logStreamName": s})
    ids = [service.store.stream(group.id, s).id for s in ("a", "b")]  # type: ignore[union-attr]
    base = int(time.time() * 1000) - 3_600_000
    # stream b is written later but carries earlier timestamps: id order != time order
    service.store.put_events(group.id, ids[0], [(base + 2 * i, f"a{i} rare" if i % 997 == 0
                                                 else f"a{i}") for i in range(30_000)])
    service.store.put_events(group.id, ids[1], [(base + 2 * i + 1, f"b{i} rare" if i % 991 == 0
                                                 else f"b{i}") for i in range(30_000)])
    monkeypatch.setattr(log_store, "INDEX_WALK_BUDGET", 10 ** 9)  # the time index only
    walked = _messages(service, "p", filterPattern="rare", limit=50)
    monkeypatch.setattr(log_store, "INDEX_WALK_BUDGET", 1)  # force the sequential scan
    scanned = _messages(service, "p", filterPattern="rare", limit=50)
    assert walked == scanned and len(walked) == 50
    stamps = [int(m.split()[0][1:]) * 2 + (m[0] == "b") for m in walked]
    assert stamps == sorted(stamps)


def test_function_lines_tail_and_follow(service: LogsService) -> None:
    assert service.function_lines(REGION, "/aws/lambda/none", 10) is None
    feed = service.ingest.feed_for(REGION, "/aws/lambda/t", "s1")
    feed("one\ntwo\nthree\n")
    assert service.ingest.flush(10)
    lines, token = service.function_lines(REGION, "/aws/lambda/t", 2)  # type: ignore[misc]
    assert lines == ["two", "three"]
    assert service.function_lines(REGION, "/aws/lambda/t", 10, token) == ([], token)
    service.ingest.feed_for(REGION, "/aws/lambda/t", "s2")("four\n")
    assert service.ingest.flush(10)
    followed = service.function_lines(REGION, "/aws/lambda/t", 10, token)
    assert followed is not None and followed[0] == ["four"]


def test_bad_tokens_are_invalid_parameter(service: LogsService) -> None:
    service.create_log_group(REGION, {"logGroupName": "t"})
    service.create_log_stream(REGION, {"logGroupName": "t", "logStreamName": "s"})
    for call in (lambda: service.filter_log_events(REGION, {"logGroupName": "t",
                                                            "nextToken": "???"}),
                 lambda: service.get_log_events(REGION, {"logGroupName": "t",
                                                         "logStreamName": "s",
                                                         "nextToken": "x/123"}),
                 lambda: service.describe_log_groups(REGION, {"nextToken": "abc"})):
        with pytest.raises(AwsError) as err:
            call()
        assert err.value.code == "InvalidParameterException"


def test_put_log_events_size_limits(service: LogsService) -> None:
    service.create_log_group(REGION, {"logGroupName": "big"})
    service.create_log_stream(REGION, {"logGroupName": "big", "logStreamName": "s"})
    now = int(time.time() * 1000)
    for events in ([{"timestamp": now, "message": "x" * (256 * 1024)}],
                   [{"timestamp": now, "message": "x" * 200_000}] * 6):
        with pytest.raises(AwsError) as err:
            service.put_log_events(REGION, {"logGroupName": "big", "logStreamName": "s",
                                            "logEvents": events})
        assert err.value.code == "InvalidParameterException"
    assert _messages(service, "big") == []


def test_ingest_stop_writes_what_is_queued(tmp_path: Path, database_url: str | None) -> None:
    store = LogStore(tmp_path, database_url)
    ingest = LogIngest(store.path, store.database)
    ingest.start()
    for i in range(50):
        ingest.feed_for(REGION, "g", "s")(f"line {i}\n")
    ingest.stop()
    group = store.group(REGION, "g")
    assert group is not None
    assert len(store.events(log_store.EventQuery(group.id))) == 50
    store.close()


def test_patterns_and_awkward_characters_on_both(service: LogsService, monkeypatch) -> None:
    """Terms with LIKE's and GLOB's special characters match literally; a JSON pattern (a
    Python matcher: pages of events on PostgreSQL) finds every match past a page; sizes count
    UTF-8 bytes whatever the characters (backslashes, non-ASCII); a NUL character is kept on
    SQLite and stored as U+FFFD on PostgreSQL (whose text cannot hold it)."""
    from lambdaplane.store import log_postgres
    monkeypatch.setattr(log_postgres, "MATCH_PAGE", 7)
    service.create_log_group(REGION, {"logGroupName": "w"})
    service.create_log_stream(REGION, {"logGroupName": "w", "logStreamName": "s"})
    now = int(time.time() * 1000)
    messages = ["100% done", "1000 done", "a_b", "axb", r"C:\temp\x", "[*] star", "é\\n"]
    messages += [f'{{"n": {i}, "kind": "{"odd" if i % 2 else "even"}"}}' for i in range(40)]
    service.put_log_events(REGION, {"logGroupName": "w", "logStreamName": "s", "logEvents": [
        {"timestamp": now + i, "message": m} for i, m in enumerate(messages)]})
    assert _messages(service, "w", filterPattern='"0%"') == ["100% done"]
    assert _messages(service, "w", filterPattern="a_b") == ["a_b"]
    assert _messages(service, "w", filterPattern='"\\\\temp"') == [r"C:\temp\x"]
    assert _messages(service, "w", filterPattern='"[*]"') == ["[*] star"]
    assert _messages(service, "w", filterPattern="done -1000") == ["100% done"]
    odd = _messages(service, "w", filterPattern='{ $.kind = "odd" }', limit=15)
    assert odd == [messages[7 + i] for i in range(1, 30, 2)]
    page = service.filter_log_events(REGION, {"logGroupName": "w", "limit": 15,
                                              "filterPattern": '{ $.kind = "odd" }'})
    rest = _messages(service, "w", filterPattern='{ $.kind = "odd" }',
                     nextToken=page["nextToken"])
    assert rest == [messages[7 + i] for i in range(31, 40, 2)]
    group = service.store.group(REGION, "w")
    assert group is not None
    assert group.stored_bytes == sum(len(m.encode()) + 26 for m in messages)
    service.put_log_events(REGION, {"logGroupName": "w", "logStreamName": "s", "logEvents": [
        {"timestamp": now + 100, "message": "nul\x00byte"}]})
    stored_as = "\x00" if service.store.dialect.name == "sqlite" else "\ufffd"
    assert _messages(service, "w", filterPattern="nul") == [f"nul{stored_as}byte"]
    service.store.set_retention(group.id, 1)
    service.store.expire(group.id, now + 2)  # recounts the stream from what is left
    assert service.store.group(REGION, "w").stored_bytes == sum(  # type: ignore[union-attr]
        len(m.encode()) + 26 for m in [*messages[2:], f"nul{stored_as}byte"])
