"""A PostgreSQL server of a benchmark's own (`bench fabric`): Debian's initdb and postgres, run
as the `postgres` user (postgres refuses root) in a fresh temporary directory that holds the
data and the Unix socket; no TCP at all (listen_addresses=''). `postgres_server()` yields the
URL of its database and removes the server and its directory afterwards, even on failure;
`postgres_socket_dir()` yields the directory of its socket (tests/pg_server.py builds the tests'
server with a database per test on it)."""
from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PG_BIN = Path("/usr/lib/postgresql/15/bin")
RUN_AS = "postgres"


def available() -> bool:
    """Debian's PostgreSQL 15 is installed, its user exists, and we are root."""
    try:
        pwd.getpwnam(RUN_AS)
    except KeyError:
        return False
    return (PG_BIN / "postgres").exists() and os.geteuid() == 0


def _as_postgres(*argv: str) -> list[str]:
    user = pwd.getpwnam(RUN_AS)
    return ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--init-groups",
            "--", *argv]


def url_of(socket_dir: Path, database: str = "postgres") -> str:
    return f"postgresql://{RUN_AS}@/{database}?host={socket_dir}"


@contextmanager
def postgres_server() -> Iterator[str]:
    """A running server; yields the URL of its `postgres` database (Unix socket)."""
    with postgres_socket_dir() as root:
        yield url_of(root)


@contextmanager
def postgres_socket_dir(prefix: str = "lp-bench-pg-", max_connections: int = 60
                        ) -> Iterator[Path]:
    """A running server; yields the directory holding its Unix socket (and its data)."""
    user = pwd.getpwnam(RUN_AS)
    root = Path(tempfile.mkdtemp(prefix=prefix))
    proc: subprocess.Popen[bytes] | None = None
    try:
        os.chown(root, user.pw_uid, user.pw_gid)
        data = root / "data"
        subprocess.run(_as_postgres(str(PG_BIN / "initdb"), "-D", str(data), "-U", RUN_AS,
                                    "--auth=trust", "--encoding=UTF8", "--locale=C.UTF-8"),
                       check=True, capture_output=True, timeout=120)
        with open(root / "postgres.log", "wb") as log:
            proc = subprocess.Popen(
                _as_postgres(str(PG_BIN / "postgres"), "-D", str(data), "-k", str(root),
                             "-c", "listen_addresses=", "-c", "fsync=off",
                             "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
                             "-c", f"max_connections={max_connections}",
                             "-c", "shared_buffers=16MB"),
                stdout=log, stderr=subprocess.STDOUT)
        _wait_ready(proc, url_of(root), root)
        yield root
    finally:
        if proc is not None:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)  # fast shutdown
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        shutil.rmtree(root, ignore_errors=True)


def _wait_ready(proc: subprocess.Popen[bytes], url: str, root: Path) -> None:
    import psycopg
    deadline = time.monotonic() + 120
    while True:
        if proc.poll() is not None:
            raise RuntimeError("postgres exited: " + (root / "postgres.log").read_text()[-2000:])
        try:
            psycopg.connect(url, connect_timeout=5).close()
            return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
