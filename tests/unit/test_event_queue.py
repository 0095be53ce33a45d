"""The Event queue's claims (store/events.py) on SQLite and PostgreSQL: two claimers on their
own connections take 2,000 events, each exactly once; a dead claimer's event is claimable
again when its lease runs out (not before, and not while it is renewed), and its late outcome
changes nothing; a restarted claimer gets its own events back at once; on PostgreSQL an
enqueue or a release wakes the listeners of other connections (LISTEN/NOTIFY), and two
in-process servers sharing the database run every Event invoke once, both taking part."""
from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from lambdaplane.store.db import Database
from lambdaplane.store.event_wakeups import EventListener
from lambdaplane.store.events import EventStore
from tests.harness import make_zip
from tests.unit.lambda_inprocess import InProcessLambda

ROLE = "arn:aws:iam::000000000000:role/lambda"


@pytest.fixture
def queue(tmp_path: Path, database_url: str | None) -> Iterator[EventStore]:
    database = Database.open(tmp_path, database_url)
    try:
        yield EventStore(database)
    finally:
        database.close()


def _enqueue(events: EventStore, count: int, prefix: str = "req") -> None:
    with events.db.transaction():
        for i in range(count):
            events.enqueue(f"{prefix}-{i}", "us-east-1", "f", b"{}", None)


def test_two_claimers_take_every_event_exactly_once(tmp_path: Path,
                                                    database_url: str | None,
                                                    queue: EventStore) -> None:
    _enqueue(queue, 2000)
    claimed: dict[str, Counter[int]] = {"a": Counter(), "b": Counter()}
    start = threading.Barrier(2)
    # Each waits for the other's first batch before its second: on a busy machine one thread
    # could otherwise drain the queue before the other is scheduled at all.
    first_batches = threading.Barrier(2, timeout=60)

    def claimer(name: str) -> None:
        database = Database.open(tmp_path, database_url)  # its own connection
        events = EventStore(database)
        try:
            start.wait()
            batches = 0
            while batch := events.claim(name, time.time(), 25):
                for event in batch:
                    claimed[name][event.id] += 1
                    assert events.finish(event.id, "succeeded", 1, None, claimer=name)
                batches += 1
                if batches == 1:
                    first_batches.wait()
        finally:
            database.close()

    threads = [threading.Thread(target=claimer, args=(n,)) for n in claimed]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    both = claimed["a"] + claimed["b"]
    assert len(both) == 2000 and set(both.values()) == {1}
    assert claimed["a"] and claimed["b"]  # both took part
    finished = queue.recent(limit=5000)
    assert len(finished) == 2000 and {e.status for e in finished} == {"succeeded"}


def test_a_dead_claimers_event_is_claimed_again_after_its_lease(queue: EventStore) -> None:
    _enqueue(queue, 1)
    [held] = queue.claim("dead", now=1e12, limit=10, lease_s=30.0)
    assert queue.claim("other", now=1e12 + 1, limit=10) == []
    assert queue.next_due_at(now=1e12 + 1) is None  # held: the holder's, not due for others
    assert queue.renew_claims("dead", now=1e12 + 20, lease_s=30.0) == 1
    assert queue.claim("other", now=1e12 + 31, limit=10) == []  # renewed: still held
    [again] = queue.claim("other", now=1e12 + 51, limit=10)  # not renewed: the lease ran out
    assert again.id == held.id and again.request_id == held.request_id
    # the dead claimer's late outcome is not written, and queues no destination record
    assert not queue.finish(held.id, "failed", 1, "Boom", claimer="dead",
                            then_enqueue=("dest-1", "us-east-1", "dest", b"{}"))
    assert not queue.retry_later(held.id, 1e12 + 60, 1, "Boom", claimer="dead")
    assert queue.finish(again.id, "succeeded", 1, None, claimer="other")
    assert [(e.request_id, e.status) for e in queue.recent()] == [("req-0", "succeeded")]


def test_released_and_retried_events_are_anyones(queue: EventStore) -> None:
    _enqueue(queue, 2)
    first, second = queue.claim("a", now=1e12, limit=10)
    assert queue.release_claims("a") == 2  # a restarted claimer gives back what it held
    assert [e.id for e in queue.claim("b", now=1e12, limit=1)] == [first.id]
    assert queue.retry_later(first.id, 1e12 + 60, 1, "Boom", claimer="b")
    assert queue.next_due_at(now=1e12) == second.accepted_at  # second: free and due
    assert [e.id for e in queue.claim("c", now=1e12, limit=10)] == [second.id]
    assert queue.finish(second.id, "succeeded", 1, None, claimer="c")
    assert queue.next_due_at(now=1e12) == 1e12 + 60
    [retried] = queue.claim("a", now=1e12 + 60, limit=10)
    assert (retried.id, retried.attempts, retried.error_type) == (first.id, 1, "Boom")


def _servers(tmp_path: Path, database_url: str) -> Iterator[list[InProcessLambda]]:
    servers = []
    try:
        for name in ("a", "b"):
            server = InProcessLambda(tmp_path / name, {"database": database_url,
                                                       "event_retry_delays_s": (0.05, 0.05)})
            server.start()
            servers.append(server)
        yield servers
    finally:
        for server in servers:
            server.platform.environments.release.set()
            server.stop()


def _wait_for(condition, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition never became true"
        time.sleep(0.02)


async def _release(server: InProcessLambda) -> None:
    server.platform.environments.release.set()


def test_two_servers_on_one_database_run_each_event_once(tmp_path: Path,
                                                         database_url: str | None) -> None:
    if database_url is None:
        pytest.skip("a SQLite store belongs to one server (its data dir's lock)")
    gen = _servers(tmp_path, database_url)
    a, b = next(gen)
    try:
        lam = a.client()
        lam.create_function(FunctionName="f1", Runtime="python3.11", Handler="app.handler",
                            Role=ROLE, Code={"ZipFile": make_zip({"app.py": "x = 1\n"})})
        # every server runs 16 at a time: 40 held events keep both busy until released
        accepted = [lam.invoke(FunctionName="f1", InvocationType="Event",
                               Payload=json.dumps({"hold": True, "n": i}))
                    ["ResponseMetadata"]["RequestId"] for i in range(40)]
        ran = lambda s: [inv.request_id for _, inv in s.platform.environments.invocations]
        _wait_for(lambda: len(ran(a)) == 16 and len(ran(b)) == 16)
        for server in (a, b):
            server.call(_release(server))
        _wait_for(lambda: len(ran(a)) + len(ran(b)) == 40)
        assert sorted(ran(a) + ran(b)) == sorted(accepted)  # each exactly once
        _wait_for(lambda: {e.status for e in a.platform.invoker.events.recent()} ==
                  {"succeeded"})
    finally:
        gen.close()


def test_an_enqueue_wakes_the_listeners_of_other_connections(database_url: str | None,
                                                             queue: EventStore) -> None:
    if database_url is None:
        pytest.skip("LISTEN/NOTIFY is PostgreSQL's (one SQLite store has one server)")
    woken = threading.Event()
    listener = EventListener(database_url, woken.set)
    listener.start()
    try:
        assert not woken.wait(0.2)
        queue.enqueue("req-woken", "us-east-1", "f", b"{}", None)
        assert woken.wait(30.0)  # before the next poll would have found it, normally
        woken.clear()
        [event] = queue.claim("a", time.time(), 10)
        assert queue.release_claims("a") == 1  # given back: the others are told too
        assert woken.wait(30.0)
    finally:
        listener.stop()
