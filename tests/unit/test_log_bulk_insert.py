"""store/log_bulk_insert.py: a transaction's events go into SQLite in one statement, in
their order and byte for byte (non-ASCII, quotes, backslashes, control characters), with the
streams' counts as before; text with a NUL goes row by row and arrives whole too."""
from __future__ import annotations

import sqlite3
from pathlib import Path

from lambdaplane.store.log_bulk_insert import insert_rows
from lambdaplane.store.log_ingest import LogIngest, OutputBatch
from lambdaplane.store.log_store import EVENT_OVERHEAD, LogStore, connect, transaction

REGION = "us-east-1"
AWKWARD = ["plain", "é ü 漢字 😀 𝄞", 'quotes " and \\ backslash', "tab\there", "\x1b[31mred",
           "{\"json\": [1, 2]}", "trailing space ", "\u2028line separator"]


def _events(conn: sqlite3.Connection) -> list[tuple[int, int, int, int, str]]:
    return conn.execute("SELECT group_id, stream_id, ts, ingested, message FROM log_events "
                        "ORDER BY id").fetchall()


def test_rows_arrive_in_order_and_exact(tmp_path: Path) -> None:
    conn = connect(tmp_path / "logs.db")
    rows = [(1 + i % 2, 10 + i % 3, 1000 + i, text) for i, text in enumerate(AWKWARD * 3)]
    with transaction(conn):
        insert_rows(conn, rows, 5)
    assert _events(conn) == [(g, s, ts, 5, m) for g, s, ts, m in rows]
    assert [type(v) for v in _events(conn)[0]] == [int, int, int, int, str]


def test_a_nul_and_a_single_row_go_row_by_row(tmp_path: Path) -> None:
    conn = connect(tmp_path / "logs.db")
    with transaction(conn):
        insert_rows(conn, [(1, 1, 1, "before\x00after"), (1, 1, 2, "next")], 7)
        insert_rows(conn, [(1, 1, 3, "alone")], 7)
        insert_rows(conn, [], 7)
    assert [m for *_, m in _events(conn)] == ["before\x00after", "next", "alone"]


def test_ingest_counts_streams_and_writes_every_line(tmp_path: Path) -> None:
    store = LogStore(tmp_path)
    ingest = LogIngest(store.path)
    ingest.start()
    try:
        for n, text in enumerate(AWKWARD):
            ingest.submit(OutputBatch(REGION, "/aws/lambda/f", f"s{n % 2}", [(100 + n, text)]))
        assert ingest.flush()
    finally:
        ingest.stop()
    conn = connect(store.path)
    by_stream = {name: (first, last, size) for name, first, last, size in conn.execute(
        "SELECT name, first_event_ms, last_event_ms, stored_bytes FROM log_streams")}
    for s in (0, 1):
        texts = AWKWARD[s::2]
        stamps = [100 + n for n in range(s, len(AWKWARD), 2)]
        assert by_stream[f"s{s}"] == (
            min(stamps), max(stamps),
            sum(len(t.encode()) + EVENT_OVERHEAD for t in texts))
    assert sorted(m for *_, m in _events(conn)) == sorted(AWKWARD)
    assert ingest.written == len(AWKWARD)
