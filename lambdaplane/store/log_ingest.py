"""LogIngest: the thread that writes the functions' output into the log store, so the invoke
path only appends a batch to a deque: no lock, and no wakeup of the thread unless it is asleep
(a count only the thread moves says what is written).
Whatever is queued at once goes in one transaction, on a connection of the thread's own, each
stream's batches as one insert; while output keeps coming, the thread gathers for up to
BATCH_WINDOW_S between transactions (each commit writes whole 16 KB pages: one per invoke cost
the server a visible share of a warm invoke), and a lone invocation's lines are written at
once. A function's group and an environment's stream are created on first use (the group at
the function's first invoke, as on AWS). The thread's connection is to the SQLite file or, when
the log store lives in PostgreSQL, to that database (a connection of its own there too).

An environment's output comes here as text (`feed_for`): the invoke path only queues it with a
time stamp, and the thread splits it into events. The function's log file is written by the
invoke path itself, before the invocation's outcome is recorded: a server killed right after
an invocation has its lines in the file (tests/faults)."""
from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .log_store import MAX_EVENT_BYTES, connect, insert_events, now_ms, transaction

log = logging.getLogger(__name__)

BATCH_WINDOW_S = 0.1  # at most this long between transactions while output keeps coming


@dataclass
class OutputBatch:
    """Lines one execution environment printed, for its group and stream."""
    region: str
    group: str
    stream: str
    events: list[tuple[int, str]] = field(default_factory=list)


@dataclass
class RawOutput:
    """What one environment printed for one invocation (or outside one), not split yet."""
    region: str
    group: str
    stream: str
    stamp: int
    text: str

    def batch(self) -> OutputBatch:
        return OutputBatch(self.region, self.group, self.stream,
                           [(self.stamp, part) for line in self.text.splitlines()
                            if line.strip() for part in split_message(line)])


def split_message(message: str) -> list[str]:
    """AWS's largest event is 256 KB with overhead: longer text becomes several events."""
    data = message.encode(errors="replace")
    if len(data) <= MAX_EVENT_BYTES:
        return [message]
    return [data[i:i + MAX_EVENT_BYTES].decode(errors="ignore")
            for i in range(0, len(data), MAX_EVENT_BYTES)]


class LogIngest:
    """One deque, one thread, one connection; `submit` never blocks."""

    def __init__(self, path: Path, database: str | None = None) -> None:
        self.path = path
        self.database = database  # a postgresql:// URL: the log store is there
        self._queue: deque[OutputBatch | RawOutput | None] = deque()  # None: stop
        self._wake = threading.Event()
        self._asleep = False  # the thread waits for `_wake`: the next put sets it
        self._thread: threading.Thread | None = None
        self._ids: dict[tuple[str, str, str], tuple[int, int]] = {}
        self.written = 0
        # batches submitted (next() of a count is atomic under the GIL) and written
        self._submitted = itertools.count(1)
        self._last_submitted = 0
        self._done = 0
        self._settled = threading.Condition()

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="lp-log-ingest", daemon=True)
            self._thread.start()

    def submit(self, batch: OutputBatch) -> None:
        if batch.events:
            self._last_submitted = next(self._submitted)
            self._put(batch)

    def _put(self, item: OutputBatch | RawOutput | None) -> None:
        self._queue.append(item)
        if self._asleep:
            self._asleep = False
            self._wake.set()

    def stop(self) -> None:
        """Write what is queued, then end the thread."""
        if self._thread is not None:
            self._put(None)
            self._thread.join()
            self._thread = None

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until everything submitted so far is written (tests, `logs -f`)."""
        target = self._last_submitted
        with self._settled:
            return self._settled.wait_for(lambda: self._done >= target, timeout_s)

    def feed_for(self, region: str, group: str, stream: str) -> Callable[[str], None]:
        """A writer of one environment's output text: each line becomes one event (split by
        the thread, off the invoke path)."""
        def feed(text: str) -> None:
            if text.strip():
                self._last_submitted = next(self._submitted)
                self._put(RawOutput(region, group, stream, now_ms(), text))
        return feed

    def forget(self) -> None:
        """Groups or streams were deleted: look their ids up again."""
        self._put(OutputBatch("", "", ""))  # a marker the thread acts on in order

    def _run(self) -> None:
        conn = connect(self.path, self.database)
        try:
            running = True
            last_write = 0.0
            while running:
                self._wait_for_work()
                since = time.monotonic() - last_write
                if since < BATCH_WINDOW_S:  # output keeps coming: gather it for one commit
                    time.sleep(BATCH_WINDOW_S - since)
                batches = []
                while self._queue:
                    batches.append(self._queue.popleft())
                if None in batches:
                    running = False
                to_store = [b.batch() if isinstance(b, RawOutput) else b for b in batches
                            if b is not None]
                try:
                    self._write(conn, to_store)
                except Exception:  # a bad batch must not stop logging for everyone
                    log.exception("writing function output to the log store failed")
                    self._ids.clear()
                last_write = time.monotonic()
                with self._settled:
                    self._done += sum(1 for b in batches if b is not None and b.region)
                    self._settled.notify_all()
        finally:
            conn.close()

    def _wait_for_work(self) -> None:
        while not self._queue:
            self._asleep = True
            if self._queue:  # put between the check and the flag: it may not have woken us
                self._asleep = False
                return
            self._wake.wait()
            self._wake.clear()

    def _write(self, conn: Any, batches: list[OutputBatch]) -> None:
        ingested = now_ms()
        with transaction(conn):
            for batch in _by_stream(batches):
                if not batch.region:
                    self._ids.clear()
                    continue
                group_id, stream_id = self._stream_ids(conn, batch, ingested)
                if not insert_events(conn, group_id, stream_id, batch.events, ingested):
                    # deleted through the API since cached: made again, as Lambda does
                    self._ids.pop((batch.region, batch.group, batch.stream), None)
                    group_id, stream_id = self._stream_ids(conn, batch, ingested)
                    insert_events(conn, group_id, stream_id, batch.events, ingested)
                self.written += len(batch.events)

    def _stream_ids(self, conn: Any, batch: OutputBatch,
                    ingested: int) -> tuple[int, int]:
        key = (batch.region, batch.group, batch.stream)
        ids = self._ids.get(key)
        if ids is not None:
            return ids
        conn.execute("INSERT OR IGNORE INTO log_groups (region, name, created_ms) "
                     "VALUES (?, ?, ?)", (batch.region, batch.group, ingested))
        group_id = conn.execute("SELECT id FROM log_groups WHERE region = ? AND name = ?",
                                (batch.region, batch.group)).fetchone()[0]
        conn.execute("INSERT OR IGNORE INTO log_streams (group_id, name, created_ms) "
                     "VALUES (?, ?, ?)", (group_id, batch.stream, ingested))
        stream_id = conn.execute("SELECT id FROM log_streams WHERE group_id = ? AND name = ?",
                                 (group_id, batch.stream)).fetchone()[0]
        if len(self._ids) > 10000:
            self._ids.clear()
        self._ids[key] = (group_id, stream_id)
        return group_id, stream_id


def _by_stream(batches: list[OutputBatch]) -> list[OutputBatch]:
    """The batches of one stream (up to a `forget` marker) as one, its events in their order;
    streams keep the order of their first batch."""
    merged: list[OutputBatch] = []
    open_: dict[tuple[str, str, str], OutputBatch] = {}
    for batch in batches:
        if not batch.region:
            merged.append(batch)
            open_.clear()  # ids are looked up again after the marker: don't merge across it
            continue
        key = (batch.region, batch.group, batch.stream)
        into = open_.get(key)
        if into is None:
            into = open_[key] = OutputBatch(batch.region, batch.group, batch.stream,
                                            list(batch.events))
            merged.append(into)
        else:
            into.events.extend(batch.events)
    return merged
