"""The IPv6 blocks of VPCs and subnets and the IPv6 addresses of interfaces, as the store
reads them and net/ renders them (store/ec2_ipv6.py keeps the rows)."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class VpcIpv6Cidr:
    association_id: str
    vpc_id: str
    cidr: str
    border_group: str


@dataclass(frozen=True)
class SubnetIpv6Cidr:
    association_id: str
    subnet_id: str
    cidr: str


@dataclass
class Ipv6Snapshot:
    """Every IPv6 block and interface address, for computing the desired kernel state."""
    vpc_cidrs: list[VpcIpv6Cidr] = field(default_factory=list)
    subnet_cidrs: list[SubnetIpv6Cidr] = field(default_factory=list)
    eni_addresses: dict[str, list[str]] = field(default_factory=dict)
