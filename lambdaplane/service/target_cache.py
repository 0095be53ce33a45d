"""What every invoke looks up, remembered while the database is unchanged: the function (or
version, or alias) record an invoke names and the `FunctionSpec` it runs. Reading them from
SQLite and parsing their JSON on every invoke was a visible share of a warm invoke.

Correctness rests on one number: the database connection's `total_changes`, which SQLite
(and store/postgres.py's connection, counting the same way) raises on every row any statement of that connection inserts, updates or deletes (the server
holds the only connection to its database, store/db.py). Any write at all — a configuration or
code update, a published version, an alias change, a state transition — empties the cache, so
the next invoke reads what the write left. The cached objects are shared between invokes: the
invoke path only reads them."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypeVar

T = TypeVar("T")
MAX_ENTRIES = 4096  # beyond this the cache starts again (one entry per name/qualifier used)


class CountsChanges(Protocol):
    @property
    def total_changes(self) -> int: ...


class TargetCache:
    def __init__(self, conn: CountsChanges) -> None:
        self._conn = conn
        self._generation = -1
        self._entries: dict[tuple[Any, ...], Any] = {}

    def get(self, key: tuple[Any, ...], load: Callable[[], T]) -> T:
        """The remembered value of `key`, or `load()` (remembered if nothing was written
        meanwhile). Errors raised by `load` are not remembered."""
        generation = self._conn.total_changes
        if generation != self._generation:
            self._entries.clear()
            self._generation = generation
        try:
            value: T = self._entries[key]
            return value
        except KeyError:
            pass
        value = load()
        if self._conn.total_changes == generation:
            if len(self._entries) >= MAX_ENTRIES:
                self._entries.clear()
            self._entries[key] = value
        return value

    def clear(self) -> None:
        self._entries.clear()
