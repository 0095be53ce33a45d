"""Wake-ups of the Event queue's claimers across processes (PostgreSQL's LISTEN/NOTIFY). An
enqueue, or a claimer giving its events back, sends `NOTIFY lp_event_queue` (delivered when
its transaction commits); every `serve` sharing the database listens on a connection of its
own, in a thread, and wakes its dispatcher, which claims at once instead of at its next poll.
A lost notification costs only latency: the dispatchers still poll (service/invoke.py).
SQLite has one server per store: its own wake-up is enough, so nothing listens there."""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from .db import Database

log = logging.getLogger("lambdaplane.events")

CHANNEL = "lp_event_queue"


def notify(db: Database) -> None:
    """Tell the listeners that events may be claimable (no-op on SQLite)."""
    if db.dialect.name == "postgresql":
        db.conn.execute("SELECT pg_notify(?, '')", (CHANNEL,))


class EventListener:
    """Calls `wake` (from its own thread) for every notification on CHANNEL."""

    def __init__(self, url: str, wake: Callable[[], object]) -> None:
        self.url = url
        self.wake = wake
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="event-listen", daemon=True)
        self._thread.start()
        self._ready.wait(10.0)  # listening (or given up) before the first enqueue

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
            self._thread = None

    def _run(self) -> None:
        import psycopg
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.url, autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self._ready.set()
                    self._listen(conn)
            except psycopg.Error as e:
                self._ready.set()
                log.warning("listening for queued events failed (polling meanwhile): %s", e)
                self._stop.wait(5.0)

    def _listen(self, conn: Any) -> None:
        while not self._stop.is_set():
            for _ in conn.notifies(timeout=1.0):
                self.wake()
