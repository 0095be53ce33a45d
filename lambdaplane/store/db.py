"""The store's database: SQLite in the data dir (the embedded default), or PostgreSQL when
`serve --database postgresql://…` names one (store/postgres.py; the dialect differences are
in store/dialect.py). Each store module registers its own tables with `SCHEMAS` (and later
changes with store/migrations.py); `Database.open` creates and migrates them. Single
connection, used from the event loop thread (statements are short; WAL keeps readers off
writers)."""
from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .dialect import Dialect

# a violated constraint, on either backend (store/postgres.py raises it too)
IntegrityError = sqlite3.IntegrityError


class DatabaseUnavailable(Exception):
    """The database named by --database cannot be reached or used."""

SCHEMAS: list[str] = []


def schema(sql: str) -> str:
    """Register a module's CREATE TABLE IF NOT EXISTS statements."""
    SCHEMAS.append(sql)
    return sql


class Database:
    def __init__(self, conn: Any, path: Path, dialect: Dialect | None = None) -> None:
        self.conn = conn  # sqlite3.Connection, or store/postgres.py's PgConnection
        self.path = path
        self.dialect = dialect or Dialect()

    @classmethod
    def open(cls, data_dir: Path, url: str | None = None) -> "Database":
        """The data dir's SQLite database, or the PostgreSQL database `url` names."""
        if url:
            return cls._open_postgres(data_dir, url)
        data_dir.mkdir(parents=True, exist_ok=True)
        path = data_dir / "lambdaplane.sqlite3"
        conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        conn.row_factory = sqlite3.Row
        dialect = Dialect()
        for pragma in dialect.open_pragmas:
            conn.execute(pragma)
        for sql in SCHEMAS:
            conn.executescript(sql)
        db = cls(conn, path, dialect)
        from .migrations import migrate
        migrate(db)
        return db

    @classmethod
    def _open_postgres(cls, data_dir: Path, url: str) -> "Database":
        from .migrations import migrate, schema_lock
        from .postgres import PgConnection
        conn = PgConnection(url)
        db = cls(conn, data_dir, conn.dialect)
        try:
            with schema_lock(db):  # two servers opening one database create it once
                conn.create_tables(SCHEMAS)
                migrate(db)
        except BaseException:
            conn.close()
            raise
        return db

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        """BEGIN IMMEDIATE … COMMIT; an exception rolls back."""
        self.conn.execute(self.dialect.begin)
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def close(self) -> None:
        self.conn.close()
