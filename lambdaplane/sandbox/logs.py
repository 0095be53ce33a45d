"""Function logs: each environment's stdout+stderr, attributed to its current invocation and
written, AWS-style, to one file per function under `<data_dir>/logs/<region>/<name>.log`.

Bounded: one line is one log event and is cut into events of at most AWS's 256 KB
(MAX_EVENT_BYTES, CloudWatch Logs' limit); a function's file is rotated when it would pass
`max_bytes` (<name>.log.1, .2 ... up to `rotations`, the oldest dropped), so a function that
prints without end holds at most (1 + rotations) x max_bytes of the disk.

Owns: the output pipe of every environment (the write end goes to the zygote, the read end is
watched by the event loop), the START/END/REPORT lines, and reading a log's tail back. Output is
drained synchronously when an invocation ends: whatever the process wrote before it posted its
result is already in the pipe, so attribution does not depend on timing."""
from __future__ import annotations

import asyncio
import math
import os
import re
from collections import deque
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

_SAFE = re.compile(r"[A-Za-z0-9_.-]{1,170}")
_READ_CHUNK = 64 * 1024
# What one invocation keeps for its own log text (LogType=Tail shows the last 4 KB anyway).
_MAX_INVOCATION_LOG = 1024 * 1024
MAX_EVENT_BYTES = 256 * 1024  # one log event at most (CloudWatch Logs' limit)
DEFAULT_LOG_MAX_BYTES = 64 * 1024 * 1024  # one function's current log file
DEFAULT_LOG_ROTATIONS = 2  # older files kept: <name>.log.1 .. .2


def log_path(data_dir: Path, region: str, name: str) -> Path:
    if not (_SAFE.fullmatch(region) and _SAFE.fullmatch(name)) or ".." in region + name:
        raise ValueError("invalid region or function name")
    return data_dir / "logs" / region / f"{name}.log"


def tail_lines(data_dir: Path, region: str, name: str, n: int) -> list[str] | None:
    """The last `n` lines of a function's log (reaching into the last rotated file when the
    current one is shorter); None if it has none."""
    path = log_path(data_dir, region, name)
    if not path.exists():
        return None
    lines: deque[str] = deque(maxlen=max(n, 0))
    for part in (rotated_path(path, 1), path):
        try:
            with open(part, errors="replace") as f:
                lines.extend(line.rstrip("\n") for line in f)
        except FileNotFoundError:
            continue
    return list(lines)


def rotated_path(path: Path, generation: int) -> Path:
    return path.with_name(f"{path.name}.{generation}")


def split_events(data: bytes, limit: int = MAX_EVENT_BYTES) -> bytes:
    """Every line longer than `limit` bytes cut into lines of at most `limit` (+ newline)."""
    if len(data) <= limit:
        return data
    out = bytearray()
    for line in data.splitlines(keepends=True):
        body = line.rstrip(b"\n")
        if len(body) <= limit:
            out += line
            continue
        for start in range(0, len(body), limit):
            out += body[start:start + limit] + b"\n"
    return bytes(out)


def aws_timestamp(epoch_s: float | None = None) -> str:
    """2024-01-31T12:00:00.123Z, the form Lambda prefixes its own log lines with."""
    moment = datetime.fromtimestamp(epoch_s if epoch_s is not None else
                                    datetime.now(timezone.utc).timestamp(), timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def report_line(request_id: str, duration_ms: float, memory_mb: int, max_used_mb: int,
                init_ms: float | None) -> str:
    line = (f"REPORT RequestId: {request_id}\tDuration: {duration_ms:.2f} ms\t"
            f"Billed Duration: {max(1, math.ceil(duration_ms))} ms\t"
            f"Memory Size: {memory_mb} MB\tMax Memory Used: {max_used_mb} MB\t")
    if init_ms is not None:
        line += f"Init Duration: {init_ms:.2f} ms\t"
    return line


def _fit(data: bytes, limit: int) -> bytes:
    """One append no larger than a whole log file: its head and its tail (where an
    invocation's END and REPORT lines are), and a line saying how much was left out."""
    if len(data) <= limit:
        return data
    marker = f"\n[lambdaplane: {len(data) - limit} bytes of output left out]\n".encode()
    keep = limit - len(marker)
    if keep <= 0:
        return data[len(data) - limit:]
    head, tail = data[:keep // 2], data[len(data) - (keep - keep // 2):]
    return head + marker + tail


class FunctionLog:
    """Appends to one function's log file. Every invocation writes its lines, so the file
    stays open (O_APPEND: several environments of a function append whole writes to the same
    file); it is opened again if someone removed or rotated it meanwhile (all writers live in
    the server's one event loop, so a rotation never races another append)."""

    def __init__(self, data_dir: Path, region: str, name: str,
                 max_bytes: int = DEFAULT_LOG_MAX_BYTES,
                 rotations: int = DEFAULT_LOG_ROTATIONS) -> None:
        self.path = log_path(data_dir, region, name)
        self.max_bytes = max_bytes
        self.rotations = rotations
        self._fd = -1
        self._ino = -1
        # the log store's writer for this environment's group/stream (store/log_store.py)
        self.feed: Callable[[str], None] | None = None

    def append(self, text: str) -> None:
        if not text:
            return
        data = _fit(split_events((text if text.endswith("\n") else text + "\n")
                                 .encode(errors="replace")), self.max_bytes)
        try:
            current = os.stat(self.path)
        except FileNotFoundError:
            current = None
        if current is not None and current.st_size > 0 and \
                current.st_size + len(data) > self.max_bytes:
            self._rotate()
            current = None
        if self._fd < 0 or current is None or current.st_ino != self._ino:
            self._open()
        while data:
            data = data[os.write(self._fd, data):]
        if self.feed is not None:
            self.feed(text)

    def _open(self) -> None:
        self.close()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                           0o644)
        self._ino = os.fstat(self._fd).st_ino

    def _rotate(self) -> None:
        """<name>.log -> .1 -> .2 ...; the oldest beyond `rotations` is dropped."""
        self.close()
        if self.rotations <= 0:
            self.path.unlink(missing_ok=True)
            return
        for generation in range(self.rotations - 1, 0, -1):
            older = rotated_path(self.path, generation)
            if older.exists():
                os.replace(older, rotated_path(self.path, generation + 1))
        os.replace(self.path, rotated_path(self.path, 1))

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class OutputCapture:
    """One environment's stdout+stderr pipe. Output between invocations (init, background
    threads) goes to the file and is shown with the next invocation's log on a cold start."""

    def __init__(self, function_log: FunctionLog) -> None:
        self.function_log = function_log
        read_fd, self.write_fd = os.pipe2(os.O_CLOEXEC)
        os.set_blocking(read_fd, False)
        self._read_fd: int | None = read_fd
        self._request_id: str | None = None
        self._buffer = bytearray()  # current invocation's output
        self._outside = bytearray()  # output outside any invocation, not yet shown
        asyncio.get_running_loop().add_reader(read_fd, self._on_readable)

    def writer_sent(self) -> None:
        """The zygote has its copy of the write end: close ours, so EOF means the env is gone."""
        if self.write_fd >= 0:
            os.close(self.write_fd)
            self.write_fd = -1

    def begin(self, request_id: str) -> None:
        self.drain()
        self._request_id = request_id

    def take_outside_and_begin(self, request_id: str, read_by_loop: bool = False) -> str:
        """`take_outside` then `begin`, with one read of the pipe, not two (every invoke);
        none when the loop has read it already (`end`)."""
        if not read_by_loop:
            self.drain()
        outside = bytes(self._outside).decode(errors="replace")
        self._outside.clear()
        self._request_id = request_id
        return outside

    def end(self, read_by_loop: bool = False) -> str:
        """Stop attributing output to the current invocation; returns what it printed.
        `read_by_loop`: the runtime posted its result after flushing its output, and the
        loop ran the pipe's reader before the callback that resumed the invocation (a pipe
        written before the socket is readable in the same or an earlier poll; readers run
        before the callbacks they schedule), so the pipe need not be read again here."""
        if not read_by_loop:
            self.drain()
        text = bytes(self._buffer).decode(errors="replace")
        self._buffer.clear()
        self._request_id = None
        return text

    def take_outside(self) -> str:
        """Output printed outside any invocation (e.g. init before START)."""
        self.drain()
        text = bytes(self._outside).decode(errors="replace")
        self._outside.clear()
        return text

    def drain(self) -> None:
        while self._read_fd is not None:
            try:
                chunk = os.read(self._read_fd, _READ_CHUNK)
            except BlockingIOError:
                return
            if not chunk:
                self._stop_reading()
                return
            self._keep(chunk)
            if len(chunk) < _READ_CHUNK:  # a pipe read returns all it holds: empty now
                return

    def close(self) -> None:
        self.drain()
        if self._outside and self._request_id is None:
            self.function_log.append(bytes(self._outside).decode(errors="replace"))
            self._outside.clear()
        self._stop_reading()
        self.writer_sent()
        self.function_log.close()

    def _on_readable(self) -> None:
        self.drain()

    def _keep(self, chunk: bytes) -> None:
        target = self._buffer if self._request_id is not None else self._outside
        if len(target) < _MAX_INVOCATION_LOG:
            target += chunk

    def _stop_reading(self) -> None:
        if self._read_fd is None:
            return
        asyncio.get_running_loop().remove_reader(self._read_fd)
        os.close(self._read_fd)
        self._read_fd = None
