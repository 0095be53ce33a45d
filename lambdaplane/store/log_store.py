"""The log store: CloudWatch-Logs groups, streams and events in their own SQLite database
(`<data_dir>/logs.sqlite3`, WAL), so log writes never contend with the main store — or in the
PostgreSQL database `serve --database` names (SQLite's dialect, rewritten by store/dialect.py;
what differs more is in store/log_postgres.py).

Owns the schema and every statement on it. Two connections: `conn` for the event loop (the
Logs API) and one inside store/log_ingest.py's thread, which batches the functions' output
into the store off the invoke path. Events are indexed by (group, stream, timestamp)
for GetLogEvents and by (group, timestamp) for FilterLogEvents across streams. No AWS rules
here (validation, tokens, messages): service/logs.py has those."""
from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import log_postgres
from .dialect import dialect_of

DB_FILE = "logs.sqlite3"
EVENT_OVERHEAD = 26  # AWS counts each event as its UTF-8 message plus 26 bytes
INSERT_ROWS = 500  # events per INSERT (5 values each: inside both databases' limits)
MAX_EVENT_BYTES = 256 * 1024 - EVENT_OVERHEAD
# SQLite VM steps (in thousands) a filtered query may spend walking the time index before it
# switches to a sequential scan: about 30,000 events looked at.
INDEX_WALK_BUDGET = 200

SCHEMA = """
CREATE TABLE IF NOT EXISTS log_groups (
    id INTEGER PRIMARY KEY,
    region TEXT NOT NULL,
    name TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    retention_days INTEGER,
    kms_key_id TEXT,
    log_group_class TEXT NOT NULL DEFAULT 'STANDARD',
    tags TEXT NOT NULL DEFAULT '{}',
    UNIQUE (region, name)
);
CREATE TABLE IF NOT EXISTS log_streams (
    id INTEGER PRIMARY KEY,
    group_id INTEGER NOT NULL,
    name TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    first_event_ms INTEGER,
    last_event_ms INTEGER,
    last_ingestion_ms INTEGER,
    stored_bytes INTEGER NOT NULL DEFAULT 0,
    UNIQUE (group_id, name)
);
CREATE TABLE IF NOT EXISTS log_events (
    id INTEGER PRIMARY KEY,
    group_id INTEGER NOT NULL,
    stream_id INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    ingested INTEGER NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS log_events_by_stream ON log_events (group_id, stream_id, ts, id);
CREATE INDEX IF NOT EXISTS log_events_by_time ON log_events (group_id, ts, id);
"""


@dataclass
class LogGroup:
    id: int
    region: str
    name: str
    created_ms: int
    retention_days: int | None
    kms_key_id: str | None
    log_group_class: str
    tags: dict[str, str]
    stored_bytes: int = 0


@dataclass
class LogStream:
    id: int
    group_id: int
    name: str
    created_ms: int
    first_event_ms: int | None
    last_event_ms: int | None
    last_ingestion_ms: int | None
    stored_bytes: int


@dataclass(frozen=True)
class StoredEvent:
    id: int
    stream_name: str
    timestamp: int
    ingestion_time: int
    message: str


@dataclass
class EventQuery:
    """Which events of one group, in (timestamp, id) order from a position."""
    group_id: int
    stream_ids: Sequence[int] | None = None  # None: every stream of the group
    after: tuple[int, int] | None = None  # exclusive position when reading forward
    before: tuple[int, int] | None = None  # exclusive position when reading backward
    start_ms: int | None = None  # inclusive
    end_ms: int | None = None  # inclusive
    backward: bool = False
    limit: int = 10000
    condition: tuple[str, list[str]] | None = None  # SQL on `message`, from the pattern
    matcher: Callable[[str], bool] | None = None  # when the pattern has no SQL form


def now_ms() -> int:
    return int(time.time() * 1000)


def connect(path: Path, database: str | None = None) -> Any:  # or the database named
    if database:
        from .postgres import PgConnection
        return PgConnection(database)
    conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
    # Filtering reads events in time order through an index: bigger pages and a cache that
    # holds the hot part of the table make a scan of a million events mostly sequential.
    conn.execute("PRAGMA page_size=16384")  # takes effect when the file is created
    conn.execute("PRAGMA cache_size=-65536")
    conn.execute("PRAGMA mmap_size=268435456")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.executescript(SCHEMA)
    return conn


STREAM_COLUMNS = "id, group_id, name, created_ms, first_event_ms, last_event_ms, " \
    "last_ingestion_ms, stored_bytes"
class LogStore:
    def __init__(self, data_dir: Path, database: str | None = None) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.path = data_dir / DB_FILE
        self.database = database  # a postgresql:// URL (None: the SQLite file)
        self.conn = connect(self.path, database)
        self.dialect = dialect_of(self.conn)
        if database:
            log_postgres.create_tables(self.conn, data_dir, SCHEMA)

    def close(self) -> None:
        self.conn.close()

    # -- groups ---------------------------------------------------------------------------
    def create_group(self, region: str, name: str, kms_key_id: str | None,
                     log_group_class: str, tags: dict[str, str]) -> bool:
        """False if it exists already."""
        cur = self.conn.execute(
            "INSERT OR IGNORE INTO log_groups (region, name, created_ms, kms_key_id, "
            "log_group_class, tags) VALUES (?, ?, ?, ?, ?, ?)",
            (region, name, now_ms(), kms_key_id, log_group_class, json.dumps(tags)))
        return cur.rowcount == 1

    def group(self, region: str, name: str) -> LogGroup | None:
        row = self.conn.execute("SELECT * FROM log_groups WHERE region = ? AND name = ?",
                                (region, name)).fetchone()
        return self._group(row) if row else None

    def groups(self, region: str, prefix: str | None = None,
               contains: str | None = None) -> list[LogGroup]:
        sql, params = "SELECT * FROM log_groups WHERE region = ?", [region]
        if prefix:
            sql += " AND substr(name, 1, ?) = ?"
            params += [len(prefix), prefix]
        if contains:
            sql += " AND instr(lower(name), lower(?)) > 0"
            params.append(contains)
        return [self._group(r) for r in self.conn.execute(sql + " ORDER BY name", params)]

    def _group(self, row: tuple) -> LogGroup:
        gid = row[0]
        stored = self.conn.execute("SELECT coalesce(sum(stored_bytes), 0) FROM log_streams "
                                   "WHERE group_id = ?", (gid,)).fetchone()[0]
        return LogGroup(gid, row[1], row[2], row[3], row[4], row[5], row[6], json.loads(row[7]),
                        stored)

    def delete_group(self, group_id: int) -> None:
        with transaction(self.conn):
            self.conn.execute("DELETE FROM log_events WHERE group_id = ?", (group_id,))
            self.conn.execute("DELETE FROM log_streams WHERE group_id = ?", (group_id,))
            self.conn.execute("DELETE FROM log_groups WHERE id = ?", (group_id,))

    def set_retention(self, group_id: int, days: int | None) -> None:
        self.conn.execute("UPDATE log_groups SET retention_days = ? WHERE id = ?",
                          (days, group_id))

    def set_tags(self, group_id: int, tags: dict[str, str]) -> None:
        self.conn.execute("UPDATE log_groups SET tags = ? WHERE id = ?",
                          (json.dumps(tags), group_id))

    # -- streams ----------------------------------------------------------------------------
    def create_stream(self, group_id: int, name: str) -> bool:
        cur = self.conn.execute("INSERT OR IGNORE INTO log_streams (group_id, name, created_ms) "
                                "VALUES (?, ?, ?)", (group_id, name, now_ms()))
        return cur.rowcount == 1

    def stream(self, group_id: int, name: str) -> LogStream | None:
        row = self.conn.execute(f"SELECT {STREAM_COLUMNS} FROM log_streams "
                                "WHERE group_id = ? AND name = ?",
                                (group_id, name)).fetchone()
        return LogStream(*row) if row else None

    def streams(self, group_id: int, prefix: str | None = None,
                order_by_last_event: bool = False, descending: bool = False) -> list[LogStream]:
        sql, params = f"SELECT {STREAM_COLUMNS} FROM log_streams WHERE group_id = ?", [group_id]
        if prefix:
            sql += " AND substr(name, 1, ?) = ?"
            params += [len(prefix), prefix]
        direction = "DESC" if descending else "ASC"
        order = (f"coalesce(last_event_ms, 0) {direction}, name {direction}"
                 if order_by_last_event else f"name {direction}")
        return [LogStream(*r) for r in self.conn.execute(f"{sql} ORDER BY {order}", params)]

    def delete_stream(self, stream_id: int) -> None:
        with transaction(self.conn):
            self.conn.execute("DELETE FROM log_events WHERE stream_id = ?", (stream_id,))
            self.conn.execute("DELETE FROM log_streams WHERE id = ?", (stream_id,))

    # -- events -----------------------------------------------------------------------------
    def put_events(self, group_id: int, stream_id: int,
                   events: Iterable[tuple[int, str]]) -> bool:
        with transaction(self.conn):
            return insert_events(self.conn, group_id, stream_id, list(events), now_ms())

    def events(self, q: EventQuery) -> list[StoredEvent]:
        """The events `q` asks for, in (timestamp, id) order.

        A query filtered in SQL (terms) first walks the group's time index, which ends early
        when matches are common; if that walk runs long (a rare term: every event is looked
        at), it is abandoned for a sequential scan of the table and a top-N sort, which reads
        the same events two to three times faster than index order does — when the group
        holds a good part of the store (else the index keeps the scan to the group's events)."""
        if self.dialect.name != "sqlite":
            return log_postgres.events(self._events, self.dialect, q)
        # A Python matcher (JSON patterns) costs more per event than the reading order saves.
        if q.condition is None or q.matcher is not None or q.backward:
            return self._events(q, "")
        budget = [INDEX_WALK_BUDGET]

        def over_budget() -> int:
            budget[0] -= 1
            return 1 if budget[0] <= 0 else 0

        self.conn.set_progress_handler(over_budget, 1000)
        try:
            return self._events(q, "")
        except sqlite3.OperationalError as e:
            if "interrupt" not in str(e):
                raise
        finally:
            self.conn.set_progress_handler(None, 0)
        group_bytes = self.conn.execute("SELECT coalesce(sum(stored_bytes), 0) FROM log_streams "
                                        "WHERE group_id = ?", (q.group_id,)).fetchone()[0]
        sequential = group_bytes * 4 >= self.total_bytes()
        return self._events(q, "NOT INDEXED" if sequential else "")

    def _events(self, q: EventQuery, hint: str) -> list[StoredEvent]:
        sql = (f"SELECT e.id, s.name, e.ts, e.ingested, e.message FROM log_events e {hint} "
               "JOIN log_streams s ON s.id = e.stream_id WHERE e.group_id = ?")
        params: list[object] = [q.group_id]
        if q.stream_ids is not None:
            if len(q.stream_ids) == 1:
                sql += " AND e.stream_id = ?"
            else:
                sql += f" AND e.stream_id IN ({','.join('?' * len(q.stream_ids))})"
            params += list(q.stream_ids)
        if q.after is not None:
            sql += " AND (e.ts, e.id) > (?, ?)"
            params += list(q.after)
        if q.before is not None:
            sql += " AND (e.ts, e.id) < (?, ?)"
            params += list(q.before)
        if q.start_ms is not None:
            sql += " AND e.ts >= ?"
            params.append(q.start_ms)
        if q.end_ms is not None:
            sql += " AND e.ts <= ?"
            params.append(q.end_ms)
        if q.condition is not None:
            sql += f" AND ({q.condition[0]})"
            params += q.condition[1]
        if q.matcher is not None:
            self.conn.create_function("lp_match", 1, q.matcher, deterministic=True)
            sql += " AND lp_match(e.message)"
        direction = "DESC" if q.backward else "ASC"
        sql += f" ORDER BY e.ts {direction}, e.id {direction} LIMIT ?"
        params.append(q.limit)
        rows = self.conn.execute(sql, params).fetchall()
        found = [StoredEvent(*row) for row in rows]
        return found[::-1] if q.backward else found

    def expire(self, group_id: int, older_than_ms: int) -> int:
        """Delete a group's events older than the cut; the number deleted."""
        with transaction(self.conn):
            deleted = self.conn.execute("DELETE FROM log_events WHERE group_id = ? AND ts < ?",
                                        (group_id, older_than_ms)).rowcount
            if deleted:
                _refresh_streams(self.conn, group_id)
        return deleted

    def groups_with_retention(self) -> list[LogGroup]:
        rows = self.conn.execute("SELECT * FROM log_groups WHERE retention_days IS NOT NULL")
        return [self._group(r) for r in rows.fetchall()]

    def total_bytes(self) -> int:
        return self.conn.execute("SELECT coalesce(sum(stored_bytes), 0) FROM log_streams"
                                 ).fetchone()[0]

    def trim_to(self, max_bytes: int) -> int:
        """Bound the store: delete the oldest-ingested events until it holds at most
        `max_bytes`; the number of events deleted."""
        excess = self.total_bytes() - max_bytes
        if excess <= 0:
            return 0
        cut, freed = 0, 0
        rows = log_postgres.oldest_to_free(self.conn, excess, EVENT_OVERHEAD) \
            if self.dialect.name != "sqlite" else \
            self.conn.execute("SELECT id, length(CAST(message AS BLOB)) FROM log_events "
                              "ORDER BY id")
        for event_id, size in rows:
            cut, freed = event_id, freed + size + EVENT_OVERHEAD
            if freed >= excess:
                break
        with transaction(self.conn):
            touched = [r[0] for r in self.conn.execute(
                "SELECT DISTINCT group_id FROM log_events WHERE id <= ?", (cut,))]
            deleted = self.conn.execute("DELETE FROM log_events WHERE id <= ?",
                                        (cut,)).rowcount
            for group_id in touched:
                _refresh_streams(self.conn, group_id)
        return deleted


class transaction:
    """One writer at a time: SQLite's BEGIN IMMEDIATE; PostgreSQL's BEGIN and a lock."""
    def __init__(self, conn: Any) -> None:
        self.conn = conn

    def __enter__(self) -> Any:
        dialect = dialect_of(self.conn)
        self.conn.execute(dialect.begin)
        if dialect.name != "sqlite":
            log_postgres.lock_writes(self.conn)
        return self.conn

    def __exit__(self, kind: object, *_: object) -> None:
        self.conn.execute("ROLLBACK" if kind is not None else "COMMIT")


def insert_events(conn: Any, group_id: int, stream_id: int,
                   events: list[tuple[int, str]], ingested: int) -> bool:
    """Add events to a stream (inside the caller's transaction), many rows to a statement: on
    SQLite one GIL release per statement, not per event (executemany's hand-offs with the event
    loop cost ~40 µs of server CPU per warm invoke). False, and nothing added, if the stream
    no longer exists (deleted since its id was looked up)."""
    if not events:
        return True
    size = sum(len(m.encode(errors="replace")) + EVENT_OVERHEAD for _, m in events)
    first = min(ts for ts, _ in events)
    last = max(ts for ts, _ in events)
    dialect = dialect_of(conn)
    if not conn.execute(
            f"UPDATE log_streams SET first_event_ms = {dialect.least}(coalesce(first_event_ms, "
            f"?), ?), last_event_ms = {dialect.greatest}(coalesce(last_event_ms, ?), ?), "
            "last_ingestion_ms = ?, stored_bytes = stored_bytes + ? WHERE id = ? AND group_id = ?",
            (first, first, last, last, ingested, size, stream_id, group_id)).rowcount:
        return False
    if dialect.name != "sqlite":
        events = log_postgres.storable(events)
    for at in range(0, len(events), INSERT_ROWS):
        chunk = events[at:at + INSERT_ROWS]
        conn.execute("INSERT INTO log_events (group_id, stream_id, ts, ingested, message) "
                     "VALUES " + ", ".join(["(?, ?, ?, ?, ?)"] * len(chunk)),
                     [value for ts, message in chunk
                      for value in (group_id, stream_id, ts, ingested, message)])
    return True


def _refresh_streams(conn: Any, group_id: int) -> None:
    """Recount the streams of a group after events were deleted."""
    size = dialect_of(conn).byte_length("message")
    conn.execute(
        "UPDATE log_streams SET "
        "first_event_ms = (SELECT min(ts) FROM log_events e WHERE e.group_id = ? AND "
        "e.stream_id = log_streams.id), "
        f"stored_bytes = coalesce((SELECT sum({size}) + count(*) * ? "
        "FROM log_events e WHERE e.group_id = ? AND e.stream_id = log_streams.id), 0) "
        "WHERE group_id = ?", (group_id, EVENT_OVERHEAD, group_id, group_id))
