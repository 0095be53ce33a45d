"""Hyperplane ENIs in SQLite: which EC2 interface (ec2_enis) serves which sharing key
(region, subnet, sorted security groups), and the small number `n` that names its kernel objects
(mark, routing tables, transit link lp<i>t<n>). Rows only; the rules live in
service/hyperplane.py."""
from __future__ import annotations

from dataclasses import dataclass

from .db import Database, schema

schema("""
CREATE TABLE IF NOT EXISTS hyperplane_enis (
  n INTEGER PRIMARY KEY, region TEXT NOT NULL, subnet_id TEXT NOT NULL,
  group_key TEXT NOT NULL, vpc_id TEXT NOT NULL, eni_id TEXT NOT NULL UNIQUE,
  created_for TEXT NOT NULL);
""")


def group_key(group_ids: tuple[str, ...] | list[str]) -> str:
    """The exact set of groups, order-free: what makes two functions share an ENI."""
    return ",".join(sorted(set(group_ids)))


@dataclass(frozen=True)
class EniKey:
    region: str
    subnet_id: str
    groups: str  # group_key()

    @property
    def group_ids(self) -> list[str]:
        return self.groups.split(",") if self.groups else []


@dataclass(frozen=True)
class HyperplaneEniRow:
    n: int
    key: EniKey
    vpc_id: str
    eni_id: str
    created_for: str  # the function that made it (its ENI description names it)


class HyperplaneStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def all(self) -> list[HyperplaneEniRow]:
        rows = self.db.conn.execute("SELECT * FROM hyperplane_enis ORDER BY n").fetchall()
        return [HyperplaneEniRow(r["n"], EniKey(r["region"], r["subnet_id"], r["group_key"]),
                                 r["vpc_id"], r["eni_id"], r["created_for"]) for r in rows]

    def free_number(self) -> int:
        """The smallest unused n ≥ 1, so numbers (and link names) stay short."""
        used = {r["n"] for r in self.db.conn.execute("SELECT n FROM hyperplane_enis")}
        n = 1
        while n in used:
            n += 1
        return n

    def add(self, row: HyperplaneEniRow) -> None:
        self.db.conn.execute(
            "INSERT INTO hyperplane_enis (n, region, subnet_id, group_key, vpc_id, eni_id, "
            "created_for) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (row.n, row.key.region, row.key.subnet_id, row.key.groups, row.vpc_id, row.eni_id,
             row.created_for))

    def delete(self, n: int) -> None:
        self.db.conn.execute("DELETE FROM hyperplane_enis WHERE n=?", (n,))
