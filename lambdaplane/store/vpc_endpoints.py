"""Interface VPC endpoints in SQLite: each with its VPC, service, subnets, groups, private DNS
setting and the requester-managed interface it has in each subnet. Plain rows in,
dataclasses out; AWS's rules live in service/vpc_endpoints.py."""
from __future__ import annotations

import json
from dataclasses import dataclass

from .db import Database, schema
from .rows import select_rows

schema("""
CREATE TABLE IF NOT EXISTS ec2_vpc_endpoints (
  id TEXT PRIMARY KEY, region TEXT NOT NULL, vpc_id TEXT NOT NULL, service_name TEXT NOT NULL,
  endpoint_type TEXT NOT NULL, subnet_ids TEXT NOT NULL, group_ids TEXT NOT NULL,
  eni_ids TEXT NOT NULL, private_dns INTEGER NOT NULL, state TEXT NOT NULL,
  policy TEXT NOT NULL, created REAL NOT NULL);
""")


@dataclass(frozen=True)
class VpcEndpoint:
    id: str
    region: str
    vpc_id: str
    service_name: str
    endpoint_type: str  # "Interface"
    subnet_ids: tuple[str, ...]
    group_ids: tuple[str, ...]
    eni_ids: tuple[str, ...]  # one per subnet, in the same order
    private_dns: bool
    state: str  # "available" (made at once)
    policy: str
    created: float


class VpcEndpointStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def put(self, e: VpcEndpoint) -> None:
        self.db.conn.execute(
            "INSERT OR REPLACE INTO ec2_vpc_endpoints VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (e.id, e.region, e.vpc_id, e.service_name, e.endpoint_type,
             json.dumps(e.subnet_ids), json.dumps(e.group_ids), json.dumps(e.eni_ids),
             int(e.private_dns), e.state, e.policy, e.created))

    def all(self, region: str | None = None) -> list[VpcEndpoint]:
        rows = select_rows(self.db, "ec2_vpc_endpoints", "region", region)
        return [VpcEndpoint(r["id"], r["region"], r["vpc_id"], r["service_name"],
                            r["endpoint_type"], tuple(json.loads(r["subnet_ids"])),
                            tuple(json.loads(r["group_ids"])), tuple(json.loads(r["eni_ids"])),
                            bool(r["private_dns"]), r["state"], r["policy"], r["created"])
                for r in rows]

    def get(self, endpoint_id: str) -> VpcEndpoint | None:
        return next((e for e in self.all() if e.id == endpoint_id), None)

    def delete(self, endpoint_id: str) -> None:
        self.db.conn.execute("DELETE FROM ec2_vpc_endpoints WHERE id=?", (endpoint_id,))
