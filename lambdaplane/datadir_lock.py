"""One data dir, one server: an exclusive flock(2) on `<data dir>/lock`, taken by `serve` before
it touches anything (database, kernel objects, zygotes) and by `clean` before it removes the
instance's objects. The kernel drops the lock when its holder dies, however it dies, so a
crashed server never blocks the next one. The file says who holds it (pid and command), so the
refusal can name the running server."""
from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass
from pathlib import Path

LOCK_NAME = "lock"


class DataDirBusy(RuntimeError):
    """Another process holds the data dir; `holder_pid` is 0 when it could not be read."""

    def __init__(self, data_dir: Path, holder_pid: int, holder_command: str) -> None:
        self.data_dir = data_dir
        self.holder_pid = holder_pid
        self.holder_command = holder_command
        who = f"`lambdaplane {holder_command}` (pid {holder_pid})" if holder_pid else \
            "another lambdaplane process"
        super().__init__(f"the data dir {data_dir} is in use by {who}; stop it first, or use "
                         f"another --data-dir")


@dataclass
class DataDirLock:
    path: Path
    fd: int

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)  # closing the last fd drops the flock
            self.fd = -1


def acquire(data_dir: Path, command: str) -> DataDirLock:
    """Lock `data_dir` (created if missing) for `command` ("serve" or "clean"), or raise
    DataDirBusy naming the holder. Never blocks. The fd is close-on-exec: zygotes and
    sandboxes never hold it."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        pid, holder = _read_holder(fd)
        os.close(fd)
        raise DataDirBusy(data_dir, pid, holder) from None
    except BaseException:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n{command}\n".encode(), 0)
    return DataDirLock(path, fd)


def _read_holder(fd: int) -> tuple[int, str]:
    try:
        lines = os.pread(fd, 256, 0).decode(errors="replace").split("\n")
        return int(lines[0]), (lines[1] if len(lines) > 1 else "").strip() or "serve"
    except (OSError, ValueError):
        return 0, ""
