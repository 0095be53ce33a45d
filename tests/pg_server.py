"""A PostgreSQL server of the tests' own (lambdaplane/bench/postgres.py starts it: Debian's
initdb and postgres as the `postgres` user, a fresh temporary directory holding the data and the
Unix socket, no TCP). Each test gets a database of its own (`database_url`), dropped afterwards;
the server and its directory go when the session ends, even on failure."""
from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import count
from pathlib import Path

from lambdaplane.bench.postgres import available, postgres_socket_dir, url_of

__all__ = ["PgServer", "available", "pg_server"]

_numbers = count(1)


class PgServer:
    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def socket_dir(self) -> Path:
        return self.root

    def url(self, database: str = "postgres") -> str:
        return url_of(self.socket_dir, database)

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


@contextmanager
def pg_server() -> Iterator[PgServer]:
    with postgres_socket_dir(prefix="lp-pg-", max_connections=40) as root:
        yield PgServer(root)
