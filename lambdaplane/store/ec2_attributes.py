"""Settable attributes of EC2 network objects in SQLite (a VPC's enableDnsHostnames, a subnet's
MapPublicIpOnLaunch, …): one row per (resource, attribute) that was ever modified; an absent row
means AWS's default, which service/ec2_attributes.py knows. Values are kept as text."""
from __future__ import annotations

from .db import Database, schema

schema("""
CREATE TABLE IF NOT EXISTS ec2_attributes (
  resource_id TEXT NOT NULL, name TEXT NOT NULL, value TEXT NOT NULL,
  PRIMARY KEY (resource_id, name));
""")


class AttributeStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def of(self, resource_id: str) -> dict[str, str]:
        rows = self.db.conn.execute("SELECT name, value FROM ec2_attributes WHERE resource_id=?",
                                    (resource_id,)).fetchall()
        return {r["name"]: r["value"] for r in rows}

    def all(self) -> dict[str, dict[str, str]]:
        out: dict[str, dict[str, str]] = {}
        for r in self.db.conn.execute("SELECT * FROM ec2_attributes"):
            out.setdefault(r["resource_id"], {})[r["name"]] = r["value"]
        return out

    def set(self, resource_id: str, name: str, value: str) -> None:
        self.db.conn.execute("INSERT OR REPLACE INTO ec2_attributes VALUES (?,?,?)",
                             (resource_id, name, value))

    def delete(self, resource_id: str) -> None:
        self.db.conn.execute("DELETE FROM ec2_attributes WHERE resource_id=?", (resource_id,))
