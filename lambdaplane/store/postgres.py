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

import re
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import psycopg
from psycopg.adapt import Loader
from psycopg.types.numeric import Int8Dumper

from .dialect import POSTGRES_PRELUDE, PostgresDialect, Statement, TableKeys


_DDL_VERBS = re.compile(r"\s*(ALTER|CREATE|DROP)\s", re.IGNORECASE)


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
    """What execute returns: fetchone/fetchall/iteration and rowcount (of the last statement
    when a rewrite made two, store/dialect.py's REPLACE)."""

    def __init__(self, cur: psycopg.ClientCursor[Any]) -> None:
        while cur.nextset():
            pass
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
        self.dialect = PostgresDialect(self._table_keys)
        self._keys: dict[str, TableKeys] = {}

    def execute(self, sql: str, parameters: Sequence[Any] = ()) -> Cursor:
        cur = self.raw.cursor()
        try:
            statement = self.dialect.statement(sql)
            cur.execute(statement.sql, _ordered(statement, parameters))  # type: ignore[arg-type]
        except psycopg.errors.IntegrityError as e:
            raise sqlite3.IntegrityError(str(e)) from e
        if _DDL_VERBS.match(sql):
            self._forget_tables()
        return self._counted(cur)

    def executemany(self, sql: str, seq: Iterable[Sequence[Any]]) -> Cursor:
        """One execute per parameter row (a REPLACE is two statements in one query, which
        psycopg's pipelined executemany cannot send); rowcount is their sum."""
        total, last = 0, None
        for parameters in seq:
            last = self.execute(sql, parameters)
            total += max(last.rowcount, 0)
        if last is None:
            return Cursor(self.raw.cursor())
        last.rowcount = total
        return last

    def executescript(self, sql: str, translate: bool = True) -> None:
        """DDL, no parameters; SQLite's types and collations rewritten."""
        text = self.dialect.script(sql) if translate else sql
        self.raw.execute(text.encode())  # bytes: not a %-format string
        self._forget_tables()

    def _forget_tables(self) -> None:
        """After DDL: statements rewritten from the old columns are rewritten again."""
        self._keys.clear()
        self.dialect.statement.cache_clear()

    def create_tables(self, scripts: list[str]) -> None:
        """The prelude (store/dialect.py), then every module's schema script (under the
        caller's schema lock). PostgreSQL checks a reference when the table is
        created (SQLite when a row is written): a script naming a table of a module
        registered later waits for a later pass (each script is one transaction)."""
        self.executescript(POSTGRES_PRELUDE, translate=False)
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
        result = Cursor(cur)  # on the last statement's result
        if result.rowcount > 0 and cur.statusmessage and \
                cur.statusmessage.split(" ", 1)[0] in ("INSERT", "UPDATE", "DELETE"):
            self.total_changes += result.rowcount
        return result

    def _table_keys(self, table: str) -> TableKeys:
        if table not in self._keys:
            columns = self.raw.execute(
                "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass "
                "AND attnum > 0 AND NOT attisdropped ORDER BY attnum", (table,)).fetchall()
            unique = self.raw.execute(
                "SELECT array_agg(a.attname ORDER BY k.i) FROM pg_index x "
                "CROSS JOIN LATERAL unnest(x.indkey) WITH ORDINALITY AS k(attnum, i) "
                "JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.attnum "
                "WHERE x.indrelid = %s::regclass AND x.indisunique "
                "GROUP BY x.indexrelid ORDER BY bool_or(x.indisprimary) DESC, x.indexrelid",
                (table,)).fetchall()
            self._keys[table] = TableKeys(tuple(r[0] for r in columns),
                                          tuple(tuple(r[0]) for r in unique))
        return self._keys[table]

    def close(self) -> None:
        self.raw.close()


def _ordered(statement: Statement, parameters: Sequence[Any]) -> tuple[Any, ...]:
    if statement.order is None:
        return tuple(parameters)
    return tuple(parameters[i] for i in statement.order)


def _without_password(url: str) -> str:
    """The URL for a message: a password in it is replaced by ***."""
    return re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", url)
