"""Bounded function logs without root: AWS's 256 KB per event (longer lines are cut into
events), and rotation so a function's logs never hold more than (1 + rotations) x max_bytes."""
from __future__ import annotations

from pathlib import Path

from lambdaplane.sandbox.logs import (
    MAX_EVENT_BYTES,
    FunctionLog,
    rotated_path,
    split_events,
    tail_lines,
)


def test_a_line_longer_than_256_kb_becomes_several_events() -> None:
    line = b"x" * (MAX_EVENT_BYTES * 2 + 10)
    events = split_events(b"short\n" + line + b"\nafter\n").split(b"\n")[:-1]
    assert events[0] == b"short" and events[-1] == b"after"
    assert [len(e) for e in events[1:-1]] == [MAX_EVENT_BYTES, MAX_EVENT_BYTES, 10]
    assert split_events(b"small\n") == b"small\n"


def test_rotation_bounds_the_files_and_keeps_the_newest(tmp_path: Path) -> None:
    log = FunctionLog(tmp_path, "us-east-1", "flood", max_bytes=10_000, rotations=2)
    for i in range(200):
        log.append(f"line {i:04d} " + "y" * 190)
    log.close()
    files = sorted(log.path.parent.iterdir())
    assert [f.name for f in files] == ["flood.log", "flood.log.1", "flood.log.2"]
    assert all(f.stat().st_size <= 10_000 for f in files)
    assert sum(f.stat().st_size for f in files) <= 30_000
    newest = tail_lines(tmp_path, "us-east-1", "flood", 3)
    assert newest is not None and [line[:9] for line in newest] == [
        "line 0197", "line 0198", "line 0199"]
    # the tail reaches into .1 when the current file is short
    in_current = len(log.path.read_text().splitlines())
    assert len(tail_lines(tmp_path, "us-east-1", "flood", 80) or []) > in_current


def test_two_writers_follow_a_rotation(tmp_path: Path) -> None:
    """Several environments of one function each hold the file open: after one rotates, the
    other writes to the new file, not on into the rotated one."""
    a = FunctionLog(tmp_path, "us-east-1", "f", max_bytes=1_000, rotations=1)
    b = FunctionLog(tmp_path, "us-east-1", "f", max_bytes=1_000, rotations=1)
    a.append("a" * 600)
    b.append("b" * 300)
    a.append("c" * 600)  # rotates: a and b's lines go to f.log.1
    b.append("d" * 10)
    assert log_text(a.path) == "c" * 600 + "\n" + "d" * 10 + "\n"
    assert rotated_path(a.path, 1).read_text() == "a" * 600 + "\n" + "b" * 300 + "\n"
    a.close()
    b.close()


def log_text(path: Path) -> str:
    return path.read_text()


def test_one_append_larger_than_a_file_keeps_head_and_tail(tmp_path: Path) -> None:
    log = FunctionLog(tmp_path, "us-east-1", "big", max_bytes=5_000, rotations=1)
    log.append("START RequestId: r1\n" + "z" * 20_000 + "\nEND RequestId: r1\nREPORT r1\n")
    log.close()
    text = log.path.read_text()
    assert len(text.encode()) == 5_000
    assert text.startswith("START RequestId: r1")
    assert text.endswith("END RequestId: r1\nREPORT r1\n")
    assert "bytes of output left out]" in text
