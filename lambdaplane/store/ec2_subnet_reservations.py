"""Subnet CIDR reservations in SQLite (CreateSubnetCidrReservation): ranges of a subnet that
automatic address assignment leaves alone. Plain rows in, dataclasses out; AWS's rules live in
service/subnet_reservations.py."""
from __future__ import annotations

from dataclasses import dataclass

from .db import Database, schema

schema("""
CREATE TABLE IF NOT EXISTS ec2_subnet_cidr_reservations (
  id TEXT PRIMARY KEY, subnet_id TEXT NOT NULL REFERENCES ec2_subnets(id),
  cidr TEXT NOT NULL, reservation_type TEXT NOT NULL, description TEXT NOT NULL);
""")


@dataclass(frozen=True)
class SubnetCidrReservation:
    id: str
    subnet_id: str
    cidr: str
    reservation_type: str  # "explicit" | "prefix"
    description: str


class SubnetReservationStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def add(self, r: SubnetCidrReservation) -> None:
        self.db.conn.execute("INSERT INTO ec2_subnet_cidr_reservations VALUES (?,?,?,?,?)",
                             (r.id, r.subnet_id, r.cidr, r.reservation_type, r.description))

    def all(self) -> list[SubnetCidrReservation]:
        rows = self.db.conn.execute(
            "SELECT * FROM ec2_subnet_cidr_reservations ORDER BY rowid").fetchall()
        return [SubnetCidrReservation(r["id"], r["subnet_id"], r["cidr"], r["reservation_type"],
                                      r["description"]) for r in rows]

    def delete(self, reservation_id: str) -> None:
        self.db.conn.execute("DELETE FROM ec2_subnet_cidr_reservations WHERE id=?",
                             (reservation_id,))
