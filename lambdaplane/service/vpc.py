"""The EC2 network model VpcService serves: regions (a default VPC on first use), zones,
VPCs and subnets with AWS's rules (ids, defaults, dependencies, error codes), plus the one
`reconcile` that has the kernel made to match the store (net/reconcile.py on the net thread).
The other kinds of object are parts, by composition: each holds the Ec2Core
(service/ec2_core.py: store, lookups, `ensure_region`, `reconcile`) and what else it uses
explicitly, and is reachable as an attribute: interfaces (`self.interfaces`), tags
(`self.tags`), security groups (`self.groups`, `self.rule_edits`), network ACLs
(`self.network_acls`), NAT gateways (`self.nat_gateways`), VPC endpoints (`self.endpoints`),
DNS (`self.dns`), secondary CIDR blocks (`self.cidrs`), subnet CIDR reservations, VPC/subnet
and interface attributes, IPv6 (`self.ipv6`) and secondary private addresses
(`self.private_ips`), egress-only gateways and IPv6 routes (`self.egress_only`). VpcService
binds their public methods under the same names, so api/ calls `svc.create_tags(...)` as
before. Internet gateways and route tables are still mixins
(docs/design.md). No HTTP and no kernel calls of its own."""
from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

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
from .ec2_attributes import (
    SUBNET_SETTING_FILTERS, Ec2Attributes, subnet_setting_attributes)
from .ec2_filters import bool_text, check_names, matches
from .ec2_core import Ec2Core
from .ec2_ids import new_id
from .ec2_tags import Ec2Tags, specified_tags
from .eni_attributes import EniAttributes
from .interfaces import NetworkInterfaces
from .network_acls import NetworkAcls
from .route_tables import RouteTables
from .security_groups import SecurityGroups
from .sg_rule_edits import SecurityGroupRuleEdits
from .subnet_reservations import SubnetReservations
from .vpc_cidrs import VpcCidrs
from .zones import Zone, availability_zones, pick_zone, zone_of, zones
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
from .endpoint_proxy import EndpointListeners
from .local_ca import LocalCa
from .vpc_dns import VpcDns
from .vpc_endpoints import VpcEndpoints
from ..store.vpc_endpoints import VpcEndpointStore

log = logging.getLogger("lambdaplane.vpc")

DEFAULT_VPC_CIDR = "172.31.0.0/16"


_IPV6_ASSOCIATION_FILTERS = ("ipv6-cidr-block-association.ipv6-cidr-block",
                             "ipv6-cidr-block-association.ipv6-pool",
                             "ipv6-cidr-block-association.association-id",
                             "ipv6-cidr-block-association.state")
class VpcService(InternetGateways, RouteTables):
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
        # the parts: each holds the core (service/ec2_core.py), not the service
        self.core = Ec2Core(settings, db, self.store, self.ensure_region, self.reconcile)
        self.interfaces = NetworkInterfaces(
            self.core, names, self.attributes, self.gateway_store, self.private_ips, self.ipv6,
            self.reserved_addresses, self.give_launch_public_ip, self.forget_launch_public_ip)
        self.interface = self.interfaces.interface
        self.create_interface = self.interfaces.create_interface
        self.describe_interfaces = self.interfaces.describe_interfaces
        self.delete_interface = self.interfaces.delete_interface
        self.create_resource = self.interfaces.create_resource
        self.attach_process = self.interfaces.attach_process
        self.release_resource = self.interfaces.release_resource
        self.resources = self.interfaces.resources
        self.tags = Ec2Tags(self.core, self.more_taggable_ids)
        self.tags_of, self.taggable_ids = self.tags.tags_of, self.tags.taggable_ids
        self.create_tags, self.delete_tags = self.tags.create_tags, self.tags.delete_tags
        self.describe_tags = self.tags.describe_tags
        self.cidrs = VpcCidrs(self.core, self.routes, self.vpc_cidr_store)
        self.cidr_associations = self.cidrs.cidr_associations
        self.associate_vpc_cidr_block = self.cidrs.associate_vpc_cidr_block
        self.disassociate_vpc_cidr_block = self.cidrs.disassociate_vpc_cidr_block
        self.subnet_reservations = SubnetReservations(self.core, self.reservations)
        self.create_subnet_cidr_reservation = \
            self.subnet_reservations.create_subnet_cidr_reservation
        self.delete_subnet_cidr_reservation = \
            self.subnet_reservations.delete_subnet_cidr_reservation
        self.get_subnet_cidr_reservations = self.subnet_reservations.get_subnet_cidr_reservations
        self.groups = SecurityGroups(self.core, lambda vpc_id: bool(self.ipv6.vpc_blocks(vpc_id)))
        self.group_by_name, self.rules_of = self.groups.group_by_name, self.groups.rules_of
        self.create_security_group = self.groups.create_security_group
        self.describe_security_groups = self.groups.describe_security_groups
        self.delete_security_group = self.groups.delete_security_group
        self.authorize, self.revoke = self.groups.authorize, self.groups.revoke
        self.describe_rules = self.groups.describe_rules
        self.rule_edits = SecurityGroupRuleEdits(self.core, self.groups)
        self.modify_rules = self.rule_edits.modify_rules
        self.update_rule_descriptions = self.rule_edits.update_rule_descriptions
        self.network_acls = NetworkAcls(self.core, self.acls,
                                        lambda vpc_id: bool(self.ipv6.vpc_blocks(vpc_id)))
        self.create_network_acl = self.network_acls.create_network_acl
        self.delete_network_acl = self.network_acls.delete_network_acl
        self.describe_network_acls = self.network_acls.describe_network_acls
        self.acl_entries = self.network_acls.acl_entries
        self.acl_associations = self.network_acls.acl_associations
        self.create_network_acl_entry = self.network_acls.create_network_acl_entry
        self.replace_network_acl_entry = self.network_acls.replace_network_acl_entry
        self.delete_network_acl_entry = self.network_acls.delete_network_acl_entry
        self.replace_network_acl_association = self.network_acls.replace_network_acl_association
        self.nat_gateways = NatGateways(self.core, self.gateway_store, self.nat_store,
                                        self.create_interface, self.address)
        self.create_nat_gateway = self.nat_gateways.create_nat_gateway
        self.delete_nat_gateway = self.nat_gateways.delete_nat_gateway
        self.describe_nat_gateways = self.nat_gateways.describe_nat_gateways
        self.endpoints = VpcEndpoints(self.core, self.endpoint_store, self.create_interface,
                                      self.vpc_attributes, self.tags_of)
        self.describe_endpoint_services = self.endpoints.describe_endpoint_services
        self.create_vpc_endpoint = self.endpoints.create_vpc_endpoint
        self.describe_vpc_endpoints = self.endpoints.describe_vpc_endpoints
        self.delete_vpc_endpoints = self.endpoints.delete_vpc_endpoints
        self.endpoint_dns_entries = self.endpoints.endpoint_dns_entries
        self.dns = VpcDns(self.core, names, self.resolvers, self.endpoint_listeners,
                          self.local_ca, self.vpc_cidr_store, self.gateway_store,
                          self.vpc_attributes, self.endpoints)
        self.vpc_etc_files, self.vpc_resolv_conf = self.dns.vpc_etc_files, self.dns.vpc_resolv_conf
        self.ec2_attributes = Ec2Attributes(self.core, self.attributes,
                                            self.dns.refresh_dns_views, self.ipv6.subnet_cidrs)
        self.describe_vpc_attribute = self.ec2_attributes.describe_vpc_attribute
        self.modify_vpc_attribute = self.ec2_attributes.modify_vpc_attribute
        self.subnet_settings = self.ec2_attributes.subnet_settings
        self.modify_subnet_attribute = self.ec2_attributes.modify_subnet_attribute
        self.eni_attributes = EniAttributes(self.core, self.attributes, self.interface)
        self.source_dest_check = self.eni_attributes.source_dest_check
        self.describe_interface_attribute = self.eni_attributes.describe_interface_attribute
        self.modify_interface_attribute = self.eni_attributes.modify_interface_attribute
        self.reset_interface_attribute = self.eni_attributes.reset_interface_attribute

    # what the remaining mixins and ipv6/private_ips ask of the parts ----------------------
    def vpc_cidrs(self, vpc: Vpc) -> list[str]:
        return self.cidrs.vpc_cidrs(vpc)

    def reserved_addresses(self, subnet: Subnet) -> set[str]:
        return self.subnet_reservations.reserved_addresses(subnet)

    def vpc_attributes(self, vpc: Vpc) -> dict[str, bool]:
        return self.ec2_attributes.vpc_attributes(vpc)

    def group(self, region: str, group_id: str) -> SecurityGroup:
        return self.core.group(region, group_id)

    def live_nat_ids(self) -> set[str]:
        return self.nat_gateways.live_nat_ids()

    def nat_target_ok(self, vpc_id: str, region: str, nat_id: str) -> bool:
        return self.nat_gateways.nat_target_ok(vpc_id, region, nat_id)

    def _tag_specs(self, specs: list[dict[str, Any]] | None, resource_type: str) -> dict[str, str]:
        """For parts built around the service: service/ec2_tags.py's `specified_tags`."""
        return specified_tags(specs, resource_type)

    # lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        await self.interfaces.release_orphans()
        made = self.ensure_main_route_tables()  # VPCs stored before route tables existed
        if made:
            log.info("made the main route table of %d VPCs", made)
        # VPCs and subnets stored before network ACLs existed
        made = self.network_acls.ensure_default_acls()
        if made:
            log.info("made %d default network ACLs and associations", made)
        made = self.complete_default_vpcs()  # default VPCs stored before internet gateways
        if made:
            log.info("gave %d default VPCs their internet gateway", made)
        changes = await self.reconcile()
        log.info("VPC reconcile at start: %d changes", len(changes))
        await self.nat_gateways.settle_nat_gateways()
        self._watcher = asyncio.create_task(self.interfaces.watch_owners())

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
            await self.dns.sync_dns()
            self._reconcile_served = upto
            return changes

    def more_taggable_ids(self, region: str) -> set[str]:
        """The taggable ids of every part but the core kinds Ec2Tags lists itself."""
        return (self.route_table_taggable_ids(region)
                | self.network_acls.acl_taggable_ids(region)
                | self.subnet_reservations.reservation_taggable_ids(region)
                | self.gateway_taggable_ids(region) | self.nat_gateways.nat_taggable_ids(region)
                | self.endpoints.endpoint_taggable_ids(region)
                | self.egress_only.taggable_ids(region))

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
                self.network_acls.join_default_acl(subnet)
        return True

    def availability_zones(self, region: str, names: list[str], ids: list[str],
                           filters: list[dict[str, Any]]) -> list[Zone]:
        return availability_zones(region, names, ids, filters)

    def zone_of(self, subnet: Subnet) -> Zone:
        return zone_of(subnet)

    # VPCs --------------------------------------------------------------------------------
    def _insert_vpc(self, region: str, cidr: str, is_default: bool) -> Vpc:
        vpc = Vpc(new_id("vpc"), region, cidr, is_default)
        self.store.add_vpc(vpc)
        self._insert_main_route_table(vpc)
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

    def vpc(self, region: str, vpc_id: str) -> Vpc:
        return self.core.vpc(region, vpc_id)

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
                self.vpc_route_table_dependencies(vpc) or \
                self.network_acls.vpc_acl_dependencies(vpc) or self.vpc_gateway_dependencies(vpc) or \
                self.egress_only.vpc_dependencies(vpc.id):
            raise ec2_error("DependencyViolation",
                            f"The vpc '{vpc.id}' has dependencies and cannot be deleted.")
        with self.db.transaction():
            for g in groups:
                self.store.delete_group(g.id)
            self.delete_vpc_route_tables(vpc)
            self.network_acls.delete_vpc_acls(vpc)
            self.vpc_cidr_store.delete_of(vpc.id)
            self.store.delete_vpc(vpc.id)
            self.attributes.delete(vpc.id)
        await self.reconcile()

    # subnets -----------------------------------------------------------------------------
    def subnet(self, region: str, subnet_id: str) -> Subnet:
        return self.core.subnet(region, subnet_id)

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
