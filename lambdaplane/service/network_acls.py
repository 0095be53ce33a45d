"""Network ACLs with AWS's rules: each VPC's default ACL (allow all in both directions, then
the `*` deny), CreateNetworkAcl (deny all until entries are added), numbered entries
(Create/Replace/DeleteNetworkAclEntry), the association of every subnet with one ACL
(ReplaceNetworkAclAssociation; a new subnet joins the default ACL), DescribeNetworkAcls with its
filters. A part of VpcService (service/vpc.py), given its Ec2Core; writes
store/ec2_network_acls.py and has the kernel follow through `reconcile` (net/network_acls.py
renders them)."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import ec2_error
from ..model.network_acls import STAR_RULE, AclAssociation, AclEntry, NetworkAcl
from ..store.ec2 import Subnet, Vpc
from ..store.ec2_network_acls import NetworkAclStore
from .ec2_core import Ec2Core
from .ec2_filters import bool_text, check_names, matches
from .ec2_ids import IdKind, new_id
from .ec2_tags import specified_tags
from .ipam import parse_cidr, parse_ipv6_cidr

ANY_V4 = "0.0.0.0/0"
NETWORK_ACL = IdKind("acl", "InvalidNetworkAclId.Malformed", "InvalidNetworkAclID.NotFound",
                     "The networkAcl ID '{id}' does not exist",
                     missing="The request must contain the parameter networkAclId")
_PROTOCOLS = {"tcp": "6", "udp": "17", "icmp": "1", "all": "-1"}
_FILTERS = ["association.association-id", "association.network-acl-id", "association.subnet-id",
            "default", "entry.cidr", "entry.icmp.code", "entry.icmp.type", "entry.ipv6-cidr",
            "entry.port-range.from", "entry.port-range.to", "entry.protocol",
            "entry.rule-action", "entry.egress", "entry.rule-number", "network-acl-id",
            "owner-id", "vpc-id"]


def _star_entries(acl_id: str) -> list[AclEntry]:
    return [AclEntry(acl_id, egress, STAR_RULE, "-1", False, ANY_V4) for egress in (False, True)]


def normalise_acl_protocol(raw: Any) -> str:
    value = str(raw if raw is not None else "").strip().lower()
    value = _PROTOCOLS.get(value, value)
    if value == "-1" or (value.isdigit() and 0 <= int(value) <= 255):
        return str(int(value)) if value != "-1" else value
    raise ec2_error("InvalidParameterValue",
                    f"Invalid value '{raw}' for IP protocol. Unknown protocol.")


class NetworkAcls:
    """The network ACL part of VpcService."""

    def __init__(self, core: Ec2Core, acls: NetworkAclStore,
                 has_ipv6: Callable[[str], bool]) -> None:
        self.core = core
        self.settings, self.db, self.store = core.settings, core.db, core.store
        self.acls = acls
        self.has_ipv6 = has_ipv6  # whether a VPC has an IPv6 block (service/ipv6.py)

    # made with VPCs and subnets --------------------------------------------------------------
    def insert_default_acl(self, vpc: Vpc) -> NetworkAcl:
        acl = NetworkAcl(new_id("acl"), vpc.region, vpc.id, True)
        self.acls.add_acl(acl)
        for egress in (False, True):
            self.acls.put_entry(AclEntry(acl.id, egress, 100, "-1", True, ANY_V4))
        for entry in _star_entries(acl.id):
            self.acls.put_entry(entry)
        return acl

    def default_acl(self, vpc_id: str) -> NetworkAcl | None:
        return next((a for a in self.acls.acls() if a.vpc_id == vpc_id and a.is_default), None)

    def join_default_acl(self, subnet: Subnet) -> None:
        """In the transaction that makes a subnet: it starts in its VPC's default ACL."""
        acl = self.default_acl(subnet.vpc_id)
        if acl is not None:
            self.acls.associate(AclAssociation(new_id("aclassoc"), acl.id, subnet.id))

    def ensure_default_acls(self) -> int:
        """Give every stored VPC without one its default ACL and every subnet without one an
        association with it; how many objects were made."""
        made = 0
        with self.db.transaction():
            for vpc in self.store.vpcs():
                if self.default_acl(vpc.id) is None:
                    self.insert_default_acl(vpc)
                    made += 1
            associated = {a.subnet_id for a in self.acls.associations()}
            for subnet in self.store.subnets():
                if subnet.id not in associated:
                    self.join_default_acl(subnet)
                    made += 1
        return made

    def vpc_acl_dependencies(self, vpc: Vpc) -> bool:
        return any(a.vpc_id == vpc.id and not a.is_default for a in self.acls.acls())

    def delete_vpc_acls(self, vpc: Vpc) -> None:
        for acl in self.acls.acls():
            if acl.vpc_id == vpc.id:
                self.acls.delete_acl(acl.id)
                self.store.delete_tags(acl.id)

    def acl_taggable_ids(self, region: str) -> set[str]:
        return {a.id for a in self.acls.acls(region)}

    # ACLs ----------------------------------------------------------------------------------
    def network_acl(self, region: str, acl_id: str | None) -> NetworkAcl:
        return NETWORK_ACL.find(region, acl_id, self.acls.acl)

    async def create_network_acl(self, region: str, vpc_id: str | None,
                                 tag_specs: list[dict[str, Any]] | None) -> NetworkAcl:
        self.core.ensure_region(region)
        if not vpc_id:
            raise ec2_error("MissingParameter", "The request must contain the parameter vpcId")
        vpc = self.core.vpc(region, vpc_id)
        acl = NetworkAcl(new_id("acl"), region, vpc.id, False)
        with self.db.transaction():
            self.acls.add_acl(acl)
            for entry in _star_entries(acl.id):
                self.acls.put_entry(entry)
            if self.has_ipv6(vpc.id):  # the IPv6 `*`
                for egress in (False, True):
                    self.acls.put_entry(AclEntry(acl.id, egress, STAR_RULE + 1, "-1", False,
                                                 "::/0"))
            self.store.set_tags(acl.id, specified_tags(tag_specs, "network-acl"))
        return acl

    async def delete_network_acl(self, region: str, acl_id: str | None) -> None:
        self.core.ensure_region(region)
        acl = self.network_acl(region, acl_id)
        if acl.is_default:
            raise ec2_error("InvalidParameterValue",
                            f"cannot delete default network ACL {acl.id}")
        if any(a.acl_id == acl.id for a in self.acls.associations()):
            raise ec2_error("DependencyViolation",
                            f"The network ACL '{acl.id}' has dependencies and cannot be "
                            "deleted.")
        with self.db.transaction():
            self.acls.delete_acl(acl.id)
            self.store.delete_tags(acl.id)

    def describe_network_acls(self, region: str, ids: list[str],
                              filters: list[dict[str, Any]]) -> list[NetworkAcl]:
        self.core.ensure_region(region)
        check_names(filters, _FILTERS)
        for aid in ids:
            self.network_acl(region, aid)
        tags = self.store.tags()
        assocs = self.acls.associations()
        entries = self.acls.entries()
        out = []
        for acl in self.acls.acls(region):
            mine = [a for a in assocs if a.acl_id == acl.id]
            rows = [e for e in entries if e.acl_id == acl.id]
            attrs = {"network-acl-id": [acl.id], "vpc-id": [acl.vpc_id],
                     "default": [bool_text(acl.is_default)],
                     "owner-id": [self.settings.account_id],
                     "association.association-id": [a.id for a in mine],
                     "association.network-acl-id": [acl.id for _ in mine],
                     "association.subnet-id": [a.subnet_id for a in mine],
                     "entry.cidr": [e.cidr for e in rows if ":" not in e.cidr],
                     "entry.ipv6-cidr": [e.cidr for e in rows if ":" in e.cidr],
                     "entry.protocol": [e.protocol for e in rows],
                     "entry.rule-action": ["allow" if e.allow else "deny" for e in rows],
                     "entry.egress": [bool_text(e.egress) for e in rows],
                     "entry.rule-number": [str(e.rule_number) for e in rows],
                     "entry.port-range.from": [str(e.from_port) for e in rows
                                               if e.from_port is not None],
                     "entry.port-range.to": [str(e.to_port) for e in rows
                                             if e.to_port is not None],
                     "entry.icmp.type": [str(e.icmp_type) for e in rows
                                         if e.icmp_type is not None],
                     "entry.icmp.code": [str(e.icmp_code) for e in rows
                                         if e.icmp_code is not None]}
            if (not ids or acl.id in ids) and matches(filters, attrs, tags.get(acl.id, {})):
                out.append(acl)
        return out

    def acl_entries(self, acl_id: str) -> list[AclEntry]:
        return self.acls.entries(acl_id)

    def acl_associations(self, acl_id: str) -> list[AclAssociation]:
        return [a for a in self.acls.associations() if a.acl_id == acl_id]

    # entries -------------------------------------------------------------------------------
    def _entry(self, acl: NetworkAcl, p: dict[str, Any]) -> AclEntry:
        for name in ("RuleNumber", "Protocol", "RuleAction", "Egress"):
            if p.get(name) is None:
                raise ec2_error("MissingParameter",
                                f"The request must contain the parameter "
                                f"{name[0].lower() + name[1:]}")
        number = int(p["RuleNumber"])
        if not 1 <= number <= 32766:
            raise ec2_error("InvalidParameterValue",
                            f"Value ({number}) for parameter ruleNumber is invalid. Rule "
                            "numbers must be between 1 and 32766.")
        action = str(p["RuleAction"]).lower()
        if action not in ("allow", "deny"):
            raise ec2_error("InvalidParameterValue",
                            f"Value ({p['RuleAction']}) for parameter ruleAction is invalid.")
        if p.get("Ipv6CidrBlock") and p.get("CidrBlock"):
            raise ec2_error("InvalidParameterCombination",
                            "Only one of cidrBlock or ipv6CidrBlock may be specified")
        if not p.get("CidrBlock") and not p.get("Ipv6CidrBlock"):
            raise ec2_error("MissingParameter",
                            "The request must contain the parameter cidrBlock or "
                            "ipv6CidrBlock")
        cidr = str(parse_cidr(p["CidrBlock"], "cidrBlock")) if p.get("CidrBlock") \
            else str(parse_ipv6_cidr(p["Ipv6CidrBlock"], "ipv6CidrBlock"))
        protocol = normalise_acl_protocol(p["Protocol"])
        from_port = to_port = icmp_type = icmp_code = None
        if protocol in ("6", "17"):
            ports = p.get("PortRange") or {}
            if ports.get("From") is None or ports.get("To") is None:
                raise ec2_error("MissingParameter",
                                "The request must contain the parameter portRange")
            from_port, to_port = int(ports["From"]), int(ports["To"])
            if not (0 <= from_port <= 65535 and 0 <= to_port <= 65535) or from_port > to_port:
                raise ec2_error("InvalidParameterValue",
                                f"Invalid value '{from_port}-{to_port}' for portRange. Ports "
                                "must be between 0 and 65535.")
        elif protocol in ("1", "58"):
            icmp = p.get("IcmpTypeCode") or {}
            if icmp.get("Type") is None or icmp.get("Code") is None:
                raise ec2_error("MissingParameter",
                                "The request must contain the parameter icmpTypeCode")
            icmp_type, icmp_code = int(icmp["Type"]), int(icmp["Code"])
            if not (-1 <= icmp_type <= 255 and -1 <= icmp_code <= 255):
                raise ec2_error("InvalidParameterValue",
                                f"Invalid value '{icmp_type}' for icmp type or code.")
        return AclEntry(acl.id, bool(p["Egress"]), number, protocol, action == "allow", cidr,
                        from_port, to_port, icmp_type, icmp_code)

    def _existing(self, acl: NetworkAcl, egress: bool, number: int) -> AclEntry | None:
        return next((e for e in self.acls.entries(acl.id)
                     if e.egress == egress and e.rule_number == number), None)

    async def create_network_acl_entry(self, region: str, p: dict[str, Any]) -> None:
        self.core.ensure_region(region)
        acl = self.network_acl(region, p.get("NetworkAclId"))
        entry = self._entry(acl, p)
        if self._existing(acl, entry.egress, entry.rule_number):
            raise ec2_error("NetworkAclEntryAlreadyExists",
                            f"The network acl entry identified by {entry.rule_number} already "
                            "exists.")
        with self.db.transaction():
            self.acls.put_entry(entry)
        await self.core.reconcile()

    async def replace_network_acl_entry(self, region: str, p: dict[str, Any]) -> None:
        self.core.ensure_region(region)
        acl = self.network_acl(region, p.get("NetworkAclId"))
        entry = self._entry(acl, p)
        if not self._existing(acl, entry.egress, entry.rule_number):
            raise ec2_error("InvalidNetworkAclEntry.NotFound",
                            f"The network acl entry identified by {entry.rule_number} does not "
                            "exist.")
        with self.db.transaction():
            self.acls.put_entry(entry)
        await self.core.reconcile()

    async def delete_network_acl_entry(self, region: str, p: dict[str, Any]) -> None:
        self.core.ensure_region(region)
        acl = self.network_acl(region, p.get("NetworkAclId"))
        for name in ("RuleNumber", "Egress"):
            if p.get(name) is None:
                raise ec2_error("MissingParameter", f"The request must contain the parameter "
                                                    f"{name[0].lower() + name[1:]}")
        egress, number = bool(p["Egress"]), int(p["RuleNumber"])
        if number >= STAR_RULE or not self._existing(acl, egress, number):
            raise ec2_error("InvalidNetworkAclEntry.NotFound",
                            f"The network acl entry identified by {number} does not exist.")
        with self.db.transaction():
            self.acls.delete_entry(acl.id, egress, number)
        await self.core.reconcile()

    async def replace_network_acl_association(self, region: str, association_id: str | None,
                                              acl_id: str | None) -> AclAssociation:
        self.core.ensure_region(region)
        if not association_id:
            raise ec2_error("MissingParameter",
                            "The request must contain the parameter associationId")
        acl = self.network_acl(region, acl_id)
        old = next((a for a in self.acls.associations() if a.id == association_id), None)
        old_acl = self.acls.acl(old.acl_id) if old else None
        if old is None or old_acl is None or old_acl.region != region:
            raise ec2_error("InvalidAssociationID.NotFound",
                            f"The association ID '{association_id}' does not exist")
        if old_acl.vpc_id != acl.vpc_id:
            raise ec2_error("InvalidParameterValue",
                            f"Network ACL {acl.id} and association {old.id} belong to "
                            "different networks")
        new = AclAssociation(new_id("aclassoc"), acl.id, old.subnet_id)
        with self.db.transaction():
            self.acls.associate(new)
        await self.core.reconcile()
        return new
