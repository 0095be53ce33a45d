"""Network ACLs in SQLite: the ACLs, their numbered entries and the association of each
subnet with exactly one ACL. Plain rows in, model/network_acls.py dataclasses out; AWS's
rules live in service/network_acls.py, the kernel rendering in net/network_acls.py."""
from __future__ import annotations

from ..model.network_acls import (  # noqa: F401 - re-exported for the service and api
    STAR_RULE, AclAssociation, AclEntry, AclSnapshot, NetworkAcl)
from .db import Database, schema
from .rows import select_rows

schema("""
CREATE TABLE IF NOT EXISTS ec2_network_acls (
  id TEXT PRIMARY KEY, region TEXT NOT NULL, vpc_id TEXT NOT NULL, is_default INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS ec2_network_acl_entries (
  acl_id TEXT NOT NULL REFERENCES ec2_network_acls(id) ON DELETE CASCADE,
  egress INTEGER NOT NULL, rule_number INTEGER NOT NULL, protocol TEXT NOT NULL,
  allow INTEGER NOT NULL, cidr TEXT NOT NULL, from_port INTEGER, to_port INTEGER,
  icmp_type INTEGER, icmp_code INTEGER, PRIMARY KEY (acl_id, egress, rule_number));
CREATE TABLE IF NOT EXISTS ec2_network_acl_associations (
  id TEXT PRIMARY KEY, acl_id TEXT NOT NULL REFERENCES ec2_network_acls(id),
  subnet_id TEXT NOT NULL UNIQUE);
""")


class NetworkAclStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def add_acl(self, a: NetworkAcl) -> None:
        self.db.conn.execute("INSERT INTO ec2_network_acls VALUES (?,?,?,?)",
                             (a.id, a.region, a.vpc_id, int(a.is_default)))

    def acls(self, region: str | None = None) -> list[NetworkAcl]:
        return [NetworkAcl(r["id"], r["region"], r["vpc_id"], bool(r["is_default"]))
                for r in select_rows(self.db, "ec2_network_acls", "region", region)]

    def acl(self, acl_id: str) -> NetworkAcl | None:
        return next((a for a in self.acls() if a.id == acl_id), None)

    def delete_acl(self, acl_id: str) -> None:
        self.db.conn.execute("DELETE FROM ec2_network_acls WHERE id=?", (acl_id,))

    def put_entry(self, e: AclEntry) -> None:
        self.db.conn.execute(
            "INSERT OR REPLACE INTO ec2_network_acl_entries VALUES (?,?,?,?,?,?,?,?,?,?)",
            (e.acl_id, int(e.egress), e.rule_number, e.protocol, int(e.allow), e.cidr,
             e.from_port, e.to_port, e.icmp_type, e.icmp_code))

    def entries(self, acl_id: str | None = None) -> list[AclEntry]:
        rows = select_rows(self.db, "ec2_network_acl_entries", "acl_id", acl_id,
                           order="acl_id, egress, rule_number")
        return [AclEntry(r["acl_id"], bool(r["egress"]), r["rule_number"], r["protocol"],
                         bool(r["allow"]), r["cidr"], r["from_port"], r["to_port"],
                         r["icmp_type"], r["icmp_code"]) for r in rows]

    def delete_entry(self, acl_id: str, egress: bool, rule_number: int) -> None:
        self.db.conn.execute("DELETE FROM ec2_network_acl_entries WHERE acl_id=? AND egress=? "
                             "AND rule_number=?", (acl_id, int(egress), rule_number))

    def associate(self, a: AclAssociation) -> None:
        self.db.conn.execute("INSERT OR REPLACE INTO ec2_network_acl_associations "
                             "VALUES (?,?,?)", (a.id, a.acl_id, a.subnet_id))

    def associations(self) -> list[AclAssociation]:
        rows = self.db.conn.execute(
            "SELECT * FROM ec2_network_acl_associations ORDER BY rowid").fetchall()
        return [AclAssociation(r["id"], r["acl_id"], r["subnet_id"]) for r in rows]

    def delete_association_of(self, subnet_id: str) -> None:
        self.db.conn.execute("DELETE FROM ec2_network_acl_associations WHERE subnet_id=?",
                             (subnet_id,))

    def snapshot(self) -> AclSnapshot:
        return AclSnapshot(self.entries(), self.associations())
