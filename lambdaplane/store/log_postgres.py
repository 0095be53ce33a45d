"""The log store's PostgreSQL side (store/log_store.py owns the schema and the statements
both backends share): its tables made under the schema lock, a NUL character, which
PostgreSQL's text cannot hold, stored as U+FFFD, and event queries without SQLite's
planner hints: GLOB conditions spelt LIKE (store/dialect.py), a Python matcher applied to
pages of the events the SQL selects (no user functions inside PostgreSQL)."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .dialect import Dialect, PostgresDialect

if TYPE_CHECKING:
    from .log_store import EventQuery, StoredEvent

MATCH_PAGE = 1000  # events read per page when a Python matcher filters them
NUL_STORED_AS = "\ufffd"  # PostgreSQL's text holds no NUL character; SQLite's does
WRITE_LOCK_KEY = 0x6C70_6C67  # "lplg": the advisory lock around a log write


def create_tables(conn: Any, data_dir: Path, schema: str) -> None:
    """The prelude and the log tables, once, whoever else opens the database at once; the
    connection is closed if that fails."""
    from .db import Database
    from .migrations import schema_lock
    try:
        with schema_lock(Database(conn, data_dir, conn.dialect)):
            conn.create_tables([schema])
    except BaseException:
        conn.close()
        raise


def lock_writes(conn: Any) -> None:
    """Inside a transaction just begun: wait for the log store's write lock (released at
    COMMIT/ROLLBACK); the transaction is rolled back if that fails."""
    try:
        conn.execute("SELECT pg_advisory_xact_lock(?)", (WRITE_LOCK_KEY,))
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def storable(events: Sequence[tuple[int, str]]) -> list[tuple[int, str]]:
    """The events as PostgreSQL's text can hold them (a NUL as U+FFFD)."""
    return [(ts, message.replace("\x00", NUL_STORED_AS)) for ts, message in events]


def oldest_to_free(conn: Any, excess: int, overhead: int) -> list[tuple[int, int]]:
    """The oldest-ingested events (id, bytes) whose sizes add up to `excess`: counted by the
    server (a running sum), not by reading every event's size across the socket."""
    rows = conn.execute(
        "SELECT id, size FROM (SELECT id, octet_length(message) AS size, "
        "sum(octet_length(message) + ?) OVER (ORDER BY id) AS freed FROM log_events) AS t "
        "WHERE freed - size - ? < ? ORDER BY id", (overhead, overhead, excess)).fetchall()
    return [(int(r[0]), int(r[1])) for r in rows]


def events(read: Callable[["EventQuery", str], list["StoredEvent"]], dialect: Dialect,
           q: "EventQuery") -> list["StoredEvent"]:
    """The events `q` asks for, read with `read` (LogStore._events, no planner hint)."""
    if q.condition is not None:
        assert isinstance(dialect, PostgresDialect)
        q = replace(q, condition=dialect.glob_as_like(*q.condition))
    if q.matcher is None:
        return read(q, "")
    matcher, found = q.matcher, []
    page = replace(q, matcher=None, limit=MATCH_PAGE)
    while len(found) < q.limit:
        rows = read(page, "")  # in (timestamp, id) order
        if q.backward:
            rows.reverse()  # newest first, as the pages go
        found += [e for e in rows if matcher(e.message)][:q.limit - len(found)]
        if len(rows) < MATCH_PAGE:
            break
        position = (rows[-1].timestamp, rows[-1].id)
        page = replace(page, before=position) if q.backward else replace(page, after=position)
    return found[::-1] if q.backward else found
