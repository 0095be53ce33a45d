"""The PostgreSQL backend of the store: a connection (psycopg 3, synchronous like the stdlib's
sqlite3, which the store is written against) that behaves as the store's SQLite connection
does — `execute`/`executemany`/`executescript` with SQLite's dialect (rewritten by
store/dialect.py), rows read by name or position, `rowcount`, autocommit outside explicit
transactions, `total_changes`, and `sqlite3.IntegrityError` for a violated constraint (so
store modules catch one exception on both backends).

Parameters are bound client-side (psycopg's ClientCursor, values quoted by libpq), which
keeps SQLite's leniency about parameter types (`? IS NULL`, a number compared with a
number-valued text) that server-side binding refuses. Python booleans are stored as 0/1
(the schema's INTEGER flags) and NUMERIC results (SUM over BIGINT) come back as int or
float, as SQLite returns them.

`total_changes` counts rows this connection inserted, updated or deleted — SQLite's meaning
(its count is per connection too). Writes by other processes sharing the database are not
seen in it; with one server per database that is every write."""
from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import psycopg
from psycopg.adapt import Loader
from psycopg.types.numeric import Int8Dumper

from .dialect import POSTGRES_PRELUDE, PostgresDialect, TableColumns


class Row(tuple):  # type: ignore[type-arg]
    """A result row read by position, by column name (case-insensitive, as sqlite3.Row)
    or as a mapping via keys()."""
    _names: dict[str, int] = {}
    _keys: tuple[str, ...] = ()

    def __getitem__(self, key: Any) -> Any:  # type: ignore[override]
        if isinstance(key, str):
            index = self._names.get(key)
            if index is None:
                index = self._names[key.lower()]
            return tuple.__getitem__(self, index)
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self._keys)


def _row_factory(cursor: Any) -> Any:
    description = cursor.description
    if description is None:
        return tuple
    keys = tuple(d.name for d in description)
    names: dict[str, int] = {}
    for i, k in enumerate(keys):
        names.setdefault(k, i)
        names.setdefault(k.lower(), i)
    cls = type("Row", (Row,), {"_names": names, "_keys": keys})
    return lambda values: cls(values)


class _NumberLoader(Loader):
    def load(self, data: Any) -> int | float:
        text = bytes(data).decode()
        try:
            return int(text)
        except ValueError:
            return float(text)


class Cursor:
    """What execute returns: fetchone/fetchall/iteration and rowcount."""

    def __init__(self, cur: psycopg.ClientCursor[Any]) -> None:
        self._cur = cur
        self.rowcount = cur.rowcount

    def fetchone(self) -> Any:
        return self._cur.fetchone() if self._cur.description else None

    def fetchall(self) -> list[Any]:
        return self._cur.fetchall() if self._cur.description else []

    def __iter__(self) -> Iterator[Any]:
        return iter(self.fetchall())


class PgConnection:
    def __init__(self, url: str) -> None:
        try:
            self.raw: psycopg.Connection[Any] = psycopg.connect(
                url, autocommit=True, cursor_factory=psycopg.ClientCursor)
        except psycopg.Error as e:
            from .db import DatabaseUnavailable
            raise DatabaseUnavailable(f"cannot connect to PostgreSQL ({_without_password(url)}):"
                                      f" {str(e).strip()}") from None
        self.raw.adapters.register_dumper(bool, Int8Dumper)
        self.raw.adapters.register_loader("numeric", _NumberLoader)
        self.raw.row_factory = _row_factory
        self.total_changes = 0
        self.dialect = PostgresDialect(self._table_columns)
        self._columns: dict[str, TableColumns] = {}
        self.executescript(POSTGRES_PRELUDE, translate=False)

    def execute(self, sql: str, parameters: Sequence[Any] = ()) -> Cursor:
        cur = self.raw.cursor()
        try:
            cur.execute(self.dialect.statement(sql), tuple(parameters))  # type: ignore[arg-type]
        except psycopg.errors.IntegrityError as e:
            raise sqlite3.IntegrityError(str(e)) from e
        return self._counted(cur)

    def executemany(self, sql: str, seq: Iterable[Sequence[Any]]) -> Cursor:
        rows = [tuple(p) for p in seq]
        cur = self.raw.cursor()
        if rows:
            try:
                cur.executemany(self.dialect.statement(sql), rows)  # type: ignore[arg-type]
            except psycopg.errors.IntegrityError as e:
                raise sqlite3.IntegrityError(str(e)) from e
        return self._counted(cur)

    def executescript(self, sql: str, translate: bool = True) -> None:
        """DDL, no parameters; SQLite's types and collations rewritten."""
        text = self.dialect.script(sql) if translate else sql
        self.raw.execute(text.encode())  # bytes: not a %-format string
        self._columns.clear()

    def create_tables(self, scripts: list[str]) -> None:
        """Every module's schema script. PostgreSQL checks a reference when the table is
        created (SQLite when a row is written): a script naming a table of a module
        registered later waits for a later pass (each script is one transaction)."""
        pending = list(scripts)
        while pending:
            failed: list[str] = []
            error: Exception | None = None
            for sql in pending:
                try:
                    self.executescript(sql)
                except psycopg.errors.UndefinedTable as e:
                    failed.append(sql)
                    error = e
            if len(failed) == len(pending):
                raise RuntimeError(f"schema cannot be created: {error}") from error
            pending = failed

    def _counted(self, cur: psycopg.ClientCursor[Any]) -> Cursor:
        if cur.rowcount > 0 and cur.statusmessage and \
                cur.statusmessage.split(" ", 1)[0] in ("INSERT", "UPDATE", "DELETE"):
            self.total_changes += cur.rowcount
        return Cursor(cur)

    def _table_columns(self, table: str) -> TableColumns:
        if table not in self._columns:
            rows = self.raw.execute(
                "SELECT a.attname, COALESCE(a.attnum = ANY(i.indkey), false) "
                "FROM pg_attribute a LEFT JOIN pg_index i "
                "ON i.indrelid = a.attrelid AND i.indisprimary "
                "WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped "
                "ORDER BY a.attnum", (table,)).fetchall()
            self._columns[table] = (tuple(r[0] for r in rows if r[1]),
                                    tuple(r[0] for r in rows))
        return self._columns[table]

    def close(self) -> None:
        self.raw.close()


def _without_password(url: str) -> str:
    """The URL for a message: a password in it is replaced by ***."""
    import re
    return re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", url)
