"""The EC2 network model VpcService serves: regions (a default VPC on first use), zones, tags,
VPCs and subnets with AWS's rules (ids, defaults, dependencies, error codes), plus the one
`reconcile` that has the kernel made to match the store (net/reconcile.py on the net thread).
Security groups (service/security_groups.py, sg_rule_edits.py), network interfaces
(service/interfaces.py, eni_attributes.py), route tables (service/route_tables.py), network ACLs
(service/network_acls.py), secondary CIDR blocks (service/vpc_cidrs.py), subnet CIDR
reservations (service/subnet_reservations.py), tags (service/ec2_tags.py) and VPC/subnet
attributes (service/ec2_attributes.py) are mixed into the same service: one object, one store,
one reconcile. IPv6 (`self.ipv6`, service/ipv6.py) and secondary private addresses
(`self.private_ips`, service/private_ips.py) are parts it holds (composition). No HTTP and no kernel calls of its own."""
from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from ..config import Settings
from ..errors import ec2_error
from ..net import reconcile as net_reconcile
from ..net import gateways6 as net_gateways6
from ..net.executor import NetThread
from ..net.names import Names
from ..store.db import Database
from ..store.ec2 import Ec2Store, SecurityGroup, SgRule, Subnet, Vpc
from ..store.ec2_attributes import AttributeStore
from ..store.ec2_network_acls import NetworkAclStore
from ..store.ec2_routes import RouteStore
from ..store.ec2_subnet_reservations import SubnetReservationStore
from ..store.ec2_vpc_cidrs import VpcCidrStore
from . import ipam
from .ec2_attributes import Ec2Attributes, SubnetSettings
from .ec2_filters import bool_text, check_names, matches
from .ec2_ids import check_id, new_id
from .ec2_tags import Ec2Tags
from .eni_attributes import EniAttributes
from .interfaces import NetworkInterfaces
from .network_acls import NetworkAcls
from .route_tables import RouteTables
from .security_groups import SecurityGroups
from .sg_rule_edits import SecurityGroupRuleEdits
from .subnet_reservations import SubnetReservations
from .vpc_cidrs import VpcCidrs
from .gateways import InternetGateways
from .nat_gateways import NatGateways
from ..store.nat_gateways import NatGatewayStore
from ..store.public_ips import PublicIpStore
from ..net import gateways as net_gateways
from ..store.gateways import GatewayStore
from .sg_rules import new_rule_id
from .ipv6 import Ipv6Addressing
from .egress_only_gateways import EgressOnlyGateways
from .private_ips import PrivateIps
from .dns_server import VpcResolvers
from .vpc_dns import VpcDns
from .endpoint_proxy import EndpointListeners
from .local_ca import LocalCa
from .vpc_endpoints import VpcEndpoints
from ..store.vpc_endpoints import VpcEndpointStore

log = logging.getLogger("lambdaplane.vpc")

DEFAULT_VPC_CIDR = "172.31.0.0/16"
_ZONE_COUNT = {"us-east-1": 6, "us-west-2": 4, "ap-northeast-2": 4}
# Regions whose zones are not a, b, c… numbered in order: (letter, zone id number), as AWS
# lists them (the letter ↔ id mapping differs between AWS accounts; this is a common one).
_ZONE_LETTERS = {"ap-northeast-1": (("a", 4), ("c", 1), ("d", 2)),
                 "ca-central-1": (("a", 1), ("b", 2), ("d", 4))}
_DIRECTIONS = {"east": "e", "west": "w", "north": "n", "south": "s", "central": "c",
               "northeast": "ne", "southeast": "se", "northwest": "nw", "southwest": "sw"}


_IPV6_ASSOCIATION_FILTERS = ("ipv6-cidr-block-association.ipv6-cidr-block",
                             "ipv6-cidr-block-association.ipv6-pool",
                             "ipv6-cidr-block-association.association-id",
                             "ipv6-cidr-block-association.state")
_SUBNET_SETTING_FILTERS = ("map-public-ip-on-launch", "map-customer-owned-ip-on-launch",
                           "enable-dns64", "ipv6-native", "enable-lni-at-device-index",
                           "private-dns-name-options-on-launch.hostname-type",
                           "private-dns-name-options-on-launch.enable-resource-name-dns-a-record",
                           "private-dns-name-options-on-launch."
                           "enable-resource-name-dns-aaaa-record")


def subnet_setting_attributes(s: SubnetSettings) -> dict[str, list[str]]:
    """DescribeSubnets' filter values of a subnet's launch settings."""
    return {"map-public-ip-on-launch": [bool_text(s.map_public_ip_on_launch)],
            "map-customer-owned-ip-on-launch": [bool_text(s.map_customer_owned_ip_on_launch)],
            "enable-dns64": [bool_text(s.enable_dns64)], "ipv6-native": ["false"],
            "private-dns-name-options-on-launch.hostname-type": [s.hostname_type],
            "private-dns-name-options-on-launch.enable-resource-name-dns-a-record":
                [bool_text(s.enable_resource_name_dns_a_record)],
            "private-dns-name-options-on-launch.enable-resource-name-dns-aaaa-record":
                [bool_text(s.enable_resource_name_dns_aaaa_record)]}


@dataclass(frozen=True)
class Zone:
    name: str
    zone_id: str
    region: str


def zones(region: str) -> list[Zone]:
    parts = region.split("-")
    abbr = parts[0] + "".join(_DIRECTIONS.get(p, p[:1]) for p in parts[1:-1]) + parts[-1]
    letters = _ZONE_LETTERS.get(region) or \
        tuple((chr(ord("a") + i), i + 1) for i in range(_ZONE_COUNT.get(region, 3)))
    return [Zone(f"{region}{letter}", f"{abbr}-az{number}", region) for letter, number in letters]


class VpcService(VpcEndpoints, InternetGateways, NatGateways,
                 SecurityGroups, SecurityGroupRuleEdits, NetworkInterfaces, EniAttributes,
                 RouteTables, NetworkAcls, VpcCidrs, SubnetReservations, Ec2Tags,
                 Ec2Attributes, VpcDns):
    def __init__(self, settings: Settings, names: Names, db: Database, net: NetThread) -> None:
        self.settings = settings
        self.names = names
        self.db = db
        self.net = net
        self.store = Ec2Store(db)
        self.attributes = AttributeStore(db)
        self.routes = RouteStore(db)
        self.acls = NetworkAclStore(db)
        self.vpc_cidr_store = VpcCidrStore(db)
        self.reservations = SubnetReservationStore(db)
        self.gateway_store = GatewayStore(db)
        self.nat_store = NatGatewayStore(db)
        self.public_ips = PublicIpStore(db)
        self._apply_lock = asyncio.Lock()
        # reconcile() calls asked for / served: one run serves every call made before it began
        self._reconcile_asked = 0
        self._reconcile_served = 0
        self._verify_asked = False  # a reconcile(verify=True) is waiting for the lock
        self._watcher: asyncio.Task[None] | None = None
        self.ipv6 = Ipv6Addressing(self)  # service/ipv6.py: blocks and addresses
        self.egress_only = EgressOnlyGateways(self)  # egress-only IGWs, IPv6 routes
        self.private_ips = PrivateIps(self)  # service/private_ips.py: secondary IPv4
        self.resolvers = VpcResolvers(net, settings.internet_netns, settings.dns_upstreams)
        self.endpoint_store = VpcEndpointStore(db)
        self.local_ca = LocalCa(settings.data_dir)
        self.endpoint_listeners = EndpointListeners(net, self.local_ca, settings.host,
                                                    settings.port)

    # lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        await self._release_orphans()
        made = self.ensure_main_route_tables()  # VPCs stored before route tables existed
        if made:
            log.info("made the main route table of %d VPCs", made)
        made = self.ensure_default_acls()  # VPCs and subnets stored before network ACLs
        if made:
            log.info("made %d default network ACLs and associations", made)
        made = self.complete_default_vpcs()  # default VPCs stored before internet gateways
        if made:
            log.info("gave %d default VPCs their internet gateway", made)
        changes = await self.reconcile()
        log.info("VPC reconcile at start: %d changes", len(changes))
        await self.settle_nat_gateways()
        self._watcher = asyncio.create_task(self._watch_owners())

    async def stop(self) -> None:
        if self._watcher:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        async with self._apply_lock:
            await self.resolvers.close()
            await self.endpoint_listeners.close()
            await self.net.run(net_reconcile.teardown, self.names)

    async def reconcile(self, verify: bool = False) -> list[str]:
        """Make the kernel match the store; returns the changes made (none when it already did).
        Calls that queue up while a run is going share the next run: it reads the whole store,
        so it serves every change made before it began (a burst of N interface changes, e.g.
        legacy-mode cold starts, costs ~2 runs instead of N). Gateway state is read back only
        for VPCs whose gateway spec changed or whose namespace the VPC pass touched, unless
        `verify` (drift repair, the admin reconcile): then for every VPC."""
        self._reconcile_asked += 1
        ticket = self._reconcile_asked
        self._verify_asked = self._verify_asked or verify
        async with self._apply_lock:
            if self._reconcile_served >= ticket and not verify:
                return []  # a run that began after this call's change has made it
            upto = self._reconcile_asked
            verify_now, self._verify_asked = self._verify_asked, False
            snap = self.store.snapshot()  # read once for both passes
            changed: set[str] = set()
            changes = await self.net.run(net_reconcile.reconcile_snapshot, self.names, snap,
                                         changed)
            changes += await self.net.run(net_gateways.reconcile, self.gateway_desired(snap),
                                          None if verify_now else changed)
            changes += await self.net.run(net_gateways6.reconcile,
                                          self.egress_only.desired(snap),
                                          None if verify_now else changed)
            await self.sync_dns()
            self._reconcile_served = upto
            return changes

    # regions and zones ---------------------------------------------------------------------
    async def use_region(self, region: str) -> None:
        """Called before every EC2 action: a region's first use makes its default VPC."""
        if self.ensure_region(region):
            await self.reconcile()

    def ensure_region(self, region: str) -> bool:
        """Every region has a default VPC with a default subnet per zone, made on first use.
        True when this call made them."""
        if self.store.region_initialised(region):
            return False
        with self.db.transaction():
            self.store.mark_region(region)
            vpc = self._insert_vpc(region, DEFAULT_VPC_CIDR, is_default=True)
            self.give_default_vpc_internet(vpc)  # service/gateways.py
            for zone, cidr in zip(zones(region), ipam.default_subnets(DEFAULT_VPC_CIDR,
                                                                      len(zones(region)))):
                subnet = Subnet(new_id("subnet"), region, vpc.id, cidr, zone.name, True)
                self.store.add_subnet(subnet)
                self._join_default_acl(subnet)
        return True

    def availability_zones(self, region: str, names: list[str], ids: list[str],
                           filters: list[dict]) -> list[Zone]:
        check_names(filters, ["zone-name", "zone-id", "region-name", "state", "zone-type"])
        out = []
        for z in zones(region):
            if names and z.name not in names or ids and z.zone_id not in ids:
                continue
            attrs = {"zone-name": [z.name], "zone-id": [z.zone_id], "region-name": [region],
                     "state": ["available"], "zone-type": ["availability-zone"]}
            if matches(filters, attrs, {}):
                out.append(z)
        for n in names:
            if n not in {z.name for z in zones(region)}:
                raise ec2_error("InvalidParameterValue",
                                f"Invalid availability zone: [{n}]")
        return out

    def _zone(self, region: str, name: str | None, zone_id: str | None) -> Zone:
        all_zones = zones(region)
        if not name and not zone_id:
            return all_zones[0]  # AWS picks one for you [?]: the first is predictable
        for z in all_zones:
            if z.name == name or z.zone_id == zone_id:
                return z
        raise ec2_error("InvalidParameterValue",
                        f"Value ({name or zone_id}) for parameter availabilityZone is invalid. "
                        "Subnets can currently only be created in the following availability "
                        f"zones: {', '.join(z.name for z in all_zones)}.")

    # VPCs --------------------------------------------------------------------------------
    def _insert_vpc(self, region: str, cidr: str, is_default: bool) -> Vpc:
        vpc = Vpc(new_id("vpc"), region, cidr, is_default)
        self.store.add_vpc(vpc)
        self._insert_main_route_table(vpc)
        self._insert_default_acl(vpc)
        group = SecurityGroup(new_id("sg"), region, vpc.id, "default",
                              "default VPC security group")
        self.store.add_group(group)
        # AWS's default group: all traffic from its own members in, all traffic out.
        self.store.add_rule(SgRule(new_rule_id(), group.id, False, "-1", -1, -1, None, group.id))
        self.store.add_rule(SgRule(new_rule_id(), group.id, True, "-1", -1, -1, "0.0.0.0/0", None))
        return vpc

    async def create_vpc(self, region: str, cidr: str | None, tag_specs: list[dict] | None) -> Vpc:
        self.ensure_region(region)
        if not cidr:
            raise ec2_error("MissingParameter", "The request must contain the parameter cidrBlock")
        net = ipam.check_vpc_cidr(cidr)
        with self.db.transaction():
            vpc = self._insert_vpc(region, str(net), is_default=False)
            self.store.set_tags(vpc.id, self._tag_specs(tag_specs, "vpc"))
        await self.reconcile()
        return vpc

    def vpc(self, region: str, vpc_id: str) -> Vpc:
        check_id(vpc_id, "vpc", "InvalidVpcID.Malformed")
        vpc = self.store.vpc(vpc_id)
        if vpc is None or vpc.region != region:
            raise ec2_error("InvalidVpcID.NotFound", f"The vpc ID '{vpc_id}' does not exist")
        return vpc

    def describe_vpcs(self, region: str, ids: list[str], filters: list[dict]) -> list[Vpc]:
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
            blocks = self.cidr_associations(v)
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
                self.vpc_route_table_dependencies(vpc) or self.vpc_acl_dependencies(vpc) or \
                self.vpc_gateway_dependencies(vpc) or \
                self.egress_only.vpc_dependencies(vpc.id):
            raise ec2_error("DependencyViolation",
                            f"The vpc '{vpc.id}' has dependencies and cannot be deleted.")
        with self.db.transaction():
            for g in groups:
                self.store.delete_group(g.id)
            self.delete_vpc_route_tables(vpc)
            self.delete_vpc_acls(vpc)
            self.vpc_cidr_store.delete_of(vpc.id)
            self.store.delete_vpc(vpc.id)
            self.attributes.delete(vpc.id)
        await self.reconcile()

    # subnets -----------------------------------------------------------------------------
    def subnet(self, region: str, subnet_id: str) -> Subnet:
        check_id(subnet_id, "subnet", "InvalidSubnetID.Malformed")
        subnet = self.store.subnet(subnet_id)
        if subnet is None or subnet.region != region:
            raise ec2_error("InvalidSubnetID.NotFound",
                            f"The subnet ID '{subnet_id}' does not exist")
        return subnet

    def subnet_arn(self, subnet: Subnet) -> str:
        return f"arn:aws:ec2:{subnet.region}:{self.settings.account_id}:subnet/{subnet.id}"

    def available_ips(self, subnet: Subnet) -> int:
        used = len(self.private_ips.taken_in(subnet))  # primary and secondary addresses
        return ipam.capacity(subnet.cidr) - used

    def zone_of(self, subnet: Subnet) -> Zone:
        found = next((z for z in zones(subnet.region) if z.name == subnet.az), None)
        if found is None:  # stored when this region's zones were listed otherwise
            abbr = zones(subnet.region)[0].zone_id.split("-")[0]
            found = Zone(subnet.az, f"{abbr}-az{ord(subnet.az[-1]) - ord('a') + 1}",
                         subnet.region)
        return found

    async def create_subnet(self, region: str, vpc_id: str | None, cidr: str | None,
                            az: str | None, az_id: str | None,
                            tag_specs: list[dict] | None) -> Subnet:
        self.ensure_region(region)
        if not vpc_id:
            raise ec2_error("MissingParameter", "The request must contain the parameter vpcId")
        if not cidr:
            raise ec2_error("MissingParameter", "The request must contain the parameter cidrBlock")
        vpc = self.vpc(region, vpc_id)
        zone = self._zone(region, az, az_id)
        siblings = [s.cidr for s in self.store.subnets(region) if s.vpc_id == vpc.id]
        net = ipam.check_subnet_cidr(cidr, self.containing_cidr(vpc, cidr), siblings)
        subnet = Subnet(new_id("subnet"), region, vpc.id, str(net), zone.name, False)
        with self.db.transaction():
            self.store.add_subnet(subnet)
            self._join_default_acl(subnet)
            self.store.set_tags(subnet.id, self._tag_specs(tag_specs, "subnet"))
        await self.reconcile()
        return subnet

    def describe_subnets(self, region: str, ids: list[str], filters: list[dict]) -> list[Subnet]:
        self.ensure_region(region)
        check_names(filters, ["subnet-id", "vpc-id", "cidr-block", "cidr", "cidrBlock",
                              "availability-zone", "availability-zone-id", "availabilityZone",
                              "default-for-az", "defaultForAz", "state", "owner-id",
                              "available-ip-address-count", *_SUBNET_SETTING_FILTERS,
                              *_IPV6_ASSOCIATION_FILTERS[:1], *_IPV6_ASSOCIATION_FILTERS[2:],
                              "customer-owned-ipv4-pool", "outpost-arn", "subnet-arn"])
        for sid in ids:
            self.subnet(region, sid)
        tags = self.store.tags()
        out = []
        for s in self.store.subnets(region):
            z = self.zone_of(s)
            attrs = {"subnet-id": [s.id], "vpc-id": [s.vpc_id], "cidr-block": [s.cidr],
                     "cidr": [s.cidr], "cidrBlock": [s.cidr], "availability-zone": [s.az],
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
            self.delete_subnet_reservations(subnet)
            self.store.delete_subnet(subnet.id)
            self.attributes.delete(subnet.id)
        await self.reconcile()
