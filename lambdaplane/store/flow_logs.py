"""VPC flow logs in SQLite: which resource (VPC, subnet or ENI) is logged, which traffic, to
which log group and how often. Plain rows in, dataclasses out; the rules live in
service/flow_logs.py, the records in the log store (service/logs.py)."""
from __future__ import annotations

import json
from dataclasses import dataclass, field

from .db import Database, schema
from .rows import select_rows

schema("""
CREATE TABLE IF NOT EXISTS ec2_flow_logs (
  id TEXT PRIMARY KEY, region TEXT NOT NULL, resource_id TEXT NOT NULL,
  resource_type TEXT NOT NULL, traffic_type TEXT NOT NULL, log_group TEXT NOT NULL,
  destination TEXT NOT NULL, permission_arn TEXT, interval_s INTEGER NOT NULL,
  created_ms INTEGER NOT NULL, tags TEXT NOT NULL DEFAULT '{}');
""")


@dataclass(frozen=True)
class FlowLog:
    id: str
    region: str
    resource_id: str
    resource_type: str  # "VPC" | "Subnet" | "NetworkInterface"
    traffic_type: str  # "ACCEPT" | "REJECT" | "ALL"
    log_group: str
    destination: str  # the log group's ARN
    permission_arn: str | None
    interval_s: int  # MaxAggregationInterval: 60 or 600
    created_ms: int
    tags: dict[str, str] = field(default_factory=dict)


class FlowLogStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def add(self, f: FlowLog) -> None:
        self.db.conn.execute(
            "INSERT INTO ec2_flow_logs VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (f.id, f.region, f.resource_id, f.resource_type, f.traffic_type, f.log_group,
             f.destination, f.permission_arn, f.interval_s, f.created_ms, json.dumps(f.tags)))

    def all(self, region: str | None = None) -> list[FlowLog]:
        rows = select_rows(self.db, "ec2_flow_logs", "region", region, order="created_ms, id")
        return [FlowLog(r["id"], r["region"], r["resource_id"], r["resource_type"],
                        r["traffic_type"], r["log_group"], r["destination"], r["permission_arn"],
                        r["interval_s"], r["created_ms"], json.loads(r["tags"])) for r in rows]

    def get(self, flow_log_id: str) -> FlowLog | None:
        return next((f for f in self.all() if f.id == flow_log_id), None)

    def delete(self, flow_log_id: str) -> None:
        self.db.conn.execute("DELETE FROM ec2_flow_logs WHERE id=?", (flow_log_id,))
