"""Public IPv4 addresses given at launch (a subnet's MapPublicIpOnLaunch) in SQLite: one row per
interface that holds one. Not Elastic IPs: no allocation, not in DescribeAddresses; an address
is the interface's while it exists (the service forgets rows whose interface has gone). AWS's
rules live in service/gateways.py, the kernel effect (1:1 NAT) in net/gateways.py."""
from __future__ import annotations

from .db import Database, schema

schema("""
CREATE TABLE IF NOT EXISTS ec2_launch_public_ips (
  eni_id TEXT PRIMARY KEY, region TEXT NOT NULL, public_ip TEXT NOT NULL UNIQUE);
""")


class PublicIpStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def put(self, eni_id: str, region: str, public_ip: str) -> None:
        self.db.conn.execute("INSERT INTO ec2_launch_public_ips VALUES (?,?,?)",
                             (eni_id, region, public_ip))

    def all(self) -> dict[str, str]:
        """Interface id → its public address."""
        return {r["eni_id"]: r["public_ip"] for r in self.db.conn.execute(
            "SELECT eni_id, public_ip FROM ec2_launch_public_ips ORDER BY rowid")}

    def delete(self, eni_id: str) -> None:
        self.db.conn.execute("DELETE FROM ec2_launch_public_ips WHERE eni_id=?", (eni_id,))
