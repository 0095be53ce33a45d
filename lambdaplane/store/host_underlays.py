"""The underlay address of each agent in the EVPN fabric (`lambdaplane agent --underlay-address`,
docs/fabric.md): one row per host (store/hosts.py's id), written when the agent registers; the
other agents read the live hosts' addresses as their BGP peers. A row whose host row is gone
(expired, removed) is ignored by the read (a join on the live hosts) and deleted by the next
agent that registers. Rows only."""
from __future__ import annotations

from .db import Database, schema

schema("""
CREATE TABLE IF NOT EXISTS host_underlays (
  host_id TEXT PRIMARY KEY, address TEXT NOT NULL);
""")


class HostUnderlays:
    def __init__(self, db: Database) -> None:
        self.db = db

    def record(self, host_id: str, address: str) -> None:
        """This host's underlay address (replacing its earlier one); rows of hosts that are
        gone are deleted on the way."""
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM host_underlays WHERE host_id=? OR host_id NOT IN "
                         "(SELECT id FROM hosts)", (host_id,))
            conn.execute("INSERT INTO host_underlays (host_id, address) VALUES (?, ?)",
                         (host_id, address))

    def live_peers(self, host_id: str, now: float) -> set[str]:
        """The underlay addresses of the other hosts whose lease runs: one read."""
        return {r["address"] for r in self.db.conn.execute(
            "SELECT u.address FROM host_underlays u JOIN hosts h ON h.id = u.host_id "
            "WHERE h.lease_expires > ? AND u.host_id <> ?", (now, host_id)).fetchall()}

    def remove(self, host_id: str) -> None:
        self.db.conn.execute("DELETE FROM host_underlays WHERE host_id=?", (host_id,))
