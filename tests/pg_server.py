"""A PostgreSQL server of the tests' own: Debian's initdb and postgres, run as the `postgres`
user (postgres refuses root) in a fresh temporary directory that holds the data and the Unix
socket; no TCP at all (listen_addresses=''). Each test gets a database of its own
(`database_url`), dropped afterwards; the server and its directory go when the session ends,
even on failure."""
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
from itertools import count
from pathlib import Path

PG_BIN = Path("/usr/lib/postgresql/15/bin")
RUN_AS = "postgres"
_numbers = count(1)


class PgServer:
    def __init__(self, root: Path, proc: subprocess.Popen[bytes]) -> None:
        self.root = root
        self.proc = proc

    @property
    def socket_dir(self) -> Path:
        return self.root

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{RUN_AS}@/{database}?host={self.socket_dir}"

    def admin(self, sql: str) -> None:
        import psycopg
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(sql.encode())

    @contextmanager
    def database(self) -> Iterator[str]:
        """A new empty database for one test; its URL."""
        name = f"lp_test_{os.getpid()}_{next(_numbers)}"
        self.admin(f"CREATE DATABASE {name}")
        try:
            yield self.url(name)
        finally:
            self.admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def available() -> bool:
    try:
        pwd.getpwnam(RUN_AS)
    except KeyError:
        return False
    return (PG_BIN / "postgres").exists() and os.geteuid() == 0


def _as_postgres(*argv: str) -> list[str]:
    user = pwd.getpwnam(RUN_AS)
    return ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--init-groups",
            "--", *argv]


@contextmanager
def pg_server() -> Iterator[PgServer]:
    user = pwd.getpwnam(RUN_AS)
    root = Path(tempfile.mkdtemp(prefix="lp-pg-"))
    proc: subprocess.Popen[bytes] | None = None
    try:
        os.chown(root, user.pw_uid, user.pw_gid)
        data = root / "data"
        subprocess.run(_as_postgres(str(PG_BIN / "initdb"), "-D", str(data), "-U", RUN_AS,
                                    "--auth=trust", "--encoding=UTF8", "--locale=C.UTF-8"),
                       check=True, capture_output=True, timeout=120)
        log = open(root / "postgres.log", "wb")
        proc = subprocess.Popen(
            _as_postgres(str(PG_BIN / "postgres"), "-D", str(data), "-k", str(root),
                         "-c", "listen_addresses=", "-c", "fsync=off",
                         "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
                         "-c", "max_connections=40", "-c", "shared_buffers=16MB"),
            stdout=log, stderr=subprocess.STDOUT)
        log.close()
        server = PgServer(root, proc)
        _wait_ready(server)
        yield server
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


def _wait_ready(server: PgServer) -> None:
    import psycopg
    deadline = time.monotonic() + 120
    while True:
        if server.proc.poll() is not None:
            raise RuntimeError("postgres exited: "
                               + (server.root / "postgres.log").read_text()[-2000:])
        try:
            psycopg.connect(server.url(), connect_timeout=5).close()
            return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
