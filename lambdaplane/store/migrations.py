"""Schema migrations, for both backends. A store module's `schema(...)` creates its tables as
they are now (CREATE … IF NOT EXISTS, on every open); a change to a table that already holds
data in some database is a migration instead: registered once with a name that never
changes, in SQLite's dialect (store/dialect.py rewrites it for PostgreSQL), and applied in
registration order, each in its own transaction, at most once per database. The
`schema_migrations` table records what a database has had; `Database.open` brings it up to
date. On PostgreSQL an advisory lock keeps two servers opening one database from racing; on
SQLite each migration's transaction takes the write lock and looks again before applying."""
from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .db import Database

SCHEMA_LOCK_KEY = 0x6C70_7363  # "lpsc": the advisory lock around schema creation


@dataclass(frozen=True)
class Migration:
    name: str
    sql: str  # one or more statements, SQLite's dialect


MIGRATIONS: list[Migration] = []


def migration(name: str, sql: str) -> Migration:
    """Register a schema change; `name` is its identity in every database, forever."""
    if any(m.name == name for m in MIGRATIONS):
        raise ValueError(f"migration {name!r} is registered twice")
    m = Migration(name, sql)
    MIGRATIONS.append(m)
    return m


def migrate(db: "Database") -> list[str]:
    """Apply the registered migrations this database has not had; their names."""
    db.conn.executescript("CREATE TABLE IF NOT EXISTS schema_migrations ("
                          "name TEXT PRIMARY KEY, applied_at REAL NOT NULL);")
    done = {r[0] for r in db.conn.execute("SELECT name FROM schema_migrations").fetchall()}
    applied = []
    for m in MIGRATIONS:
        if m.name in done:
            continue
        with db.transaction():  # SQLite: BEGIN IMMEDIATE, the write lock; then look again
            if db.conn.execute("SELECT 1 FROM schema_migrations WHERE name = ?",
                               (m.name,)).fetchone():
                continue  # another opener applied it meanwhile (two processes opening at once)
            for statement in _statements(m.sql):
                db.conn.execute(_ddl(db, statement))
            db.conn.execute("INSERT INTO schema_migrations (name, applied_at) VALUES (?, ?)",
                            (m.name, time.time()))
        applied.append(m.name)
    return applied


def applied(db: "Database") -> list[str]:
    rows = db.conn.execute("SELECT name FROM schema_migrations ORDER BY applied_at, name")
    return [r[0] for r in rows.fetchall()]


@contextmanager
def schema_lock(db: "Database") -> Iterator[None]:
    """PostgreSQL: one opener at a time creates and migrates (SQLite's file lock is enough)."""
    if db.dialect.name != "postgresql":
        yield
        return
    db.conn.execute("SELECT pg_advisory_lock(?)", (SCHEMA_LOCK_KEY,))
    try:
        yield
    finally:
        db.conn.execute("SELECT pg_advisory_unlock(?)", (SCHEMA_LOCK_KEY,))


def _ddl(db: "Database", statement: str) -> str:
    return db.dialect.script(statement)


def _statements(sql: str) -> list[str]:
    return [s.strip() for s in sql.split(";") if s.strip()]
