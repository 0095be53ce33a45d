"""What the parts of VpcService share, handed to each part as one explicit reference instead of
reached through `self`: the settings, the database and the EC2 store, the lookups of VPCs,
subnets and security groups by id (with AWS's Malformed / NotFound errors), `ensure_region`
(a region's default VPC on first use) and `reconcile` (the kernel made to match the store).
service/vpc.py builds one Ec2Core and gives it to each part (service/ec2_tags.py,
vpc_cidrs.py, subnet_reservations.py, ec2_attributes.py, eni_attributes.py, …)."""
from __future__ import annotations

from collections.abc import Awaitable, Callable

from ..config import Settings
from ..store.db import Database
from ..store.ec2 import Ec2Store, SecurityGroup, Subnet, Vpc
from .ec2_ids import IdKind

VPC = IdKind("vpc", "InvalidVpcID.Malformed", "InvalidVpcID.NotFound",
             "The vpc ID '{id}' does not exist")
SUBNET = IdKind("subnet", "InvalidSubnetID.Malformed", "InvalidSubnetID.NotFound",
                "The subnet ID '{id}' does not exist")
SECURITY_GROUP = IdKind("sg", "InvalidGroupId.Malformed", "InvalidGroup.NotFound",
                        "The security group '{id}' does not exist")


class Ec2Core:
    def __init__(self, settings: Settings, db: Database, store: Ec2Store,
                 ensure_region: Callable[[str], bool],
                 reconcile: Callable[[], Awaitable[list[str]]]) -> None:
        self.settings = settings
        self.db = db
        self.store = store
        self.ensure_region = ensure_region
        self.reconcile = reconcile

    def vpc(self, region: str, vpc_id: str) -> Vpc:
        return VPC.find(region, vpc_id, self.store.vpc)

    def subnet(self, region: str, subnet_id: str) -> Subnet:
        return SUBNET.find(region, subnet_id, self.store.subnet)

    def group(self, region: str, group_id: str) -> SecurityGroup:
        return SECURITY_GROUP.find(region, group_id, self.store.group)
