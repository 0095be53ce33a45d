"""Event queue latency (store/events.py), on SQLite and on PostgreSQL (tests/pg_server.py, a
Unix socket): run as root from the worktree, `python -m tests.soak.event_queue_latency`
(not collected by pytest). Prints, per backend:

- local: enqueue → claim on the same connection, what a `serve` does when its own Invoke
  wakes its dispatcher (one INSERT, one claiming UPDATE);
- two claimers: 2,000 queued events taken by two connections in threads (batches of 16, each
  finished), the time for all and each claimer's share;
- across connections (PostgreSQL): an event queued by another connection, seen by a claimer
  that polls every EVENT_POLL_S (service/invoke.py) — with and without the LISTEN/NOTIFY
  wake-up (store/event_wakeups.py) — enqueue → claim."""
from __future__ import annotations

import random
import statistics
import tempfile
import threading
import time
from pathlib import Path

from lambdaplane.service.invoke import EVENT_POLL_S
from lambdaplane.store.db import Database
from lambdaplane.store.event_wakeups import EventListener
from lambdaplane.store.events import EventStore
from tests import pg_server


def _ms(values: list[float]) -> str:
    q = statistics.quantiles(values, n=100)
    return f"p50 {q[49] * 1e3:.2f} ms, p90 {q[89] * 1e3:.2f} ms, p99 {q[98] * 1e3:.2f} ms"


def local(db: Database, count: int = 500) -> str:
    events, took = EventStore(db), []
    for i in range(count):
        start = time.perf_counter()
        events.enqueue(f"local-{i}", "us-east-1", "f", b"{}", None)
        [event] = events.claim("me", time.time(), 16)
        took.append(time.perf_counter() - start)
        events.finish(event.id, "succeeded", 1, None, claimer="me")
    return _ms(took)


def two_claimers(data_dir: Path, url: str | None, count: int = 2000) -> str:
    db = Database.open(data_dir, url)
    events = EventStore(db)
    with db.transaction():
        for i in range(count):
            events.enqueue(f"two-{i}", "us-east-1", "f", b"{}", None)
    db.close()
    shares: dict[str, int] = {}

    def claimer(name: str) -> None:
        own = Database.open(data_dir, url)
        queue, n = EventStore(own), 0
        while batch := queue.claim(name, time.time(), 16):
            for event in batch:
                queue.finish(event.id, "succeeded", 1, None, claimer=name)
                n += 1
        shares[name] = n
        own.close()

    start = time.perf_counter()
    threads = [threading.Thread(target=claimer, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.perf_counter() - start
    return f"{sum(shares.values())} events in {took:.2f} s ({sum(shares.values()) / took:.0f}/s)" \
           f", shares {shares}"


def polled(data_dir: Path, url: str, listen: bool, count: int = 20) -> str:
    producer, consumer = Database.open(data_dir, url), Database.open(data_dir, url)
    queue_in, queue_out = EventStore(producer), EventStore(consumer)
    took: list[float] = []
    stop = threading.Event()
    queued_at: dict[str, float] = {}
    woken = threading.Event()
    listener = EventListener(url, woken.set) if listen else None
    if listener is not None:
        listener.start()

    def claimer() -> None:
        while not stop.is_set():
            for event in queue_out.claim("poller", time.time(), 16):
                took.append(time.time() - queued_at[event.request_id])
                queue_out.finish(event.id, "succeeded", 1, None, claimer="poller")
            woken.wait(EVENT_POLL_S)
            woken.clear()

    thread = threading.Thread(target=claimer)
    thread.start()
    for i in range(count):
        time.sleep(random.uniform(0.1, 1.0))
        queued_at[f"polled-{i}"] = time.time()
        queue_in.enqueue(f"polled-{i}", "us-east-1", "f", b"{}", None)
    time.sleep(EVENT_POLL_S * 2)
    stop.set()
    woken.set()
    thread.join()
    if listener is not None:
        listener.stop()
    producer.close()
    consumer.close()
    return _ms(took)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        db = Database.open(root / "sqlite-local")
        print("SQLite local enqueue→claim:", local(db))
        db.close()
        print("SQLite two claimers:", two_claimers(root / "sqlite-two", None))
        with pg_server.pg_server() as server:
            with server.database() as url:
                db = Database.open(root / "pg", url)
                print("PostgreSQL local enqueue→claim:", local(db))
                db.close()
            with server.database() as url:
                print("PostgreSQL two claimers:", two_claimers(root / "pg", url))
            with server.database() as url:
                print("PostgreSQL polled enqueue→claim:", polled(root / "pg", url, False))
            with server.database() as url:
                print("PostgreSQL notified enqueue→claim:", polled(root / "pg", url, True))


if __name__ == "__main__":
    main()
