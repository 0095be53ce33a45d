"""The VNI of each VPC: its EVPN segment number across hosts (net/fabric.py, docs/fabric.md),
allocated here, in the shared store, so two VPCs never share one (a hash of the id collides for
about 3 % of pairs at 1,000 VPCs). One row per VPC, the VNI unique; the row goes with the VPC
(ON DELETE CASCADE). New VNIs come from a counter row (`vpc_vni_counter`, an `UPDATE … SET
last = last + 1 RETURNING last`, which the database serialises), so a deleted VPC's number is
not handed out again while the counter has room (a host may still hold the old segment for a
moment); only past 2²⁴ − 1 are the gaps reused, lowest first. The VNI column is UNIQUE and
the row goes in with `INSERT OR IGNORE`, retried on a taken number: allocators on several
connections (or servers) never hand out one twice.
VPCs that existed before this table get theirs in a migration, in creation order."""
from __future__ import annotations

from .db import Database, schema
from .migrations import migration

VNI_MAX = (1 << 24) - 1  # 24 bits; 0 is never used

schema("""
CREATE TABLE IF NOT EXISTS vpc_vnis (
  vpc_id TEXT PRIMARY KEY REFERENCES ec2_vpcs(id) ON DELETE CASCADE,
  vni INTEGER NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS vpc_vni_counter (name TEXT PRIMARY KEY, last INTEGER NOT NULL);
""")

migration("0002-vpc-vnis-for-existing-vpcs", """
INSERT INTO vpc_vnis (vpc_id, vni)
  SELECT id, (SELECT COALESCE(MAX(vni), 0) FROM vpc_vnis) + ROW_NUMBER() OVER (ORDER BY rowid)
  FROM ec2_vpcs WHERE id NOT IN (SELECT vpc_id FROM vpc_vnis)
""")


class VniExhausted(Exception):
    """Every VNI is taken (2²⁴ − 1 VPCs)."""


class VniStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def allocate(self, vpc_id: str) -> int:
        """The VPC's VNI, allocated now if it has none."""
        while True:
            have = self.vni_of(vpc_id)
            if have is not None:
                return have
            candidate = self._next_free()
            self.db.conn.execute("INSERT OR IGNORE INTO vpc_vnis (vpc_id, vni) VALUES (?, ?)",
                                 (vpc_id, candidate))
            # ignored: another allocator took `candidate` (try the next) or gave this VPC one

    def vni_of(self, vpc_id: str) -> int | None:
        row = self.db.conn.execute("SELECT vni FROM vpc_vnis WHERE vpc_id=?",
                                   (vpc_id,)).fetchone()
        return None if row is None else int(row[0])

    def all(self) -> dict[str, int]:
        """Every VPC's VNI, by VPC id."""
        rows = self.db.conn.execute("SELECT vpc_id, vni FROM vpc_vnis").fetchall()
        return {r[0]: int(r[1]) for r in rows}

    def _next_free(self) -> int:
        # the counter starts past what is there (VNIs given by the migration)
        self.db.conn.execute("INSERT OR IGNORE INTO vpc_vni_counter (name, last) "
                             "SELECT 'vni', COALESCE(MAX(vni), 0) FROM vpc_vnis")
        row = self.db.conn.execute(
            "UPDATE vpc_vni_counter SET last = last + 1 WHERE name = 'vni' AND last < ? "
            "RETURNING last", (VNI_MAX,)).fetchone()
        if row is not None:
            return int(row[0])
        if self.db.conn.execute("SELECT 1 FROM vpc_vnis WHERE vni = 1").fetchone() is None:
            return 1
        gap = self.db.conn.execute(  # the lowest free number: one past a used one
            "SELECT v.vni + 1 FROM vpc_vnis v WHERE v.vni < ? AND NOT EXISTS "
            "(SELECT 1 FROM vpc_vnis w WHERE w.vni = v.vni + 1) ORDER BY v.vni LIMIT 1",
            (VNI_MAX,)).fetchone()
        if gap is None:
            raise VniExhausted("every VNI (1 to 16777215) is in use")
        return int(gap[0])
