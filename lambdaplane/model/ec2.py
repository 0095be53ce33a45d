"""The EC2 network objects every layer shares: VPCs, subnets, security groups and their rules,
network interfaces and where their far ends live, and the snapshot of all of them that net/
derives the kernel state from. Plain frozen dataclasses: store/ec2.py reads and writes them,
service/ applies AWS's rules to them, net/ renders them."""
from __future__ import annotations

from dataclasses import dataclass, field

from .ipv6 import Ipv6Snapshot
from .network_acls import AclSnapshot


@dataclass(frozen=True)
class Vpc:
    id: str
    region: str
    cidr: str
    is_default: bool


@dataclass(frozen=True)
class Subnet:
    id: str
    region: str
    vpc_id: str
    cidr: str
    az: str
    default_for_az: bool

    @property
    def ipv6_native(self) -> bool:
        """An IPv6-only subnet (CreateSubnet Ipv6Native): it has no IPv4 CIDR block."""
        return not self.cidr


@dataclass(frozen=True)
class SecurityGroup:
    id: str
    region: str
    vpc_id: str
    name: str
    description: str


@dataclass(frozen=True)
class SgRule:
    id: str
    group_id: str
    egress: bool
    protocol: str  # "-1" (all), "tcp", "udp", "icmp" or an IP protocol number
    from_port: int  # -1 when the protocol has no ports; ICMP type
    to_port: int  # ICMP code
    cidr: str | None
    ref_group_id: str | None
    description: str = ""

    @property
    def key(self) -> tuple[object, ...]:
        """What makes two rules the same rule (the description does not)."""
        return (self.group_id, self.egress, self.protocol, self.from_port, self.to_port,
                self.cidr, self.ref_group_id)


@dataclass(frozen=True)
class FarEnd:
    """Where the other end of an interface's veth lives. `owns_netns`: the namespace exists
    for this interface alone (a `lambdaplane run` resource) and gets a default route via the
    subnet gateway; otherwise it is shared (e.g. a per-VPC Hyperplane namespace)."""
    netns: str
    ifname: str
    owns_netns: bool


@dataclass(frozen=True)
class Eni:
    id: str
    region: str
    subnet_id: str
    vpc_id: str
    ip: str
    mac: str
    interface_type: str  # "interface" | "lambda" | …
    requester_managed: bool
    description: str
    status: str  # "available" | "in-use"
    group_ids: tuple[str, ...]
    far_end: FarEnd | None = None
    owner_pid: int | None = None  # the `lambdaplane run` CLI; its death releases the ENI
    owner_start: int | None = None  # /proc/<pid>/stat start time, so a reused pid is not it
    process_pid: int | None = None  # the program run inside (its netns survives restarts)
    process_start: int | None = None
    name: str | None = None
    argv: str | None = None


@dataclass
class Snapshot:
    """Every EC2 network object of the store, for computing the desired kernel state."""
    vpcs: list[Vpc] = field(default_factory=list)
    subnets: list[Subnet] = field(default_factory=list)
    groups: list[SecurityGroup] = field(default_factory=list)
    rules: list[SgRule] = field(default_factory=list)
    enis: list[Eni] = field(default_factory=list)
    network_acls: AclSnapshot = field(default_factory=AclSnapshot)
    ipv6: Ipv6Snapshot = field(default_factory=Ipv6Snapshot)
    private_ips: dict[str, list[str]] = field(default_factory=dict)  # secondary, by ENI id
