"""Network ACLs as every layer sees them: an ACL, its numbered entries (rule 32767 is the `*`
rule every ACL ends with) and a subnet's association. The store keeps them
(store/ec2_network_acls.py), the service applies AWS's rules to them, net/ renders them."""
from __future__ import annotations

from dataclasses import dataclass, field

STAR_RULE = 32767  # the `*` rule: what DescribeNetworkAcls shows as the last entry


@dataclass(frozen=True)
class NetworkAcl:
    id: str
    region: str
    vpc_id: str
    is_default: bool


@dataclass(frozen=True)
class AclEntry:
    acl_id: str
    egress: bool
    rule_number: int
    protocol: str  # "-1" (all) or an IP protocol number: "6", "17", "1", …
    allow: bool
    cidr: str
    from_port: int | None = None  # tcp/udp: the destination port range, in both directions
    to_port: int | None = None
    icmp_type: int | None = None  # icmp: -1 for all
    icmp_code: int | None = None


@dataclass(frozen=True)
class AclAssociation:
    id: str
    acl_id: str
    subnet_id: str


@dataclass
class AclSnapshot:
    """Every ACL entry and association, for the kernel rendering."""
    entries: list[AclEntry] = field(default_factory=list)
    associations: list[AclAssociation] = field(default_factory=list)
