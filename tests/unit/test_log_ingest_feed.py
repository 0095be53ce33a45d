"""store/log_ingest.py's feed: an environment's output is written to its function's log file by
the append itself (before the invocation's outcome is recorded), and queued as text for the
ingest thread, which splits it into its stream's events, in order."""
from __future__ import annotations

from pathlib import Path

from lambdaplane.sandbox.logs import FunctionLog
from lambdaplane.store import log_store
from lambdaplane.store.log_ingest import LogIngest
from lambdaplane.store.log_store import LogStore

REGION = "us-east-1"


def test_the_file_at_once_the_stream_by_the_thread_in_order(tmp_path: Path) -> None:
    store = LogStore(tmp_path / "store")
    ingest = LogIngest(store.path)  # not started yet: the file must not wait for it
    try:
        logs = [FunctionLog(tmp_path, REGION, "fn") for _ in range(2)]  # two environments
        for env, log in enumerate(logs):
            log.feed = ingest.feed_for(REGION, "/aws/lambda/fn", f"stream{env}")
        for i in range(200):
            logs[i % 2].append(f"START {i}\nline {i}\n\nEND {i}")
        lines = (tmp_path / "logs" / REGION / "fn.log").read_text().splitlines()
        assert [line for line in lines if line] == [
            f"{word} {i}" for i in range(200) for word in ("START", "line", "END")]
        ingest.start()
        assert ingest.flush(30)
        group = store.group(REGION, "/aws/lambda/fn")
        assert group is not None
        events = store.events(log_store.EventQuery(group.id))
        assert len(events) == 600  # the empty line is no event
        mine = [e.message for e in events if e.message.endswith((" 4", " 6"))]
        assert mine == ["START 4", "line 4", "END 4", "START 6", "line 6", "END 6"]
    finally:
        for log in logs:
            log.close()
        ingest.stop()
        store.close()
