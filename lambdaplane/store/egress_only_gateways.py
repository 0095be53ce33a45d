"""Egress-only internet gateways and the IPv6 routes of route tables in SQLite. Plain rows in,
dataclasses out; AWS's rules live in service/egress_only_gateways.py, the kernel side in
net/gateways6.py. IPv6 routes are kept apart from the IPv4 ones (store/ec2_routes.py) and go
with their route table; a gateway goes with nothing (its VPC refuses deletion while it lives)."""
from __future__ import annotations

from dataclasses import dataclass

from .db import Database, schema
from .ec2_routes import Route
from .rows import select_rows

schema("""
CREATE TABLE IF NOT EXISTS ec2_egress_only_igws (
  id TEXT PRIMARY KEY, region TEXT NOT NULL, vpc_id TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS ec2_ipv6_routes (
  route_table_id TEXT NOT NULL REFERENCES ec2_route_tables(id) ON DELETE CASCADE,
  destination TEXT NOT NULL, target_kind TEXT NOT NULL, target_id TEXT NOT NULL,
  origin TEXT NOT NULL, PRIMARY KEY (route_table_id, destination));
""")


@dataclass(frozen=True)
class EgressOnlyGateway:
    id: str
    region: str
    vpc_id: str


class EgressOnlyGatewayStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # gateways ----------------------------------------------------------------------------
    def put_gateway(self, g: EgressOnlyGateway) -> None:
        self.db.conn.execute("INSERT OR REPLACE INTO ec2_egress_only_igws VALUES (?,?,?)",
                             (g.id, g.region, g.vpc_id))

    def gateways(self, region: str | None = None) -> list[EgressOnlyGateway]:
        rows = select_rows(self.db, "ec2_egress_only_igws", "region", region)
        return [EgressOnlyGateway(r["id"], r["region"], r["vpc_id"]) for r in rows]

    def gateway(self, gateway_id: str) -> EgressOnlyGateway | None:
        return next((g for g in self.gateways() if g.id == gateway_id), None)

    def delete_gateway(self, gateway_id: str) -> None:
        self.db.conn.execute("DELETE FROM ec2_egress_only_igws WHERE id=?", (gateway_id,))

    # IPv6 routes -------------------------------------------------------------------------
    def put_route(self, r: Route) -> None:
        self.db.conn.execute("INSERT OR REPLACE INTO ec2_ipv6_routes VALUES (?,?,?,?,?)",
                             (r.route_table_id, r.destination, r.target_kind, r.target_id,
                              r.origin))

    def routes(self, table_id: str | None = None) -> list[Route]:
        rows = select_rows(self.db, "ec2_ipv6_routes", "route_table_id", table_id)
        return [Route(r["route_table_id"], r["destination"], r["target_kind"], r["target_id"],
                      r["origin"]) for r in rows]

    def delete_route(self, table_id: str, destination: str) -> None:
        self.db.conn.execute("DELETE FROM ec2_ipv6_routes WHERE route_table_id=? AND "
                             "destination=?", (table_id, destination))
