"""IPv6 in SQLite: the /56 blocks of VPCs, the /64 blocks of subnets and the addresses of
network interfaces. Plain rows in, dataclasses out; AWS's rules live in service/ipv6.py, the
kernel side is derived from `Ipv6Snapshot` (net/vpc.py). Rows go with their VPC, subnet or
interface (ON DELETE CASCADE)."""
from __future__ import annotations

from ..model.ipv6 import Ipv6Snapshot as Ipv6Snapshot  # re-exported for the service and api
from ..model.ipv6 import SubnetIpv6Cidr as SubnetIpv6Cidr
from ..model.ipv6 import VpcIpv6Cidr as VpcIpv6Cidr
from .db import Database, schema

schema("""
CREATE TABLE IF NOT EXISTS ec2_vpc_ipv6_cidrs (
  association_id TEXT PRIMARY KEY,
  vpc_id TEXT NOT NULL REFERENCES ec2_vpcs(id) ON DELETE CASCADE,
  cidr TEXT NOT NULL UNIQUE, border_group TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS ec2_subnet_ipv6_cidrs (
  association_id TEXT PRIMARY KEY,
  subnet_id TEXT NOT NULL REFERENCES ec2_subnets(id) ON DELETE CASCADE,
  cidr TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS ec2_eni_ipv6 (
  eni_id TEXT NOT NULL REFERENCES ec2_enis(id) ON DELETE CASCADE,
  address TEXT NOT NULL, PRIMARY KEY (eni_id, address));
""")


class Ipv6Store:
    def __init__(self, db: Database) -> None:
        self.db = db

    # VPC blocks --------------------------------------------------------------------------------
    def add_vpc_cidr(self, c: VpcIpv6Cidr) -> None:
        self.db.conn.execute("INSERT INTO ec2_vpc_ipv6_cidrs VALUES (?,?,?,?)",
                             (c.association_id, c.vpc_id, c.cidr, c.border_group))

    def vpc_cidrs(self) -> list[VpcIpv6Cidr]:
        rows = self.db.conn.execute("SELECT * FROM ec2_vpc_ipv6_cidrs ORDER BY rowid")
        return [VpcIpv6Cidr(r["association_id"], r["vpc_id"], r["cidr"], r["border_group"])
                for r in rows]

    def delete_vpc_cidr(self, association_id: str) -> None:
        self.db.conn.execute("DELETE FROM ec2_vpc_ipv6_cidrs WHERE association_id=?",
                             (association_id,))

    # subnet blocks -----------------------------------------------------------------------------
    def add_subnet_cidr(self, c: SubnetIpv6Cidr) -> None:
        self.db.conn.execute("INSERT INTO ec2_subnet_ipv6_cidrs VALUES (?,?,?)",
                             (c.association_id, c.subnet_id, c.cidr))

    def subnet_cidrs(self) -> list[SubnetIpv6Cidr]:
        rows = self.db.conn.execute("SELECT * FROM ec2_subnet_ipv6_cidrs ORDER BY rowid")
        return [SubnetIpv6Cidr(r["association_id"], r["subnet_id"], r["cidr"]) for r in rows]

    def delete_subnet_cidr(self, association_id: str) -> None:
        self.db.conn.execute("DELETE FROM ec2_subnet_ipv6_cidrs WHERE association_id=?",
                             (association_id,))

    # interface addresses -----------------------------------------------------------------------
    def add_addresses(self, eni_id: str, addresses: list[str]) -> None:
        self.db.conn.executemany("INSERT INTO ec2_eni_ipv6 VALUES (?,?)",
                                 [(eni_id, a) for a in addresses])

    def delete_addresses(self, eni_id: str, addresses: list[str]) -> None:
        self.db.conn.executemany("DELETE FROM ec2_eni_ipv6 WHERE eni_id=? AND address=?",
                                 [(eni_id, a) for a in addresses])

    def addresses(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for r in self.db.conn.execute("SELECT * FROM ec2_eni_ipv6 ORDER BY rowid"):
            out.setdefault(r["eni_id"], []).append(r["address"])
        return out

    def snapshot(self) -> Ipv6Snapshot:
        return Ipv6Snapshot(self.vpc_cidrs(), self.subnet_cidrs(), self.addresses())
