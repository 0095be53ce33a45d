"""store/log_ingest.py's function-log sink: an environment's output queued for its function's
log file and its log stream is written by the ingest thread — every text once, in order, each
file's texts of a batch in one write — the file closed only after what was queued before its
close, and written at once when no thread runs."""
from __future__ import annotations

from pathlib import Path

from lambdaplane.sandbox.logs import FunctionLog
from lambdaplane.store import log_store
from lambdaplane.store.log_ingest import LogIngest
from lambdaplane.store.log_store import LogStore

REGION = "us-east-1"


class CountingLog(FunctionLog):
    """A FunctionLog that counts its writes and closes of its file."""

    def __init__(self, data_dir: Path) -> None:
        super().__init__(data_dir, REGION, "fn")
        self.writes = 0
        self.closes = 0

    def write_now(self, texts: list[str]) -> None:
        self.writes += 1
        super().write_now(texts)

    def _close_fd(self) -> None:
        if self._fd >= 0:
            self.closes += 1
        super()._close_fd()


def test_queued_output_reaches_the_file_and_the_stream_in_order(tmp_path: Path) -> None:
    store = LogStore(tmp_path / "store")
    ingest = LogIngest(store.path)
    ingest.start()
    try:
        logs = [CountingLog(tmp_path) for _ in range(2)]  # two environments of one function
        for env, log in enumerate(logs):
            log.sink = ingest.sink_for(REGION, "/aws/lambda/fn", f"stream{env}")
        for i in range(200):
            logs[i % 2].append(f"START {i}\nline {i}\nEND {i}")
        for log in logs:
            log.close()  # queued behind the appends
        assert ingest.flush(30)
        lines = (tmp_path / "logs" / REGION / "fn.log").read_text().splitlines()
        assert lines == [f"{word} {i}" for i in range(200) for word in ("START", "line", "END")]
        assert sum(log.writes for log in logs) < 200  # batched: fewer writes than appends
        # every file that was opened is closed, once (a batch writes a path through one of
        # the function's logs, so the other may never have opened the file at all)
        assert all(log._fd < 0 and log.closes <= 1 for log in logs) and logs[0].closes == 1
        group = store.group(REGION, "/aws/lambda/fn")
        assert group is not None
        events = store.events(log_store.EventQuery(group.id))
        assert len(events) == 600
        mine = [e.message for e in events if e.message.endswith(" 4") or e.message.endswith(" 5")]
        assert mine == ["START 4", "line 4", "END 4", "START 5", "line 5", "END 5"]
    finally:
        ingest.stop()
        store.close()


def test_without_a_running_thread_the_file_is_written_at_once(tmp_path: Path) -> None:
    store = LogStore(tmp_path / "store")
    ingest = LogIngest(store.path)  # never started (or stopped already)
    log = CountingLog(tmp_path)
    log.sink = ingest.sink_for(REGION, "/aws/lambda/fn", "s")
    log.append("hello")
    assert log.path.read_text() == "hello\n"
    log.close()
    assert log.closes == 1 and log._fd < 0
    store.close()
