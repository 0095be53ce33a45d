"""Following a function's log for the console's live tail.

Owns the small interface the console reads logs through (`LogTail`: the last lines, then
whatever came after a cursor) and its implementation over today's per-function log files
(sandbox/logs.py). A log store with its own events can stand behind the same interface: the
cursor is opaque to the console."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ..sandbox.logs import log_path, tail_lines

MAX_READ = 256 * 1024  # per call: a very chatty function is followed over several calls


class LogTail(Protocol):
    def follow(self, region: str, name: str, cursor: object | None,
               last: int) -> tuple[list[str], object]:
        """Lines after `cursor` and the cursor to pass next time; with no cursor yet, the
        last `last` lines. Raises ValueError for a name that cannot be a function's."""
        ...


@dataclass(frozen=True)
class FileCursor:
    inode: int
    offset: int  # just past the last whole line returned


class FileLogTail:
    """Follows `<data_dir>/logs/<region>/<name>.log`; a removed or truncated file (the
    function deleted and made again) is followed again from its start."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir

    def follow(self, region: str, name: str, cursor: object | None,
               last: int) -> tuple[list[str], object]:
        path = log_path(self.data_dir, region, name)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return [], FileCursor(0, 0)
        if cursor is None:
            lines = tail_lines(self.data_dir, region, name, last) or []
            end = self._end_of_whole_lines(path, st.st_ino, st.st_size)
            if end.offset < st.st_size and lines:
                lines = lines[:-1]  # half-written: it comes whole next time
            return lines, end
        assert isinstance(cursor, FileCursor)
        offset = cursor.offset
        if cursor.inode != st.st_ino or st.st_size < offset:
            offset = 0
        if st.st_size == offset:
            return [], FileCursor(st.st_ino, offset)
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read(MAX_READ)
        whole = data.rfind(b"\n") + 1
        if whole == 0:
            if len(data) < MAX_READ:
                return [], FileCursor(st.st_ino, offset)  # a line still being written
            whole = len(data)  # one enormous line: shown in pieces
        text = data[:whole].decode(errors="replace")
        return text.splitlines(), FileCursor(st.st_ino, offset + whole)

    @staticmethod
    def _end_of_whole_lines(path: Path, inode: int, size: int) -> FileCursor:
        """The cursor after the file's last newline (a half-written line comes next time)."""
        if size == 0:
            return FileCursor(inode, 0)
        with open(path, "rb") as f:
            start = max(0, size - 4096)
            f.seek(start)
            tail = f.read(size - start)
        cut = tail.rfind(b"\n")
        return FileCursor(inode, start + cut + 1 if cut >= 0 else size)
