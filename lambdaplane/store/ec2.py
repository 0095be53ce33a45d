"""EC2 network objects in SQLite: VPCs, subnets, security groups and their rules, network
interfaces (ENIs) and tags. Plain rows in, dataclasses out; the rules (what may be created or
deleted) live in service/vpc.py, security_groups.py and interfaces.py, and the kernel state
is derived from these rows (net/). The dataclasses are model/ec2.py's."""
from __future__ import annotations

from ..model.ec2 import Eni as Eni  # re-exported for the service and api
from ..model.ec2 import FarEnd as FarEnd
from ..model.ec2 import SecurityGroup as SecurityGroup
from ..model.ec2 import SgRule as SgRule
from ..model.ec2 import Snapshot as Snapshot
from ..model.ec2 import Subnet as Subnet
from ..model.ec2 import Vpc as Vpc
from .db import Database, schema
from .ec2_ipv6 import Ipv6Store
from .ec2_network_acls import NetworkAclStore
from .ec2_private_ips import PrivateIpStore
from .rows import select_rows
from .vnis import VniStore

schema("""
CREATE TABLE IF NOT EXISTS ec2_regions (region TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS ec2_vpcs (
  id TEXT PRIMARY KEY, region TEXT NOT NULL, cidr TEXT NOT NULL, is_default INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS ec2_subnets (
  id TEXT PRIMARY KEY, region TEXT NOT NULL, vpc_id TEXT NOT NULL REFERENCES ec2_vpcs(id),
  cidr TEXT NOT NULL, az TEXT NOT NULL, default_for_az INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS ec2_security_groups (
  id TEXT PRIMARY KEY, region TEXT NOT NULL, vpc_id TEXT NOT NULL REFERENCES ec2_vpcs(id),
  name TEXT NOT NULL, description TEXT NOT NULL, UNIQUE (vpc_id, name));
CREATE TABLE IF NOT EXISTS ec2_sg_rules (
  id TEXT PRIMARY KEY, group_id TEXT NOT NULL REFERENCES ec2_security_groups(id) ON DELETE CASCADE,
  egress INTEGER NOT NULL, protocol TEXT NOT NULL, from_port INTEGER NOT NULL,
  to_port INTEGER NOT NULL, cidr TEXT, ref_group_id TEXT, description TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS ec2_enis (
  id TEXT PRIMARY KEY, region TEXT NOT NULL, subnet_id TEXT NOT NULL REFERENCES ec2_subnets(id),
  vpc_id TEXT NOT NULL, ip TEXT NOT NULL, mac TEXT NOT NULL, interface_type TEXT NOT NULL,
  requester_managed INTEGER NOT NULL, description TEXT NOT NULL, status TEXT NOT NULL,
  far_netns TEXT, far_ifname TEXT, owns_netns INTEGER NOT NULL DEFAULT 0,
  owner_pid INTEGER, owner_start INTEGER, process_pid INTEGER, process_start INTEGER,
  name TEXT, argv TEXT, UNIQUE (vpc_id, ip));
CREATE TABLE IF NOT EXISTS ec2_eni_groups (
  eni_id TEXT NOT NULL REFERENCES ec2_enis(id) ON DELETE CASCADE,
  group_id TEXT NOT NULL REFERENCES ec2_security_groups(id), position INTEGER NOT NULL,
  PRIMARY KEY (eni_id, group_id));
CREATE TABLE IF NOT EXISTS ec2_tags (
  resource_id TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
  PRIMARY KEY (resource_id, key));
""")


# The `ip` of an interface without an IPv4 address (an IPv6-only subnet's): this prefix and its
# id, so that UNIQUE (vpc_id, ip) still holds; read back as "".
NO_IPV4 = "-"

class Ec2Store:
    def __init__(self, db: Database) -> None:
        self.db = db

    # regions ---------------------------------------------------------------------------------
    def region_initialised(self, region: str) -> bool:
        return self.db.conn.execute("SELECT 1 FROM ec2_regions WHERE region=?",
                                    (region,)).fetchone() is not None

    def mark_region(self, region: str) -> None:
        self.db.conn.execute("INSERT OR IGNORE INTO ec2_regions VALUES (?)", (region,))

    # vpcs ------------------------------------------------------------------------------------
    def add_vpc(self, v: Vpc) -> None:
        self.db.conn.execute("INSERT INTO ec2_vpcs VALUES (?,?,?,?)",
                             (v.id, v.region, v.cidr, int(v.is_default)))
        VniStore(self.db).allocate(v.id)  # its EVPN segment across hosts, unique

    def vpcs(self, region: str | None = None) -> list[Vpc]:
        rows = self._select("ec2_vpcs", region)
        return [Vpc(r["id"], r["region"], r["cidr"], bool(r["is_default"])) for r in rows]

    def vpc(self, vpc_id: str) -> Vpc | None:
        return next((v for v in self.vpcs() if v.id == vpc_id), None)

    def delete_vpc(self, vpc_id: str) -> None:
        self.db.conn.execute("DELETE FROM ec2_vpcs WHERE id=?", (vpc_id,))
        self.delete_tags(vpc_id)

    # subnets ---------------------------------------------------------------------------------
    def add_subnet(self, s: Subnet) -> None:
        self.db.conn.execute("INSERT INTO ec2_subnets VALUES (?,?,?,?,?,?)",
                             (s.id, s.region, s.vpc_id, s.cidr, s.az, int(s.default_for_az)))

    def subnets(self, region: str | None = None) -> list[Subnet]:
        return [Subnet(r["id"], r["region"], r["vpc_id"], r["cidr"], r["az"],
                       bool(r["default_for_az"])) for r in self._select("ec2_subnets", region)]

    def subnet(self, subnet_id: str) -> Subnet | None:
        r = self.db.conn.execute("SELECT * FROM ec2_subnets WHERE id=?", (subnet_id,)).fetchone()
        return Subnet(r["id"], r["region"], r["vpc_id"], r["cidr"], r["az"],
                      bool(r["default_for_az"])) if r else None

    def delete_subnet(self, subnet_id: str) -> None:
        self.db.conn.execute("DELETE FROM ec2_subnets WHERE id=?", (subnet_id,))
        self.delete_tags(subnet_id)

    # security groups -------------------------------------------------------------------------
    def add_group(self, g: SecurityGroup) -> None:
        self.db.conn.execute("INSERT INTO ec2_security_groups VALUES (?,?,?,?,?)",
                             (g.id, g.region, g.vpc_id, g.name, g.description))

    def groups(self, region: str | None = None) -> list[SecurityGroup]:
        return [SecurityGroup(r["id"], r["region"], r["vpc_id"], r["name"], r["description"])
                for r in self._select("ec2_security_groups", region)]

    def group(self, group_id: str) -> SecurityGroup | None:
        r = self.db.conn.execute("SELECT * FROM ec2_security_groups WHERE id=?",
                                 (group_id,)).fetchone()
        return SecurityGroup(r["id"], r["region"], r["vpc_id"], r["name"],
                             r["description"]) if r else None

    def delete_group(self, group_id: str) -> None:
        self.db.conn.execute("DELETE FROM ec2_security_groups WHERE id=?", (group_id,))
        self.delete_tags(group_id)

    # rules -----------------------------------------------------------------------------------
    def add_rule(self, r: SgRule) -> None:
        self.db.conn.execute("INSERT INTO ec2_sg_rules VALUES (?,?,?,?,?,?,?,?,?)",
                             (r.id, r.group_id, int(r.egress), r.protocol, r.from_port,
                              r.to_port, r.cidr, r.ref_group_id, r.description))

    def rules(self, group_id: str | None = None) -> list[SgRule]:
        rows = select_rows(self.db, "ec2_sg_rules", "group_id", group_id)
        return [SgRule(r["id"], r["group_id"], bool(r["egress"]), r["protocol"], r["from_port"],
                       r["to_port"], r["cidr"], r["ref_group_id"], r["description"]) for r in rows]

    def update_rule(self, r: SgRule) -> None:
        """Rewrite rule `r.id` in place (its id, group, direction and order stay)."""
        self.db.conn.execute("UPDATE ec2_sg_rules SET protocol=?, from_port=?, to_port=?, cidr=?, "
                             "ref_group_id=?, description=? WHERE id=?",
                             (r.protocol, r.from_port, r.to_port, r.cidr, r.ref_group_id,
                              r.description, r.id))

    def delete_rule(self, rule_id: str) -> None:
        self.db.conn.execute("DELETE FROM ec2_sg_rules WHERE id=?", (rule_id,))
        self.delete_tags(rule_id)

    # network interfaces ----------------------------------------------------------------------
    def add_eni(self, e: Eni) -> None:
        far = e.far_end
        self.db.conn.execute(
            "INSERT INTO ec2_enis VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (e.id, e.region, e.subnet_id, e.vpc_id, e.ip or NO_IPV4 + e.id, e.mac,
             e.interface_type,
             int(e.requester_managed), e.description, e.status,
             far.netns if far else None, far.ifname if far else None,
             int(far.owns_netns) if far else 0, e.owner_pid, e.owner_start, e.process_pid,
             e.process_start, e.name, e.argv))
        self.db.conn.executemany("INSERT INTO ec2_eni_groups VALUES (?,?,?)",
                                 [(e.id, g, i) for i, g in enumerate(e.group_ids)])

    def enis(self, region: str | None = None) -> list[Eni]:
        groups: dict[str, list[str]] = {}
        for r in self.db.conn.execute("SELECT * FROM ec2_eni_groups ORDER BY eni_id, position"):
            groups.setdefault(r["eni_id"], []).append(r["group_id"])
        return [self._eni(r, groups.get(r["id"], [])) for r in self._select("ec2_enis", region)]

    def eni(self, eni_id: str) -> Eni | None:
        return next((e for e in self.enis() if e.id == eni_id), None)

    def set_eni_process(self, eni_id: str, pid: int, start: int | None) -> None:
        self.db.conn.execute("UPDATE ec2_enis SET process_pid=?, process_start=? WHERE id=?",
                             (pid, start, eni_id))

    def set_eni_far_end(self, eni_id: str, far: FarEnd) -> None:
        self.db.conn.execute("UPDATE ec2_enis SET far_netns=?, far_ifname=?, owns_netns=? "
                             "WHERE id=?", (far.netns, far.ifname, int(far.owns_netns), eni_id))

    def set_eni_groups(self, eni_id: str, group_ids: tuple[str, ...]) -> None:
        self.db.conn.execute("DELETE FROM ec2_eni_groups WHERE eni_id=?", (eni_id,))
        self.db.conn.executemany("INSERT INTO ec2_eni_groups VALUES (?,?,?)",
                                 [(eni_id, g, i) for i, g in enumerate(group_ids)])

    def set_eni_description(self, eni_id: str, description: str) -> None:
        self.db.conn.execute("UPDATE ec2_enis SET description=? WHERE id=?", (description, eni_id))

    def delete_eni(self, eni_id: str) -> None:
        self.db.conn.execute("DELETE FROM ec2_enis WHERE id=?", (eni_id,))
        self.delete_tags(eni_id)

    @staticmethod
    def _eni(r: object, group_ids: list[str]) -> Eni:
        far = FarEnd(r["far_netns"], r["far_ifname"], bool(r["owns_netns"])) \
            if r["far_netns"] else None
        ip = "" if r["ip"].startswith(NO_IPV4) else r["ip"]
        return Eni(r["id"], r["region"], r["subnet_id"], r["vpc_id"], ip, r["mac"],
                   r["interface_type"], bool(r["requester_managed"]), r["description"],
                   r["status"], tuple(group_ids), far, r["owner_pid"], r["owner_start"],
                   r["process_pid"], r["process_start"], r["name"], r["argv"])

    # tags ------------------------------------------------------------------------------------
    def set_tags(self, resource_id: str, tags: dict[str, str]) -> None:
        self.db.conn.executemany("INSERT OR REPLACE INTO ec2_tags VALUES (?,?,?)",
                                 [(resource_id, k, v) for k, v in tags.items()])

    def tags(self) -> dict[str, dict[str, str]]:
        out: dict[str, dict[str, str]] = {}
        for r in self.db.conn.execute("SELECT * FROM ec2_tags ORDER BY resource_id, key"):
            out.setdefault(r["resource_id"], {})[r["key"]] = r["value"]
        return out

    def delete_tags(self, resource_id: str) -> None:
        self.db.conn.execute("DELETE FROM ec2_tags WHERE resource_id=?", (resource_id,))

    # all -------------------------------------------------------------------------------------
    def snapshot(self) -> Snapshot:
        return Snapshot(self.vpcs(), self.subnets(), self.groups(), self.rules(), self.enis(),
                        NetworkAclStore(self.db).snapshot(), Ipv6Store(self.db).snapshot(),
                        PrivateIpStore(self.db).all())

    def _select(self, table: str, region: str | None) -> list[object]:
        return select_rows(self.db, table, "region", region)
