"""Hosts and their leases: one row per running agent (`lambdaplane agent`, lambdaplane/agent.py)
— its name, where its internal endpoint is, its instance prefix, when its lease runs out, its
load (invocations in flight) — and the functions it holds execution environments for. The agent
renews its row every second or so; a row whose lease ran out is expired: placement
(service/placement.py) ignores it, and any live process (`serve`, any agent) deletes it and what
is assigned to it. Rows only; the rules live in service/placement.py."""
from __future__ import annotations

from dataclasses import dataclass

from .db import Database, schema

DEFAULT_LEASE_S = 5.0

schema("""
CREATE TABLE IF NOT EXISTS hosts (
  id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, address TEXT NOT NULL,
  instance TEXT NOT NULL, lease_expires REAL NOT NULL, load INTEGER NOT NULL DEFAULT 0,
  started_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS host_warm_functions (
  host_id TEXT NOT NULL, region TEXT NOT NULL, function TEXT NOT NULL,
  PRIMARY KEY (host_id, region, function));
""")

FunctionKey = tuple[str, str]  # (region, name or name:version): FunctionSpec.key


@dataclass(frozen=True)
class Host:
    id: str  # the agent's instance prefix: unique per data dir
    name: str
    address: str  # unix:/path/agent.sock or http://host:port
    instance: str
    lease_expires: float
    load: int
    started_at: float


def _host(row: object) -> Host:
    r = row  # sqlite3.Row or the PostgreSQL row: both index by column name
    return Host(r["id"], r["name"], r["address"], r["instance"],  # type: ignore[index]
                float(r["lease_expires"]), int(r["load"]),  # type: ignore[index]
                float(r["started_at"]))  # type: ignore[index]


class HostStore:
    def __init__(self, db: Database, lease_s: float = DEFAULT_LEASE_S) -> None:
        self.db = db
        self.lease_s = lease_s

    def register(self, host_id: str, name: str, address: str, instance: str,
                 now: float) -> Host:
        """The agent's row, taking over any earlier one of the same id or name (a restart)."""
        with self.db.transaction() as conn:
            for row in conn.execute("SELECT id FROM hosts WHERE id=? OR name=?",
                                    (host_id, name)).fetchall():
                self._delete(conn, row["id"])
            conn.execute("INSERT INTO hosts (id, name, address, instance, lease_expires, load, "
                         "started_at) VALUES (?, ?, ?, ?, ?, 0, ?)",
                         (host_id, name, address, instance, now + self.lease_s, now))
        return Host(host_id, name, address, instance, now + self.lease_s, 0, now)

    def renew(self, host_id: str, now: float, load: int, warm: set[FunctionKey],
              written: set[FunctionKey] | None = None) -> bool:
        """Extend the lease and record the load and warm functions; False when the row is
        gone (it expired and was deleted): the agent must register again. `written`: the warm
        set this agent last recorded (None: unknown, read it); when it is `warm`, the renewal
        is one UPDATE — the common case, once a second, on a database a round trip away."""
        if written is not None and written == warm:
            return self.db.conn.execute("UPDATE hosts SET lease_expires=?, load=? WHERE id=?",
                                        (now + self.lease_s, load, host_id)).rowcount > 0
        with self.db.transaction() as conn:
            if conn.execute("UPDATE hosts SET lease_expires=?, load=? WHERE id=?",
                            (now + self.lease_s, load, host_id)).rowcount <= 0:
                return False
            held = {(r["region"], r["function"]) for r in conn.execute(
                "SELECT region, function FROM host_warm_functions WHERE host_id=?",
                (host_id,)).fetchall()}
            for region, function in held - warm:
                conn.execute("DELETE FROM host_warm_functions WHERE host_id=? AND region=? "
                             "AND function=?", (host_id, region, function))
            for region, function in warm - held:
                conn.execute("INSERT INTO host_warm_functions (host_id, region, function) "
                             "VALUES (?, ?, ?)", (host_id, region, function))
        return True

    def expire(self, now: float) -> list[Host]:
        """Delete every host whose lease ran out, and its assignments; the hosts deleted.
        One read when none has (every second, on every live process)."""
        if self.db.conn.execute("SELECT id FROM hosts WHERE lease_expires <= ? LIMIT 1",
                                (now,)).fetchone() is None:
            return []
        with self.db.transaction() as conn:
            gone = [_host(r) for r in conn.execute(
                "SELECT * FROM hosts WHERE lease_expires <= ? ORDER BY name",
                (now,)).fetchall()]
            for host in gone:
                self._delete(conn, host.id)
        return gone

    def remove(self, host_id: str) -> bool:
        """An agent's row and assignments (its clean, or its orderly stop)."""
        with self.db.transaction() as conn:
            found = conn.execute("SELECT id FROM hosts WHERE id=?",
                                 (host_id,)).fetchone() is not None
            self._delete(conn, host_id)
        return found

    def by_name(self, name: str) -> Host | None:
        row = self.db.conn.execute("SELECT * FROM hosts WHERE name=?", (name,)).fetchone()
        return None if row is None else _host(row)

    def live(self, now: float) -> list[Host]:
        """Hosts whose lease has not run out, by name."""
        return [_host(r) for r in self.db.conn.execute(
            "SELECT * FROM hosts WHERE lease_expires > ? ORDER BY name", (now,)).fetchall()]

    def all(self) -> list[Host]:
        return [_host(r) for r in self.db.conn.execute(
            "SELECT * FROM hosts ORDER BY name").fetchall()]

    def warm_for(self, key: FunctionKey, now: float) -> list[Host]:
        """Live hosts holding environments of the function version `key`, by name."""
        return [_host(r) for r in self.db.conn.execute(
            "SELECT h.* FROM hosts h JOIN host_warm_functions w ON w.host_id = h.id "
            "WHERE w.region=? AND w.function=? AND h.lease_expires > ? ORDER BY h.name",
            (key[0], key[1], now)).fetchall()]

    def warm_functions(self, host_id: str) -> set[FunctionKey]:
        return {(r["region"], r["function"]) for r in self.db.conn.execute(
            "SELECT region, function FROM host_warm_functions WHERE host_id=?",
            (host_id,)).fetchall()}

    def warm_by_host(self) -> dict[str, set[FunctionKey]]:
        """Every host's warm functions, in one read."""
        warm: dict[str, set[FunctionKey]] = {}
        for r in self.db.conn.execute(
                "SELECT host_id, region, function FROM host_warm_functions").fetchall():
            warm.setdefault(r["host_id"], set()).add((r["region"], r["function"]))
        return warm

    @staticmethod
    def _delete(conn: object, host_id: str) -> None:
        execute = conn.execute  # type: ignore[attr-defined]
        execute("DELETE FROM host_warm_functions WHERE host_id=?", (host_id,))
        execute("DELETE FROM hosts WHERE id=?", (host_id,))
