"""Asynchronous (Event) invocations in SQLite. An event is written here — committed — before
Invoke answers 202, so an accepted event survives a crash or restart; rows that ran stay a while
with their outcome so tests and `status` can see what happened."""
from __future__ import annotations

import time
from dataclasses import dataclass

from .db import Database, schema

schema("""
CREATE TABLE IF NOT EXISTS event_invocations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id TEXT NOT NULL UNIQUE,
    region TEXT NOT NULL,
    name TEXT NOT NULL,
    payload BLOB NOT NULL,
    client_context TEXT,
    accepted_at REAL NOT NULL,
    not_before REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    status TEXT NOT NULL DEFAULT 'queued',  -- queued | succeeded | failed | dropped
    error_type TEXT,
    finished_at REAL
);
CREATE INDEX IF NOT EXISTS event_invocations_due ON event_invocations (status, not_before);
""")

KEEP_FINISHED_S = 3600.0


@dataclass(frozen=True)
class QueuedEvent:
    id: int
    request_id: str
    region: str
    name: str
    payload: bytes
    client_context: str | None
    attempts: int
    status: str = "queued"
    error_type: str | None = None
    accepted_at: float = 0.0  # epoch seconds: the event's age counts from here


class EventStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def enqueue(self, request_id: str, region: str, name: str, payload: bytes,
                client_context: str | None) -> None:
        now = time.time()
        self.db.conn.execute(
            "INSERT INTO event_invocations (request_id, region, name, payload, client_context, "
            "accepted_at, not_before) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (request_id, region, name, payload, client_context, now, now))

    def due(self, now: float, exclude: set[int], limit: int) -> list[QueuedEvent]:
        rows = self.db.conn.execute(
            "SELECT * FROM event_invocations WHERE status='queued' AND not_before<=? "
            "ORDER BY not_before, id LIMIT ?", (now, limit + len(exclude))).fetchall()
        return [_event(r) for r in rows if r["id"] not in exclude][:limit]

    def next_due_at(self, exclude: set[int]) -> float | None:
        rows = self.db.conn.execute(
            "SELECT id, not_before FROM event_invocations WHERE status='queued' "
            "ORDER BY not_before LIMIT ?", (len(exclude) + 1,)).fetchall()
        for r in rows:
            if r["id"] not in exclude:
                return float(r["not_before"])
        return None

    def retry_later(self, event_id: int, not_before: float, attempts: int,
                    error_type: str | None) -> None:
        self.db.conn.execute(
            "UPDATE event_invocations SET not_before=?, attempts=?, error_type=? WHERE id=?",
            (not_before, attempts, error_type, event_id))

    def finish(self, event_id: int, status: str, attempts: int, error_type: str | None,
               then_enqueue: tuple[str, str, str, bytes] | None = None) -> None:
        """Record an event's outcome; with `then_enqueue` (request id, region, function,
        payload: a destination's invocation record) the new event is queued in the same
        transaction, so a crash loses neither and delivers no record twice."""
        if then_enqueue is None:
            self._finish(event_id, status, attempts, error_type)
            return
        with self.db.transaction():
            self._finish(event_id, status, attempts, error_type)
            self.enqueue(*then_enqueue, None)

    def _finish(self, event_id: int, status: str, attempts: int, error_type: str | None) -> None:
        now = time.time()
        self.db.conn.execute(
            "UPDATE event_invocations SET status=?, attempts=?, error_type=?, finished_at=? "
            "WHERE id=?", (status, attempts, error_type, now, event_id))
        self.db.conn.execute(
            "DELETE FROM event_invocations WHERE status!='queued' AND finished_at<?",
            (now - KEEP_FINISHED_S,))

    def recent(self, region: str | None = None, name: str | None = None,
               limit: int = 100) -> list[QueuedEvent]:
        rows = self.db.conn.execute(
            "SELECT * FROM event_invocations WHERE (? IS NULL OR region=?) AND "
            "(? IS NULL OR name=?) ORDER BY id DESC LIMIT ?",
            (region, region, name, name, limit)).fetchall()
        return [_event(r) for r in rows]


def _event(row) -> QueuedEvent:  # sqlite3.Row
    return QueuedEvent(row["id"], row["request_id"], row["region"], row["name"],
                       bytes(row["payload"]), row["client_context"], row["attempts"],
                       row["status"], row["error_type"], float(row["accepted_at"]))
