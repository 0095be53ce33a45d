"""The EC2 network model VpcService serves: regions and zones, the parts' assembly, the
lifecycle (start, stop) and the one `reconcile` that has the kernel made to match the store
(service/reconciler.py). Every kind of object is a part, by composition: each holds the Ec2Core
(service/ec2_core.py: store, lookups, `ensure_region`, `reconcile`) and what else it uses
explicitly, and is reachable as an attribute: VPCs and subnets (`self.vpcs`, service/vpcs.py:
a region's default VPC on first use, AWS's rules for both), interfaces (`self.interfaces`), tags
(`self.tags`), security groups (`self.groups`, `self.rule_edits`), network ACLs
(`self.network_acls`), NAT gateways (`self.nat_gateways`), VPC endpoints (`self.endpoints`),
DNS (`self.dns`), secondary CIDR blocks (`self.cidrs`), subnet CIDR reservations, VPC/subnet
and interface attributes, IPv6 (`self.ipv6`) and secondary private addresses
(`self.private_ips`), egress-only gateways and IPv6 routes (`self.egress_only`), internet
gateways and Elastic IPs (`self.internet_gateways`) and route tables (`self.route_tables`).
VpcService binds their public methods under the same names, so api/ calls
`svc.create_tags(...)` as before. No HTTP and no kernel calls of its own."""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from ..tasks import cancel_and_wait
from ..config import Settings
from ..net import reconcile as net_reconcile
from ..net.executor import NetThread
from ..net.host_sysctls import RECORD_NAME as HOST_SYSCTLS_RECORD
from ..net.names import Names
from ..store.db import Database
from ..store.ec2 import Ec2Store, SecurityGroup, Subnet, Vpc
from ..store.ec2_attributes import AttributeStore
from ..store.ec2_network_acls import NetworkAclStore
from ..store.ec2_routes import RouteStore
from ..store.ec2_subnet_reservations import SubnetReservationStore
from ..store.ec2_vpc_cidrs import VpcCidrStore
from .ec2_attributes import Ec2Attributes
from .desired_state import (
    DesiredState, HyperplaneSource, WorkerDesired, build_desired_state, far_ends_here)
from .ec2_core import Ec2Core
from .reconciler import Reconciler
from .ec2_tags import Ec2Tags, specified_tags
from .eni_attributes import EniAttributes
from .interfaces import NetworkInterfaces
from .network_acls import NetworkAcls
from .route_tables import RouteTables
from .security_groups import SecurityGroups
from .sg_rule_edits import SecurityGroupRuleEdits
from .subnet_reservations import SubnetReservations
from .vpc_cidrs import VpcCidrs
from .vpcs import DEFAULT_VPC_CIDR as DEFAULT_VPC_CIDR
from .vpcs import VpcsAndSubnets
from .zones import Zone, availability_zones, zone_of
from .zones import zones as zones  # api/ec2_endpoints_api.py imports it from here
from .gateways import InternetGateways
from .nat_gateways import NatGateways
from ..store.nat_gateways import NatGatewayStore
from ..store.public_ips import PublicIpStore
from ..store.gateways import GatewayStore
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


class VpcService:
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
        # the one reconcile (service/reconciler.py) of the one desired state (desired_state.py)
        self.reconciler = Reconciler(names, net, self.desired_state,
                                     lambda: self.dns.sync_dns())
        self.core = Ec2Core(settings, db, self.store, self.ensure_region, self.reconcile)
        self.internet_gateways = InternetGateways(
            self.core, names, self.attributes, self.routes, self.gateway_store, self.nat_store,
            self.public_ips, self.egress_only,
            lambda vpc_id: self.route_tables.main_route_table(vpc_id),
            lambda subnet: self.subnet_settings(subnet))
        self._bind_internet_gateways(self.internet_gateways)
        self.route_tables = RouteTables(
            self.core, self.routes, self.ipv6, self.egress_only, self.vpc_cidrs,
            self.gateway_target_ok, self.live_gateway_ids, self.nat_target_ok, self.live_nat_ids)
        self._bind_route_tables(self.route_tables)
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
        self.modify_vpc_endpoint = self.endpoints.modify_vpc_endpoint
        self.endpoint_dns_entries = self.endpoints.endpoint_dns_entries
        self.dns = VpcDns(self.core, names, self.resolvers, self.endpoint_listeners,
                          self.local_ca, self.vpc_cidr_store, self.gateway_store,
                          self.vpc_attributes, self.endpoints,
                          lambda: {c.vpc_id for c in self.ipv6.store.vpc_cidrs()},
                          lambda: VpcDns.dns64_cidrs_of(
                              self.store.subnets(),
                              lambda s: self.ec2_attributes.subnet_settings(s).enable_dns64,
                              self.ipv6.subnet_cidrs))
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
        self.vpcs = VpcsAndSubnets(
            self.core, self.attributes, self.routes, self.acls, self.vpc_cidr_store,
            self.route_tables, self.network_acls, self.internet_gateways, self.cidrs,
            self.subnet_reservations, self.ipv6, self.egress_only, self.private_ips,
            self.subnet_settings)
        self.create_vpc, self.describe_vpcs = self.vpcs.create_vpc, self.vpcs.describe_vpcs
        self.delete_vpc = self.vpcs.delete_vpc
        self.subnet_arn, self.available_ips = self.vpcs.subnet_arn, self.vpcs.available_ips
        self.create_subnet = self.vpcs.create_subnet
        self.describe_subnets = self.vpcs.describe_subnets
        self.delete_subnet = self.vpcs.delete_subnet

    def _bind_internet_gateways(self, part: InternetGateways) -> None:
        """service/gateways.py's methods under the names api/, console/ and the parts call."""
        self.gateway_taggable_ids = part.gateway_taggable_ids
        self.gateway_desired = part.gateway_desired
        self.give_default_vpc_internet = part.give_default_vpc_internet
        self.complete_default_vpcs = part.complete_default_vpcs
        self.gateway_target_ok, self.live_gateway_ids = \
            part.gateway_target_ok, part.live_gateway_ids
        self.internet_gateway = part.internet_gateway
        self.create_internet_gateway = part.create_internet_gateway
        self.attach_internet_gateway = part.attach_internet_gateway
        self.detach_internet_gateway = part.detach_internet_gateway
        self.delete_internet_gateway = part.delete_internet_gateway
        self.describe_internet_gateways = part.describe_internet_gateways
        self.vpc_gateway_dependencies = part.vpc_gateway_dependencies
        self.mapped_addresses, self.launch_addresses = \
            part.mapped_addresses, part.launch_addresses
        self.give_launch_public_ip = part.give_launch_public_ip
        self.forget_launch_public_ip = part.forget_launch_public_ip
        self.public_association, self.address = part.public_association, part.address
        self.allocate_address, self.associate_address = \
            part.allocate_address, part.associate_address
        self.disassociate_address, self.release_address = \
            part.disassociate_address, part.release_address
        self.visible_address, self.describe_addresses = \
            part.visible_address, part.describe_addresses

    def _bind_route_tables(self, part: RouteTables) -> None:
        """service/route_tables.py's methods under the names api/ and the parts call."""
        self.ensure_main_route_tables = part.ensure_main_route_tables
        self.vpc_route_table_dependencies = part.vpc_route_table_dependencies
        self.delete_vpc_route_tables = part.delete_vpc_route_tables
        self.main_route_table = part.main_route_table
        self.route_table_taggable_ids = part.route_table_taggable_ids
        self.route_table, self.route_views = part.route_table, part.route_views
        self.associations_of = part.associations_of
        self.create_route_table = part.create_route_table
        self.delete_route_table = part.delete_route_table
        self.describe_route_tables = part.describe_route_tables
        self.create_route, self.replace_route = part.create_route, part.replace_route
        self.delete_route = part.delete_route
        self.associate_route_table = part.associate_route_table
        self.disassociate_route_table = part.disassociate_route_table
        self.replace_route_table_association = part.replace_route_table_association

    # what ipv6/private_ips ask of the parts ------------------------------------------------
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
        await self.endpoints.settle_endpoints()
        self._watcher = asyncio.create_task(self.interfaces.watch_owners())

    async def stop(self) -> None:
        await cancel_and_wait(self._watcher)
        async with self.reconciler.lock:
            await self.resolvers.close()
            await self.endpoint_listeners.close()
            await self.net.run(net_reconcile.teardown, self.names)

    async def reconcile(self, verify: bool = False) -> list[str]:
        """Make the kernel match the store; returns the changes made (none when it already did).
        The one reconciler's run (service/reconciler.py: its order, and how calls that queue up
        share the next run). Gateway state is read back only for VPCs whose gateway spec
        changed or whose namespace the VPC pass touched, unless `verify` (drift repair, the
        admin reconcile): then for every VPC, and the worker namespace too."""
        return (await self.reconciler.reconcile(verify)).all

    def desired_state(self, hyperplane: HyperplaneSource | None = None) -> DesiredState:
        """Everything the kernel should hold, from one read of the store
        (service/desired_state.py); `hyperplane`: the Hyperplane service's part."""
        return build_desired_state(
            lambda: far_ends_here(self.store.snapshot(), self.names), self.gateway_desired,
            self.egress_only.desired,
            WorkerDesired(self.names.worker_netns, self.settings.uplink,
                          self.settings.runtime_api_port,
                          self.settings.data_dir / HOST_SYSCTLS_RECORD), hyperplane)

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
        """A region's default VPC on first use (service/vpcs.py)."""
        made: bool = self.vpcs.ensure_region(region)
        return made

    def availability_zones(self, region: str, names: list[str], ids: list[str],
                           filters: list[dict[str, Any]]) -> list[Zone]:
        return availability_zones(region, names, ids, filters)

    def zone_of(self, subnet: Subnet) -> Zone:
        return zone_of(subnet)

    # lookups (the core's) ------------------------------------------------------------------
    def vpc(self, region: str, vpc_id: str) -> Vpc:
        return self.core.vpc(region, vpc_id)

    def subnet(self, region: str, subnet_id: str) -> Subnet:
        return self.core.subnet(region, subnet_id)

