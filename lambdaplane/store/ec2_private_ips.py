"""The secondary private IPv4 addresses of network interfaces in SQLite (the primary one is the
interface's own `ip`). Plain rows in, a mapping out; AWS's rules live in
service/private_ips.py. Rows go with their interface (ON DELETE CASCADE)."""
from __future__ import annotations

from .db import Database, schema

schema("""
CREATE TABLE IF NOT EXISTS ec2_eni_private_ips (
  eni_id TEXT NOT NULL REFERENCES ec2_enis(id) ON DELETE CASCADE,
  vpc_id TEXT NOT NULL, address TEXT NOT NULL,
  PRIMARY KEY (eni_id, address), UNIQUE (vpc_id, address));
""")


class PrivateIpStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def add(self, eni_id: str, vpc_id: str, addresses: list[str]) -> None:
        self.db.conn.executemany("INSERT INTO ec2_eni_private_ips VALUES (?,?,?)",
                                 [(eni_id, vpc_id, a) for a in addresses])

    def delete(self, eni_id: str, addresses: list[str]) -> None:
        self.db.conn.executemany("DELETE FROM ec2_eni_private_ips WHERE eni_id=? AND address=?",
                                 [(eni_id, a) for a in addresses])

    def owner(self, vpc_id: str, address: str) -> str | None:
        row = self.db.conn.execute("SELECT eni_id FROM ec2_eni_private_ips WHERE vpc_id=? AND "
                                   "address=?", (vpc_id, address)).fetchone()
        return str(row["eni_id"]) if row else None

    def all(self) -> dict[str, list[str]]:
        """eni id → its secondary addresses, in the order they were assigned."""
        out: dict[str, list[str]] = {}
        for r in self.db.conn.execute("SELECT * FROM ec2_eni_private_ips ORDER BY rowid"):
            out.setdefault(r["eni_id"], []).append(r["address"])
        return out
