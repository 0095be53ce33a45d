"""The SELECT the store modules share: a table's rows, all of them or only those whose column
(a region, a route table, an ACL, a group) has a given value, in a stated order (insertion
order unless told). The SQL goes through `Database.conn` like every other statement, so it
reads the same on SQLite and on PostgreSQL (store/dialect.py gives both a `rowid`)."""
from __future__ import annotations

from typing import Any

from .db import Database


def select_rows(db: Database, table: str, column: str, value: object | None,
                order: str = "rowid") -> list[Any]:
    """`table`'s rows whose `column` equals `value`, or all of them when `value` is None,
    sorted by `order` (an ORDER BY list)."""
    if value is None:
        rows: list[Any] = db.conn.execute(f"SELECT * FROM {table} ORDER BY {order}").fetchall()
    else:
        rows = db.conn.execute(f"SELECT * FROM {table} WHERE {column}=? ORDER BY {order}",
                               (value,)).fetchall()
    return rows
