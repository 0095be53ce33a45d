"""The secondary IPv4 CIDR blocks of VPCs in SQLite (the primary one is the VPC's own `cidr`).
Plain rows in, dataclasses out; AWS's rules live in service/vpc_cidrs.py."""
from __future__ import annotations

from dataclasses import dataclass

from .db import Database, schema

schema("""
CREATE TABLE IF NOT EXISTS ec2_vpc_cidrs (
  association_id TEXT PRIMARY KEY, vpc_id TEXT NOT NULL REFERENCES ec2_vpcs(id),
  cidr TEXT NOT NULL);
""")


@dataclass(frozen=True)
class VpcCidr:
    association_id: str
    vpc_id: str
    cidr: str


class VpcCidrStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def add(self, c: VpcCidr) -> None:
        self.db.conn.execute("INSERT INTO ec2_vpc_cidrs VALUES (?,?,?)",
                             (c.association_id, c.vpc_id, c.cidr))

    def all(self) -> list[VpcCidr]:
        rows = self.db.conn.execute("SELECT * FROM ec2_vpc_cidrs ORDER BY rowid").fetchall()
        return [VpcCidr(r["association_id"], r["vpc_id"], r["cidr"]) for r in rows]

    def delete(self, association_id: str) -> None:
        self.db.conn.execute("DELETE FROM ec2_vpc_cidrs WHERE association_id=?",
                             (association_id,))

    def delete_of(self, vpc_id: str) -> None:
        self.db.conn.execute("DELETE FROM ec2_vpc_cidrs WHERE vpc_id=?", (vpc_id,))
