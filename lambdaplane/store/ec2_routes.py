"""Route tables in SQLite: the tables, their routes and their associations (with a subnet, or
the one main association of each VPC). Plain rows in, dataclasses out; AWS's rules live in
service/route_tables.py, the kernel routing in net/routing.py and net/gateways.py."""
from __future__ import annotations

from dataclasses import dataclass

from .db import Database, schema
from .rows import select_rows

schema("""
CREATE TABLE IF NOT EXISTS ec2_route_tables (
  id TEXT PRIMARY KEY, region TEXT NOT NULL, vpc_id TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS ec2_routes (
  route_table_id TEXT NOT NULL REFERENCES ec2_route_tables(id) ON DELETE CASCADE,
  destination TEXT NOT NULL, target_kind TEXT NOT NULL, target_id TEXT NOT NULL,
  origin TEXT NOT NULL, PRIMARY KEY (route_table_id, destination));
CREATE TABLE IF NOT EXISTS ec2_route_table_associations (
  id TEXT PRIMARY KEY,
  route_table_id TEXT NOT NULL REFERENCES ec2_route_tables(id) ON DELETE CASCADE,
  subnet_id TEXT UNIQUE, main INTEGER NOT NULL);
""")


@dataclass(frozen=True)
class RouteTable:
    id: str
    region: str
    vpc_id: str


@dataclass(frozen=True)
class Route:
    route_table_id: str
    destination: str  # a CIDR block
    target_kind: str  # the CreateRoute member naming the target: "NetworkInterfaceId", …
    target_id: str  # "local" for the VPC's own route
    origin: str  # "CreateRouteTable" (the local route) | "CreateRoute"


@dataclass(frozen=True)
class RouteTableAssociation:
    id: str
    route_table_id: str
    subnet_id: str | None  # None for the main association
    main: bool


class RouteStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # tables ----------------------------------------------------------------------------------
    def add_table(self, t: RouteTable) -> None:
        self.db.conn.execute("INSERT INTO ec2_route_tables VALUES (?,?,?)",
                             (t.id, t.region, t.vpc_id))

    def tables(self, region: str | None = None) -> list[RouteTable]:
        rows = select_rows(self.db, "ec2_route_tables", "region", region)
        return [RouteTable(r["id"], r["region"], r["vpc_id"]) for r in rows]

    def table(self, table_id: str) -> RouteTable | None:
        r = self.db.conn.execute("SELECT * FROM ec2_route_tables WHERE id=?",
                                 (table_id,)).fetchone()
        return RouteTable(r["id"], r["region"], r["vpc_id"]) if r else None

    def delete_table(self, table_id: str) -> None:
        self.db.conn.execute("DELETE FROM ec2_route_tables WHERE id=?", (table_id,))

    # routes ----------------------------------------------------------------------------------
    def put_route(self, r: Route) -> None:
        self.db.conn.execute("INSERT OR REPLACE INTO ec2_routes VALUES (?,?,?,?,?)",
                             (r.route_table_id, r.destination, r.target_kind, r.target_id,
                              r.origin))

    def routes(self, table_id: str | None = None) -> list[Route]:
        rows = select_rows(self.db, "ec2_routes", "route_table_id", table_id)
        return [Route(r["route_table_id"], r["destination"], r["target_kind"], r["target_id"],
                      r["origin"]) for r in rows]

    def delete_route(self, table_id: str, destination: str) -> None:
        self.db.conn.execute("DELETE FROM ec2_routes WHERE route_table_id=? AND destination=?",
                             (table_id, destination))

    # associations ----------------------------------------------------------------------------
    def add_association(self, a: RouteTableAssociation) -> None:
        self.db.conn.execute("INSERT INTO ec2_route_table_associations VALUES (?,?,?,?)",
                             (a.id, a.route_table_id, a.subnet_id, int(a.main)))

    def associations(self) -> list[RouteTableAssociation]:
        rows = self.db.conn.execute(
            "SELECT * FROM ec2_route_table_associations ORDER BY rowid").fetchall()
        return [RouteTableAssociation(r["id"], r["route_table_id"], r["subnet_id"],
                                      bool(r["main"])) for r in rows]

    def delete_association(self, association_id: str) -> None:
        self.db.conn.execute("DELETE FROM ec2_route_table_associations WHERE id=?",
                             (association_id,))

    def delete_subnet_association(self, subnet_id: str) -> None:
        self.db.conn.execute("DELETE FROM ec2_route_table_associations WHERE subnet_id=?",
                             (subnet_id,))
