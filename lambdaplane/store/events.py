"""Asynchronous (Event) invocations: the Event queue, in the store (SQLite or PostgreSQL). An
event is written here — committed — before Invoke answers 202, so an accepted event survives a
crash or restart; rows that ran stay a while with their outcome so tests and `status` can see
what happened.

Every process that runs events *claims* them: one `UPDATE … WHERE id IN (SELECT … LIMIT n
FOR UPDATE SKIP LOCKED) RETURNING *` (PostgreSQL; on SQLite the one writer at a time makes
the same statement atomic) sets `claimed_by` and a lease, `claim_until`. Claimers never take
one event together; the holder renews its leases while the attempts run, and a claimer that
dies leaves its events claimable again when their lease runs out. Writes of an outcome name
the claimer, so one whose lease was lost (and the event taken over) changes nothing."""
from __future__ import annotations

import time
from dataclasses import dataclass

from .db import Database, schema
from .event_wakeups import notify
from .migrations import migration

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

migration("0001-event-invocations-claims", """
ALTER TABLE event_invocations ADD COLUMN claimed_by TEXT;
ALTER TABLE event_invocations ADD COLUMN claim_until REAL;
""")

KEEP_FINISHED_S = 3600.0
DEFAULT_CLAIM_LEASE_S = 30.0


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
        notify(self.db)  # other servers' dispatchers claim it at once (PostgreSQL)

    def claim(self, claimer: str, now: float, limit: int,
              lease_s: float = DEFAULT_CLAIM_LEASE_S) -> list[QueuedEvent]:
        """Take up to `limit` due events nobody holds (or whose holder's lease ran out) for
        `claimer`, until `now + lease_s`; the oldest first."""
        if limit <= 0:
            return []
        rows = self.db.conn.execute(
            "UPDATE event_invocations SET claimed_by=?, claim_until=? WHERE id IN ("
            "SELECT id FROM event_invocations WHERE status='queued' AND not_before<=? "
            "AND (claim_until IS NULL OR claim_until<?) ORDER BY not_before, id LIMIT ?"
            + self.db.dialect.skip_locked + ") RETURNING *",
            (claimer, now + lease_s, now, now, limit)).fetchall()
        events = sorted(rows, key=lambda r: (float(r["not_before"]), int(r["id"])))
        return [_event(r) for r in events]

    def renew_claims(self, claimer: str, now: float,
                     lease_s: float = DEFAULT_CLAIM_LEASE_S) -> int:
        """Extend the lease of every queued event `claimer` holds; how many."""
        return int(self.db.conn.execute(
            "UPDATE event_invocations SET claim_until=? WHERE claimed_by=? AND status='queued'",
            (now + lease_s, claimer)).rowcount)

    def release_claims(self, claimer: str) -> int:
        """Give back every event `claimer` holds (it stops, or starts again after a crash)."""
        released = int(self.db.conn.execute(
            "UPDATE event_invocations SET claimed_by=NULL, claim_until=NULL "
            "WHERE claimed_by=? AND status='queued'", (claimer,)).rowcount)
        if released:
            notify(self.db)
        return released

    def next_due_at(self, now: float) -> float | None:
        """When the next event nobody holds is due (a held one is the holder's)."""
        row = self.db.conn.execute(
            "SELECT MIN(not_before) FROM event_invocations WHERE status='queued' "
            "AND (claim_until IS NULL OR claim_until<?)", (now,)).fetchone()
        return None if row is None or row[0] is None else float(row[0])

    def retry_later(self, event_id: int, not_before: float, attempts: int,
                    error_type: str | None, claimer: str | None = None) -> bool:
        """Queue the event again for `not_before`, released; with `claimer`, only if it
        still holds the event. Whether it was written."""
        return self.db.conn.execute(
            "UPDATE event_invocations SET not_before=?, attempts=?, error_type=?, "
            "claimed_by=NULL, claim_until=NULL WHERE id=? AND (? IS NULL OR claimed_by=?)",
            (not_before, attempts, error_type, event_id, claimer, claimer)).rowcount > 0

    def finish(self, event_id: int, status: str, attempts: int, error_type: str | None,
               then_enqueue: tuple[str, str, str, bytes] | None = None,
               claimer: str | None = None) -> bool:
        """Record an event's outcome; with `then_enqueue` (request id, region, function,
        payload: a destination's invocation record) the new event is queued in the same
        transaction, so a crash loses neither and delivers no record twice. With `claimer`,
        nothing is written unless it still holds the event. Whether it was written."""
        if then_enqueue is None:
            return self._finish(event_id, status, attempts, error_type, claimer)
        with self.db.transaction():
            if not self._finish(event_id, status, attempts, error_type, claimer):
                return False
            self.enqueue(*then_enqueue, None)
        return True

    def _finish(self, event_id: int, status: str, attempts: int, error_type: str | None,
                claimer: str | None) -> bool:
        now = time.time()
        written = self.db.conn.execute(
            "UPDATE event_invocations SET status=?, attempts=?, error_type=?, finished_at=?, "
            "claimed_by=NULL, claim_until=NULL WHERE id=? AND status='queued' "
            "AND (? IS NULL OR claimed_by=?)",
            (status, attempts, error_type, now, event_id, claimer, claimer)).rowcount > 0
        self.db.conn.execute(
            "DELETE FROM event_invocations WHERE status!='queued' AND finished_at<?",
            (now - KEEP_FINISHED_S,))
        return written

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
