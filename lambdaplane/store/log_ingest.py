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

An environment's output for its function's log file comes here too (`sink_for`): the invoke
path only queues the text and a time stamp; the thread splits it into events and appends each
file's texts of a batch in one write (one stat, one write per function per batch instead of per
invoke), then the closes queued behind them, in order, so a file is never written after its
writer closed it."""
from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from .log_store import connect, insert_events, now_ms, split_message, transaction

log = logging.getLogger(__name__)

BATCH_WINDOW_S = 0.1  # at most this long between transactions while output keeps coming


class LogFile(Protocol):
    """A function's log file (sandbox/logs.py FunctionLog): used only by the ingest thread."""
    path: Path

    def write_now(self, texts: list[str]) -> None: ...

    def close(self) -> None: ...


@dataclass
class OutputBatch:
    """Lines one execution environment printed, for its group and stream."""
    region: str
    group: str
    stream: str
    events: list[tuple[int, str]] = field(default_factory=list)


@dataclass
class FileOutput:
    """What one environment printed for one invocation (or outside one), for its function's
    log file and its log stream; `closing`: close the file after what is queued before."""
    file: LogFile
    region: str
    group: str
    stream: str
    stamp: int = 0
    text: str = ""
    closing: bool = False


class LogIngest:
    """One deque, one thread, one connection; `submit` never blocks."""

    def __init__(self, path: Path, database: str | None = None) -> None:
        self.path = path
        self.database = database  # a postgresql:// URL: the log store is there
        self._queue: deque[OutputBatch | FileOutput | None] = deque()  # None: stop
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

    def sink_for(self, region: str, group: str, stream: str
                 ) -> Callable[[LogFile, str, bool], None]:
        """A queuer of one environment's output text for its log file (and its closing) and,
        each line one event, for its log stream."""
        def sink(file: LogFile, text: str, closing: bool = False) -> None:
            if self._thread is None:  # not started or stopped: the file at once, as before
                if text:
                    file.write_now([text])
                if closing:
                    file.close()
                return
            self._last_submitted = next(self._submitted)
            self._put(FileOutput(file, region, group, stream, now_ms(), text, closing))
        return sink

    def _put(self, item: OutputBatch | FileOutput | None) -> None:
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
            # output queued while the thread stopped: its files still get it, and are closed
            _write_files([b for b in self._queue if isinstance(b, FileOutput)])
            self._queue.clear()

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until everything submitted so far is written (tests, `logs -f`)."""
        target = self._last_submitted
        with self._settled:
            return self._settled.wait_for(lambda: self._done >= target, timeout_s)

    def feed_for(self, region: str, group: str, stream: str) -> Callable[[str], None]:
        """A writer of one environment's output text: each line becomes one event."""
        def feed(text: str) -> None:
            stamp = now_ms()
            events = [(stamp, part) for line in text.splitlines() if line.strip()
                      for part in split_message(line)]
            self.submit(OutputBatch(region, group, stream, events))
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
                stored = _write_files([b for b in batches if isinstance(b, FileOutput)])
                to_store = [b if isinstance(b, OutputBatch) else stored[id(b)] for b in batches
                            if isinstance(b, OutputBatch) or id(b) in stored]
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


def _write_files(outputs: list[FileOutput]) -> dict[int, OutputBatch]:
    """Each file's texts of this batch in one write, then the closes; returns each output's
    events for the log store (keyed by the output's id)."""
    texts: dict[Path, list[str]] = {}
    writer: dict[Path, LogFile] = {}
    events: dict[int, OutputBatch] = {}
    for out in outputs:
        if out.text:
            texts.setdefault(out.file.path, []).append(out.text)
            writer.setdefault(out.file.path, out.file)
        lines = [(out.stamp, part) for line in out.text.splitlines() if line.strip()
                 for part in split_message(line)]
        if lines:
            events[id(out)] = OutputBatch(out.region, out.group, out.stream, lines)
    for path, file_texts in texts.items():
        try:
            writer[path].write_now(file_texts)
        except Exception:  # one unwritable file must not stop the others or the store
            log.exception("appending to %s failed", path)
    for out in outputs:
        if out.closing:
            out.file.close()
    return events


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
