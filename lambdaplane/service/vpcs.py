"""VPCs and subnets with AWS's rules: a region's default VPC (with a default subnet per zone,
its internet gateway, main route table, default network ACL and default security group) made
on first use, Create/Describe/DeleteVpc and Create/Describe/DeleteSubnet with their filters,
defaults, dependency checks and error codes. A part of VpcService (service/vpc.py), given its
Ec2Core and the parts a VPC or subnet is made and deleted with; writes store/ec2.py (and what
those parts keep of a VPC or subnet) and asks for a reconcile after every change."""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..errors import ec2_error
from ..store.ec2 import SecurityGroup, SgRule, Subnet, Vpc
from ..store.ec2_attributes import AttributeStore
from ..store.ec2_network_acls import NetworkAclStore
from ..store.ec2_routes import RouteStore
from ..store.ec2_vpc_cidrs import VpcCidrStore
from . import ipam
from .ec2_attributes import SUBNET_SETTING_FILTERS, SubnetSettings, subnet_setting_attributes
from .ec2_core import Ec2Core
from .ec2_filters import bool_text, check_names, matches
from .ec2_ids import new_id
from .ec2_tags import specified_tags
from .gateways import InternetGateways
from .network_acls import NetworkAcls
from .route_tables import RouteTables
from .sg_rules import new_rule_id
from .subnet_reservations import SubnetReservations
from .vpc_cidrs import VpcCidrs
from .zones import pick_zone, zone_of, zones

if TYPE_CHECKING:
    from .egress_only_gateways import EgressOnlyGateways
    from .ipv6 import Ipv6Addressing
    from .private_ips import PrivateIps

DEFAULT_VPC_CIDR = "172.31.0.0/16"
_IPV6_ASSOCIATION_FILTERS = ("ipv6-cidr-block-association.ipv6-cidr-block",
                             "ipv6-cidr-block-association.ipv6-pool",
                             "ipv6-cidr-block-association.association-id",
                             "ipv6-cidr-block-association.state")


class VpcsAndSubnets:
    """The VPC and subnet part of VpcService."""

    def __init__(self, core: Ec2Core, attributes: AttributeStore, routes: RouteStore,
                 acls: NetworkAclStore, vpc_cidr_store: VpcCidrStore, route_tables: RouteTables,
                 network_acls: NetworkAcls, internet_gateways: InternetGateways,
                 cidrs: VpcCidrs, subnet_reservations: SubnetReservations,
                 ipv6: "Ipv6Addressing", egress_only: "EgressOnlyGateways",
                 private_ips: "PrivateIps",
                 subnet_settings: Callable[[Subnet], SubnetSettings]) -> None:
        self.core = core
        self.settings, self.db, self.store = core.settings, core.db, core.store
        self.vpc, self.subnet, self.reconcile = core.vpc, core.subnet, core.reconcile
        self.attributes = attributes
        self.routes = routes
        self.acls = acls
        self.vpc_cidr_store = vpc_cidr_store
        self.route_tables = route_tables
        self.network_acls = network_acls
        self.internet_gateways = internet_gateways
        self.cidrs = cidrs
        self.subnet_reservations = subnet_reservations
        self.ipv6 = ipv6
        self.egress_only = egress_only
        self.private_ips = private_ips
        self.subnet_settings = subnet_settings  # service/ec2_attributes.py

    # regions -----------------------------------------------------------------------------
    def ensure_region(self, region: str) -> bool:
        """Every region has a default VPC with a default subnet per zone, made on first use.
        True when this call made them."""
        if self.store.region_initialised(region):
            return False
        with self.db.transaction():
            self.store.mark_region(region)
            vpc = self._insert_vpc(region, DEFAULT_VPC_CIDR, is_default=True)
            self.internet_gateways.give_default_vpc_internet(vpc)
            for zone, cidr in zip(zones(region), ipam.default_subnets(DEFAULT_VPC_CIDR,
                                                                      len(zones(region)))):
                subnet = Subnet(new_id("subnet"), region, vpc.id, cidr, zone.name, True)
                self.store.add_subnet(subnet)
                self.network_acls.join_default_acl(subnet)
        return True

    # VPCs --------------------------------------------------------------------------------
    def _insert_vpc(self, region: str, cidr: str, is_default: bool) -> Vpc:
        vpc = Vpc(new_id("vpc"), region, cidr, is_default)
        self.store.add_vpc(vpc)
        self.route_tables.insert_main_route_table(vpc)
        self.network_acls.insert_default_acl(vpc)
        group = SecurityGroup(new_id("sg"), region, vpc.id, "default",
                              "default VPC security group")
        self.store.add_group(group)
        # AWS's default group: all traffic from its own members in, all traffic out.
        self.store.add_rule(SgRule(new_rule_id(), group.id, False, "-1", -1, -1, None, group.id))
        self.store.add_rule(SgRule(new_rule_id(), group.id, True, "-1", -1, -1, "0.0.0.0/0", None))
        return vpc

    async def create_vpc(self, region: str, cidr: str | None,
                         tag_specs: list[dict[str, Any]] | None) -> Vpc:
        self.ensure_region(region)
        if not cidr:
            raise ec2_error("MissingParameter", "The request must contain the parameter cidrBlock")
        net = ipam.check_vpc_cidr(cidr)
        with self.db.transaction():
            vpc = self._insert_vpc(region, str(net), is_default=False)
            self.store.set_tags(vpc.id, specified_tags(tag_specs, "vpc"))
        await self.reconcile()
        return vpc

    def describe_vpcs(self, region: str, ids: list[str],
                      filters: list[dict[str, Any]]) -> list[Vpc]:
        self.ensure_region(region)
        check_names(filters, ["vpc-id", "cidr", "cidr-block", "cidr-block-association.cidr-block",
                              "cidr-block-association.association-id",
                              "cidr-block-association.state", "is-default", "isDefault", "state",
                              "owner-id", "dhcp-options-id", *_IPV6_ASSOCIATION_FILTERS,
                              "ipv6-cidr-block-association.ipv6-pool"])
        for vid in ids:
            self.vpc(region, vid)
        tags = self.store.tags()
        out = []
        for v in self.store.vpcs(region):
            blocks = self.cidrs.cidr_associations(v)
            attrs = {"vpc-id": [v.id], "cidr": [v.cidr], "cidr-block": [v.cidr],
                     "cidr-block-association.cidr-block": [b.cidr for b in blocks],
                     "cidr-block-association.association-id": [b.association_id
                                                                for b in blocks],
                     "cidr-block-association.state": ["associated"],
                     "is-default": [bool_text(v.is_default)],
                     "isDefault": [bool_text(v.is_default)], "state": ["available"],
                     "owner-id": [self.settings.account_id], "dhcp-options-id": ["default"],
                     **self.ipv6.vpc_filter_values(v)}
            if (not ids or v.id in ids) and matches(filters, attrs, tags.get(v.id, {})):
                out.append(v)
        return out

    async def delete_vpc(self, region: str, vpc_id: str) -> None:
        self.ensure_region(region)
        vpc = self.vpc(region, vpc_id)
        groups = [g for g in self.store.groups(region) if g.vpc_id == vpc.id]
        if any(s.vpc_id == vpc.id for s in self.store.subnets(region)) or \
                any(g.name != "default" for g in groups) or \
                self.route_tables.vpc_route_table_dependencies(vpc) or \
                self.network_acls.vpc_acl_dependencies(vpc) or self.internet_gateways.vpc_gateway_dependencies(vpc) or \
                self.egress_only.vpc_dependencies(vpc.id):
            raise ec2_error("DependencyViolation",
                            f"The vpc '{vpc.id}' has dependencies and cannot be deleted.")
        with self.db.transaction():
            for g in groups:
                self.store.delete_group(g.id)
            self.route_tables.delete_vpc_route_tables(vpc)
            self.network_acls.delete_vpc_acls(vpc)
            self.vpc_cidr_store.delete_of(vpc.id)
            self.store.delete_vpc(vpc.id)
            self.attributes.delete(vpc.id)
        await self.reconcile()

    def subnet_arn(self, subnet: Subnet) -> str:
        return f"arn:aws:ec2:{subnet.region}:{self.settings.account_id}:subnet/{subnet.id}"

    def available_ips(self, subnet: Subnet) -> int:
        if subnet.ipv6_native:
            return 0  # AWS counts IPv4 addresses only
        used = len(self.private_ips.taken_in(subnet))  # primary and secondary addresses
        return ipam.capacity(subnet.cidr) - used

    async def create_subnet(self, region: str, vpc_id: str | None, cidr: str | None,
                            az: str | None, az_id: str | None,
                            tag_specs: list[dict[str, Any]] | None,
                            ipv6_native: bool = False) -> Subnet:
        """`ipv6_native`: an IPv6-only subnet, without an IPv4 block (service/ipv6_only.py);
        the caller gives it its /64."""
        self.ensure_region(region)
        if not vpc_id:
            raise ec2_error("MissingParameter", "The request must contain the parameter vpcId")
        if not cidr and not ipv6_native:
            raise ec2_error("MissingParameter", "The request must contain the parameter cidrBlock")
        vpc = self.vpc(region, vpc_id)
        zone = pick_zone(region, az, az_id)
        if ipv6_native:
            block = ""
        else:
            assert cidr is not None
            siblings = [s.cidr for s in self.store.subnets(region)
                        if s.vpc_id == vpc.id and not s.ipv6_native]
            block = str(ipam.check_subnet_cidr(cidr, self.cidrs.containing_cidr(vpc, cidr),
                                               siblings))
        subnet = Subnet(new_id("subnet"), region, vpc.id, block, zone.name, False)
        with self.db.transaction():
            self.store.add_subnet(subnet)
            self.network_acls.join_default_acl(subnet)
            self.store.set_tags(subnet.id, specified_tags(tag_specs, "subnet"))
        await self.reconcile()
        return subnet

    def describe_subnets(self, region: str, ids: list[str],
                         filters: list[dict[str, Any]]) -> list[Subnet]:
        self.ensure_region(region)
        check_names(filters, ["subnet-id", "vpc-id", "cidr-block", "cidr", "cidrBlock",
                              "availability-zone", "availability-zone-id", "availabilityZone",
                              "default-for-az", "defaultForAz", "state", "owner-id",
                              "available-ip-address-count", *SUBNET_SETTING_FILTERS,
                              *_IPV6_ASSOCIATION_FILTERS[:1], *_IPV6_ASSOCIATION_FILTERS[2:],
                              "customer-owned-ipv4-pool", "outpost-arn", "subnet-arn"])
        for sid in ids:
            self.subnet(region, sid)
        tags = self.store.tags()
        out = []
        for s in self.store.subnets(region):
            z = zone_of(s)
            v4 = [s.cidr] if s.cidr else []
            attrs = {"subnet-id": [s.id], "vpc-id": [s.vpc_id], "cidr-block": v4,
                     "cidr": v4, "cidrBlock": v4, "availability-zone": [s.az],
                     "availabilityZone": [s.az], "availability-zone-id": [z.zone_id],
                     "default-for-az": [bool_text(s.default_for_az)],
                     "defaultForAz": [bool_text(s.default_for_az)], "state": ["available"],
                     "owner-id": [self.settings.account_id],
                     "available-ip-address-count": [str(self.available_ips(s))],
                     "subnet-arn": [self.subnet_arn(s)],
                     **subnet_setting_attributes(self.subnet_settings(s)),
                     **self.ipv6.subnet_filter_values(s)}
            if (not ids or s.id in ids) and matches(filters, attrs, tags.get(s.id, {})):
                out.append(s)
        return out

    async def delete_subnet(self, region: str, subnet_id: str) -> None:
        self.ensure_region(region)
        subnet = self.subnet(region, subnet_id)
        if any(e.subnet_id == subnet.id for e in self.store.enis()):
            raise ec2_error("DependencyViolation",
                            f"The subnet '{subnet.id}' has dependencies and cannot be deleted.")
        with self.db.transaction():
            self.routes.delete_subnet_association(subnet.id)
            self.acls.delete_association_of(subnet.id)
            self.subnet_reservations.delete_subnet_reservations(subnet)
            self.store.delete_subnet(subnet.id)
            self.attributes.delete(subnet.id)
        await self.reconcile()
