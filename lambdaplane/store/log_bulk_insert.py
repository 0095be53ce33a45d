"""Inserting a transaction's log events into SQLite in one statement. The log-ingest thread
writes while the event loop runs invocations; Python's sqlite3 lets go of the GIL around every
step of a statement, so `executemany` of one row per event handed the GIL back and forth with
the loop once or twice per event — the server's most frequent system call (futex) on the
warm invoke path. Here all rows go in as one JSON array, expanded by SQLite's json_each in
one step, in their order."""
from __future__ import annotations

import json
from typing import Any

INSERT_FROM_JSON = (
    "INSERT INTO log_events (group_id, stream_id, ts, ingested, message) "
    "SELECT value ->> 0, value ->> 1, value ->> 2, ?, value ->> 3 FROM json_each(?) "
    "ORDER BY key")
INSERT_ROW = ("INSERT INTO log_events (group_id, stream_id, ts, ingested, message) "
              "VALUES (?, ?, ?, ?, ?)")

Row = tuple[int, int, int, str]  # group id, stream id, timestamp ms, message


def insert_rows(conn: Any, rows: list[Row], ingested: int) -> None:
    """Add `rows` to log_events in their order (inside the caller's transaction)."""
    if not rows:
        return
    if len(rows) == 1:
        group_id, stream_id, ts, message = rows[0]
        conn.execute(INSERT_ROW, (group_id, stream_id, ts, ingested, message))
        return
    payload = json.dumps(rows, ensure_ascii=False, separators=(",", ":"))
    if "\\u0000" in payload:  # SQLite's JSON text ends at an escaped NUL: row by row
        conn.executemany(INSERT_ROW, [(g, s, ts, ingested, m) for g, s, ts, m in rows])
        return
    conn.execute(INSERT_FROM_JSON, (ingested, payload))
