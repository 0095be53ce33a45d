"""Internet gateways and Elastic IP addresses in SQLite: the gateways with the VPC each is
attached to, and the addresses allocated from the public pool with the interface each is
associated with. Plain rows in, dataclasses out; AWS's rules live in service/gateways.py, the
kernel effect in net/gateways.py."""
from __future__ import annotations

from dataclasses import dataclass, field

from .db import Database, schema
from .rows import select_rows

schema("""
CREATE TABLE IF NOT EXISTS ec2_internet_gateways (
  id TEXT PRIMARY KEY, region TEXT NOT NULL, vpc_id TEXT);
CREATE TABLE IF NOT EXISTS ec2_addresses (
  allocation_id TEXT PRIMARY KEY, region TEXT NOT NULL, public_ip TEXT NOT NULL UNIQUE,
  association_id TEXT, eni_id TEXT, private_ip TEXT);
""")


@dataclass(frozen=True)
class InternetGateway:
    id: str
    region: str
    vpc_id: str | None  # the attached VPC, None when detached


@dataclass(frozen=True)
class Address:
    allocation_id: str
    region: str
    public_ip: str
    association_id: str | None = None
    eni_id: str | None = None
    private_ip: str | None = None


@dataclass
class GatewaySnapshot:
    gateways: list[InternetGateway] = field(default_factory=list)
    addresses: list[Address] = field(default_factory=list)


class GatewayStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # internet gateways -----------------------------------------------------------------------
    def put_gateway(self, g: InternetGateway) -> None:
        self.db.conn.execute("INSERT OR REPLACE INTO ec2_internet_gateways VALUES (?,?,?)",
                             (g.id, g.region, g.vpc_id))

    def gateways(self, region: str | None = None) -> list[InternetGateway]:
        return [InternetGateway(r["id"], r["region"], r["vpc_id"])
                for r in self._select("ec2_internet_gateways", region)]

    def gateway(self, gateway_id: str) -> InternetGateway | None:
        return next((g for g in self.gateways() if g.id == gateway_id), None)

    def delete_gateway(self, gateway_id: str) -> None:
        self.db.conn.execute("DELETE FROM ec2_internet_gateways WHERE id=?", (gateway_id,))

    # addresses -------------------------------------------------------------------------------
    def put_address(self, a: Address) -> None:
        self.db.conn.execute("INSERT OR REPLACE INTO ec2_addresses VALUES (?,?,?,?,?,?)",
                             (a.allocation_id, a.region, a.public_ip, a.association_id,
                              a.eni_id, a.private_ip))

    def addresses(self, region: str | None = None) -> list[Address]:
        return [Address(r["allocation_id"], r["region"], r["public_ip"], r["association_id"],
                        r["eni_id"], r["private_ip"])
                for r in self._select("ec2_addresses", region)]

    def delete_address(self, allocation_id: str) -> None:
        self.db.conn.execute("DELETE FROM ec2_addresses WHERE allocation_id=?", (allocation_id,))

    def snapshot(self) -> GatewaySnapshot:
        return GatewaySnapshot(self.gateways(), self.addresses())

    def _select(self, table: str, region: str | None) -> list:  # type: ignore[type-arg]
        return select_rows(self.db, table, "region", region)
