"""What the parts of VpcService share, handed to each part as one explicit reference instead of
reached through `self`: the settings, the database and the EC2 store, the lookups of VPCs,
subnets and security groups by id (with AWS's Malformed / NotFound errors), `ensure_region`
(a region's default VPC on first use) and `reconcile` (the kernel made to match the store).
service/vpc.py builds one Ec2Core and gives it to each part (service/ec2_tags.py,
vpc_cidrs.py, subnet_reservations.py, ec2_attributes.py, eni_attributes.py, …)."""
from __future__ import annotations

from collections.abc import Awaitable, Callable

from ..config import Settings
from ..errors import ec2_error
from ..store.db import Database
from ..store.ec2 import Ec2Store, SecurityGroup, Subnet, Vpc
from .ec2_ids import check_id


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
        check_id(vpc_id, "vpc", "InvalidVpcID.Malformed")
        vpc = self.store.vpc(vpc_id)
        if vpc is None or vpc.region != region:
            raise ec2_error("InvalidVpcID.NotFound", f"The vpc ID '{vpc_id}' does not exist")
        return vpc

    def subnet(self, region: str, subnet_id: str) -> Subnet:
        check_id(subnet_id, "subnet", "InvalidSubnetID.Malformed")
        subnet = self.store.subnet(subnet_id)
        if subnet is None or subnet.region != region:
            raise ec2_error("InvalidSubnetID.NotFound",
                            f"The subnet ID '{subnet_id}' does not exist")
        return subnet

    def group(self, region: str, group_id: str) -> SecurityGroup:
        check_id(group_id, "sg", "InvalidGroupId.Malformed")
        group = self.store.group(group_id)
        if group is None or group.region != region:
            raise ec2_error("InvalidGroup.NotFound",
                            f"The security group '{group_id}' does not exist")
        return group
