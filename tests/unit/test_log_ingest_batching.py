"""store/log_ingest.py's batching: output that keeps coming is gathered into few transactions
(each stream's batches as one insert, in order, never across a `forget` marker), a flush still
waits for everything submitted, and every line arrives once."""
from __future__ import annotations

import threading
from pathlib import Path

from lambdaplane.store import log_store
from lambdaplane.store.log_ingest import LogIngest, OutputBatch, _by_stream
from lambdaplane.store.log_store import LogStore

REGION = "us-east-1"


def test_by_stream_merges_in_order_and_not_across_a_marker() -> None:
    batches = [OutputBatch(REGION, "g", "a", [(1, "a1")]),
               OutputBatch(REGION, "g", "b", [(2, "b1")]),
               OutputBatch(REGION, "g", "a", [(3, "a2")]), OutputBatch("", "", ""),
               OutputBatch(REGION, "g", "a", [(4, "a3")])]
    merged = _by_stream(batches)
    assert [(b.stream, [m for _, m in b.events]) for b in merged] == [
        ("a", ["a1", "a2"]), ("b", ["b1"]), ("", []), ("a", ["a3"])]
    assert [m for _, m in batches[0].events] == ["a1"]  # the submitted batches are untouched


def test_a_stream_of_batches_is_written_whole_and_flush_waits(tmp_path: Path,
                                                              database_url: str | None) -> None:
    store = LogStore(tmp_path, database_url)
    ingest = LogIngest(store.path, store.database)
    ingest.start()
    try:
        feeds = [ingest.feed_for(REGION, "g", f"s{n}") for n in range(4)]

        def produce(feed, n: int) -> None:
            for i in range(300):
                feed(f"{n} line {i}\n")

        threads = [threading.Thread(target=produce, args=(f, n)) for n, f in enumerate(feeds)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert ingest.flush(30)
        group = store.group(REGION, "g")
        assert group is not None
        events = store.events(log_store.EventQuery(group.id))
        assert len(events) == 1200 and ingest.written == 1200
        for n in range(4):  # each stream's lines in the order they were printed
            mine = [e.message for e in events if e.message.startswith(f"{n} ")]
            assert mine == [f"{n} line {i}" for i in range(300)]
    finally:
        ingest.stop()
        store.close()
