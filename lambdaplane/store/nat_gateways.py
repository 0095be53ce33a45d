"""NAT gateways in SQLite: each with its subnet, connectivity type, its interface and address,
and its state (pending → available → deleting → deleted). Plain rows in, dataclasses out;
AWS's rules live in service/nat_gateways.py, the kernel effect in net/gateways.py."""
from __future__ import annotations

from dataclasses import dataclass

from .db import Database, schema
from .rows import select_rows

schema("""
CREATE TABLE IF NOT EXISTS ec2_nat_gateways (
  id TEXT PRIMARY KEY, region TEXT NOT NULL, vpc_id TEXT NOT NULL, subnet_id TEXT NOT NULL,
  connectivity TEXT NOT NULL, allocation_id TEXT, eni_id TEXT NOT NULL, private_ip TEXT NOT NULL,
  public_ip TEXT, state TEXT NOT NULL, created REAL NOT NULL, deleted REAL);
""")


@dataclass(frozen=True)
class NatGateway:
    id: str
    region: str
    vpc_id: str
    subnet_id: str
    connectivity: str  # "public" | "private"
    allocation_id: str | None
    eni_id: str
    private_ip: str
    public_ip: str | None
    state: str  # "pending" | "available" | "deleting" | "deleted" | "failed"
    created: float
    deleted: float | None = None


class NatGatewayStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def put(self, n: NatGateway) -> None:
        self.db.conn.execute(
            "INSERT OR REPLACE INTO ec2_nat_gateways VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (n.id, n.region, n.vpc_id, n.subnet_id, n.connectivity, n.allocation_id, n.eni_id,
             n.private_ip, n.public_ip, n.state, n.created, n.deleted))

    def all(self, region: str | None = None) -> list[NatGateway]:
        rows = select_rows(self.db, "ec2_nat_gateways", "region", region)
        return [NatGateway(r["id"], r["region"], r["vpc_id"], r["subnet_id"], r["connectivity"],
                           r["allocation_id"], r["eni_id"], r["private_ip"], r["public_ip"],
                           r["state"], r["created"], r["deleted"]) for r in rows]

    def get(self, nat_id: str) -> NatGateway | None:
        return next((n for n in self.all() if n.id == nat_id), None)

    def delete(self, nat_id: str) -> None:
        self.db.conn.execute("DELETE FROM ec2_nat_gateways WHERE id=?", (nat_id,))
