"""Internet gateways and Elastic IP addresses with AWS's rules: Create/Attach/Detach/Delete/
DescribeInternetGateways and Allocate/Associate/Disassociate/Release/DescribeAddresses, the
addresses taken from the public pool (`--public-cidr`). A part of VpcService
(service/vpc.py); writes store/gateways.py only, and asks for a reconcile after every change
that the kernel shows (net/gateways.py: the gateway link, 1:1 NAT, routes)."""
from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..errors import ec2_error
from ..net import gateways as net_gateways
from ..net.names import Names
from ..store.ec2 import Eni, Snapshot, Subnet, Vpc
from ..store.ec2_attributes import AttributeStore
from ..store.ec2_routes import Route, RouteStore
from ..store.gateways import Address, GatewayStore, InternetGateway
from ..store.nat_gateways import NatGatewayStore
from ..store.public_ips import PublicIpStore
from .ec2_attributes import SubnetSettings
from .ec2_core import Ec2Core
from .ec2_filters import check_names, matches
from .ec2_ids import IdKind, new_id
from .ec2_tags import specified_tags

if TYPE_CHECKING:
    from .egress_only_gateways import EgressOnlyGateways

log = logging.getLogger(__name__)

# An internal attribute of a default VPC: it was given its internet gateway (never shown)
INTERNET_GATEWAY = IdKind("igw", "InvalidInternetGatewayId.Malformed",
                          "InvalidInternetGatewayID.NotFound",
                          "The internetGateway ID '{id}' does not exist",
                          missing="The request must contain the parameter internetGatewayId")
ADDRESS = IdKind("eipalloc", "InvalidAllocationID.Malformed", "InvalidAllocationID.NotFound",
                 "The allocation ID '{id}' does not exist",
                 missing="The request must contain the parameter AllocationId")
# the interface AssociateAddress names (its MissingParameter text is AWS's for that action)
ADDRESS_TARGET = IdKind("eni", "InvalidNetworkInterfaceID.Malformed",
                        "InvalidNetworkInterfaceID.NotFound",
                        "The networkInterface ID '{id}' does not exist",
                        missing="Either instance ID or network interface ID must be specified")
_INTERNET_GIVEN = "lambdaplane:defaultInternetGiven"
_IGW_FILTERS = ["attachment.state", "attachment.vpc-id", "internet-gateway-id", "owner-id"]
_ADDRESS_FILTERS = ["allocation-id", "association-id", "domain", "instance-id",
                    "network-border-group", "network-interface-id",
                    "network-interface-owner-id", "private-ip-address", "public-ip",
                    "public-ipv4-pool"]


class InternetGateways:
    """The internet gateway and Elastic IP part of VpcService."""

    def __init__(self, core: Ec2Core, names: Names, attributes: AttributeStore,
                 routes: RouteStore, gateway_store: GatewayStore, nat_store: NatGatewayStore,
                 public_ips: PublicIpStore, egress_only: "EgressOnlyGateways",
                 main_route_table: Callable[[str], str | None],
                 subnet_settings: Callable[[Subnet], SubnetSettings]) -> None:
        self.core = core
        self.settings, self.db, self.store = core.settings, core.db, core.store
        self.ensure_region, self.vpc, self.reconcile = core.ensure_region, core.vpc, core.reconcile
        self.names = names
        self.attributes = attributes
        self.routes = routes
        self.gateway_store = gateway_store
        self.nat_store = nat_store
        self.public_ips = public_ips
        self.egress_only = egress_only  # service/egress_only_gateways.py: linked VPCs
        self.main_route_table = main_route_table  # service/route_tables.py
        self.subnet_settings = subnet_settings  # service/ec2_attributes.py

    def gateway_taggable_ids(self, region: str) -> set[str]:
        return {g.id for g in self.gateway_store.gateways(region)} | \
            {a.allocation_id for a in self.gateway_store.addresses(region)}

    def gateway_desired(self, snap: Snapshot | None = None) -> list[net_gateways.GatewayNetSpec]:
        """The kernel's gateways and per-subnet routing, from the store (net/gateways.py);
        `snap`: the store's snapshot, read already."""
        routes = self.routes
        snap = snap or self.store.snapshot()
        gw = self.gateway_store.snapshot()
        return net_gateways.desired_state(
            self.names, self.settings.internet_netns, snap.vpcs, snap.subnets,
            snap.enis, routes.tables(), routes.routes(), routes.associations(), gw.gateways,
            gw.addresses + self.launch_addresses(), self.nat_store.all(),
            self.settings.nat_connections_per_destination, self.settings.nat_idle_timeout_s,
            self.egress_only.linked_vpcs())

    def give_default_vpc_internet(self, vpc: Vpc) -> None:
        """What AWS gives a default VPC: an internet gateway attached, and the main route
        table sending 0.0.0.0/0 to it (inside the caller's transaction). Given once: what the
        user then changes (a gateway detached, the route deleted) stays changed."""
        self.attributes.set(vpc.id, _INTERNET_GIVEN, "true")
        if any(g.vpc_id == vpc.id for g in self.gateway_store.gateways()):
            return  # one of the user's is attached already
        g = InternetGateway(new_id("igw"), vpc.region, vpc.id)
        self.gateway_store.put_gateway(g)
        main = self.main_route_table(vpc.id)
        if main is not None and not any(
                r.destination == "0.0.0.0/0"
                for r in self.routes.routes() if r.route_table_id == main):
            self.routes.put_route(Route(main, "0.0.0.0/0", "GatewayId",
                                        g.id, "CreateRoute"))

    def complete_default_vpcs(self) -> int:
        """Default VPCs stored before they were given an internet gateway get it now (at
        start); how many did."""
        todo = [v for v in self.store.vpcs() if v.is_default and
                _INTERNET_GIVEN not in self.attributes.of(v.id)]
        with self.db.transaction():
            for vpc in todo:
                self.give_default_vpc_internet(vpc)
        return len(todo)

    # route targets (service/route_tables.py asks) -----------------------------------------
    def gateway_target_ok(self, vpc_id: str, region: str, gateway_id: str) -> bool:
        """Whether CreateRoute's GatewayId names an internet gateway attached to the VPC."""
        g = self.gateway_store.gateway(gateway_id)
        if g is None or g.region != region:
            return False
        if g.vpc_id != vpc_id:
            raise ec2_error("InvalidParameterValue",
                            f"route table and network gateway {gateway_id} belong to "
                            "different networks")
        return True

    def live_gateway_ids(self) -> set[str]:
        """Gateways a route may lead to: the internet gateways attached to a VPC."""
        return {g.id for g in self.gateway_store.gateways() if g.vpc_id}

    # internet gateways ---------------------------------------------------------------------
    def internet_gateway(self, region: str, gateway_id: str | None) -> InternetGateway:
        return INTERNET_GATEWAY.find(region, gateway_id, self.gateway_store.gateway)

    async def create_internet_gateway(self, region: str,
                                      tag_specs: list[dict[str, Any]] | None) -> InternetGateway:
        self.ensure_region(region)
        g = InternetGateway(new_id("igw"), region, None)
        with self.db.transaction():
            self.gateway_store.put_gateway(g)
            self.store.set_tags(g.id, specified_tags(tag_specs, "internet-gateway"))
        return g

    async def attach_internet_gateway(self, region: str, gateway_id: str | None,
                                      vpc_id: str | None) -> None:
        g = self.internet_gateway(region, gateway_id)
        if not vpc_id:
            raise ec2_error("MissingParameter", "The request must contain the parameter vpcId")
        vpc = self.vpc(region, vpc_id)
        if g.vpc_id is not None:
            raise ec2_error("Resource.AlreadyAssociated",
                            f"resource {g.id} is already attached to network {g.vpc_id}")
        if any(o.vpc_id == vpc.id for o in self.gateway_store.gateways()):
            raise ec2_error("Resource.AlreadyAssociated",
                            f"Network {vpc.id} already has an internet gateway attached")
        with self.db.transaction():
            self.gateway_store.put_gateway(InternetGateway(g.id, g.region, vpc.id))
        await self.reconcile()

    async def detach_internet_gateway(self, region: str, gateway_id: str | None,
                                      vpc_id: str | None) -> None:
        g = self.internet_gateway(region, gateway_id)
        if not vpc_id:
            raise ec2_error("MissingParameter", "The request must contain the parameter vpcId")
        vpc = self.vpc(region, vpc_id)
        if g.vpc_id != vpc.id:
            raise ec2_error("Gateway.NotAttached",
                            f"resource {g.id} is not attached to network {vpc.id}")
        if self.mapped_addresses(vpc.id):
            raise ec2_error("DependencyViolation",
                            f"Network {vpc.id} has some mapped public address(es). Please unmap "
                            "those public address(es) before detaching the gateway.")
        with self.db.transaction():
            self.gateway_store.put_gateway(InternetGateway(g.id, g.region, None))
        await self.reconcile()

    async def delete_internet_gateway(self, region: str, gateway_id: str | None) -> None:
        g = self.internet_gateway(region, gateway_id)
        if g.vpc_id is not None:
            raise ec2_error("DependencyViolation",
                            f"The internetGateway '{g.id}' has dependencies and cannot be "
                            "deleted.")
        with self.db.transaction():
            self.gateway_store.delete_gateway(g.id)
            self.store.delete_tags(g.id)
        await self.reconcile()  # routes to it become blackholes

    def describe_internet_gateways(self, region: str, ids: list[str],
                                   filters: list[dict[str, Any]]) -> list[InternetGateway]:
        self.ensure_region(region)
        check_names(filters, _IGW_FILTERS)
        for gid in ids:
            self.internet_gateway(region, gid)
        tags = self.store.tags()
        return [g for g in self.gateway_store.gateways(region)
                if (not ids or g.id in ids) and matches(filters, {
                    "attachment.state": ["available"] if g.vpc_id else [],
                    "attachment.vpc-id": [g.vpc_id] if g.vpc_id else [],
                    "internet-gateway-id": [g.id],
                    "owner-id": [self.settings.account_id]}, tags.get(g.id, {}))]

    def vpc_gateway_dependencies(self, vpc: Vpc) -> bool:
        """DeleteVpc: an attached internet gateway keeps the VPC."""
        return any(g.vpc_id == vpc.id for g in self.gateway_store.gateways())

    # Elastic IP addresses ------------------------------------------------------------------
    def mapped_addresses(self, vpc_id: str) -> list[Address]:
        enis = {e.id: e for e in self.store.enis()}
        return [a for a in self.gateway_store.addresses() + self.launch_addresses()
                if a.eni_id in enis and enis[a.eni_id].vpc_id == vpc_id]

    # public addresses given at launch (MapPublicIpOnLaunch) --------------------------------
    def launch_addresses(self) -> list[Address]:
        """Each live interface's public address given at launch, shaped as an unallocated
        address associated with it (what net/gateways.py maps 1:1 at the gateway)."""
        enis = {e.id: e for e in self.store.enis()}
        return [Address("", enis[eni_id].region, ip, None, eni_id, enis[eni_id].ip)
                for eni_id, ip in self.public_ips.all().items() if eni_id in enis]

    def give_launch_public_ip(self, eni: Eni) -> str | None:
        """A `lambdaplane run` resource launched in a subnet with MapPublicIpOnLaunch gets a
        public address from the pool (inside the caller's transaction); with the pool used
        up it launches without one (logged)."""
        subnet = self.store.subnet(eni.subnet_id)
        if subnet is None or not self.subnet_settings(
                subnet).map_public_ip_on_launch:
            return None
        live = {e.id for e in self.store.enis()}
        for stale in set(self.public_ips.all()) - live:  # an interface gone by another path
            self.public_ips.delete(stale)
        try:
            ip = self._free_public_ip()
        except Exception:
            log.warning("no public address left in %s for %s", self.settings.public_cidr,
                        eni.id)
            return None
        self.public_ips.put(eni.id, eni.region, ip)
        return ip

    def forget_launch_public_ip(self, eni_id: str) -> None:
        """Its interface goes: the address returns to the pool (inside the transaction)."""
        self.public_ips.delete(eni_id)

    def public_association(self, eni: Eni) -> dict[str, Any] | None:
        """DescribeNetworkInterfaces' Association: an Elastic IP or a launch address."""
        for a in self.gateway_store.addresses():
            if a.eni_id == eni.id:
                return {"AllocationId": a.allocation_id, "AssociationId": a.association_id,
                        "IpOwnerId": self.settings.account_id, "PublicDnsName": "",
                        "PublicIp": a.public_ip}
        ip = self.public_ips.all().get(eni.id)
        if ip is None:
            return None
        return {"IpOwnerId": "amazon", "PublicDnsName": "", "PublicIp": ip}

    def address(self, region: str, allocation_id: str | None) -> Address:
        return ADDRESS.find(region, allocation_id, lambda wanted: next(
            (a for a in self.gateway_store.addresses(region) if a.allocation_id == wanted), None))

    def _free_public_ip(self) -> str:
        pool = ipaddress.IPv4Network(self.settings.public_cidr)
        taken = {a.public_ip for a in self.gateway_store.addresses() + self.launch_addresses()}
        for host in pool.hosts():
            if str(host) not in taken:
                return str(host)
        raise ec2_error("AddressLimitExceeded",
                        "The maximum number of addresses has been reached.")

    async def allocate_address(self, region: str, params: dict[str, Any]) -> Address:
        self.ensure_region(region)
        if params.get("Domain") not in (None, "vpc"):
            raise ec2_error("InvalidParameterValue",
                            f"Value ({params['Domain']}) for parameter domain is invalid.")
        if params.get("Address") or params.get("CustomerOwnedIpv4Pool") or \
                params.get("PublicIpv4Pool") not in (None, "amazon"):
            raise ec2_error("InvalidParameterValue",  # [?] BYOIP pools do not exist here
                            "Only addresses from Amazon's pool can be allocated here")
        with self.db.transaction():
            a = Address(new_id("eipalloc"), region, self._free_public_ip())
            self.gateway_store.put_address(a)
            self.store.set_tags(a.allocation_id,
                                specified_tags(params.get("TagSpecifications"),
                                                "elastic-ip"))
        return a

    async def associate_address(self, region: str, params: dict[str, Any]) -> Address:
        self.ensure_region(region)
        if params.get("InstanceId"):
            raise ec2_error("InvalidInstanceID.NotFound",
                            f"The instance ID '{params['InstanceId']}' does not exist")
        a = self.address(region, params.get("AllocationId"))
        eni = self._eni_for(region, params.get("NetworkInterfaceId"))
        if not eni.ip:  # an IPv6-only subnet's interface (service/ipv6_only.py)
            raise ec2_error("InvalidParameterValue",  # [?] AWS's wording
                            f"Network interface {eni.id} has no private IPv4 address to "
                            "associate an Elastic IP address with.")
        private_ip = params.get("PrivateIpAddress") or eni.ip
        if private_ip != eni.ip:
            raise ec2_error("InvalidParameterValue",
                            f"The private IP address {private_ip} is not assigned to network "
                            f"interface {eni.id}")
        if not any(g.vpc_id == eni.vpc_id for g in self.gateway_store.gateways()):
            raise ec2_error("Gateway.NotAttached",
                            f"Network {eni.vpc_id} is not attached to any internet gateway")
        if self._held_by_nat_gateway(a) or eni.interface_type == "nat_gateway":
            raise ec2_error("InvalidParameterValue",  # [?] AWS's code and wording
                            f"The address {a.public_ip} or interface {eni.id} belongs to a NAT "
                            "gateway")
        if a.eni_id and not params.get("AllowReassociation"):
            raise ec2_error("Resource.AlreadyAssociated",
                            f"resource {a.allocation_id} is already associated with "
                            f"associate-id {a.association_id}")
        with self.db.transaction():
            for other in self.gateway_store.addresses():  # one public address per private one
                if other.eni_id == eni.id and other.allocation_id != a.allocation_id:
                    self.gateway_store.put_address(Address(other.allocation_id, other.region,
                                                           other.public_ip))
            a = Address(a.allocation_id, a.region, a.public_ip, new_id("eipassoc"), eni.id,
                        private_ip)
            self.gateway_store.put_address(a)
        await self.reconcile()
        return a

    def _eni_for(self, region: str, eni_id: str | None) -> Eni:
        return ADDRESS_TARGET.find(region, eni_id, self.store.eni)

    async def disassociate_address(self, region: str, association_id: str | None) -> None:
        self.ensure_region(region)
        if not association_id:
            raise ec2_error("MissingParameter",
                            "The request must contain the parameter AssociationId")
        a = next((x for x in self.gateway_store.addresses(region)
                  if x.association_id == association_id), None)
        if a is None:
            raise ec2_error("InvalidAssociationID.NotFound",
                            f"The association ID '{association_id}' does not exist")
        if self._held_by_nat_gateway(a):
            raise ec2_error("InvalidParameterValue",  # [?] AWS's code and wording
                            f"The address {a.public_ip} is used by a NAT gateway; delete the "
                            "NAT gateway to free it")
        with self.db.transaction():
            self.gateway_store.put_address(Address(a.allocation_id, a.region, a.public_ip))
        await self.reconcile()

    def _held_by_nat_gateway(self, a: Address) -> bool:
        eni = self.store.eni(a.eni_id) if a.eni_id else None
        return eni is not None and eni.interface_type == "nat_gateway"

    async def release_address(self, region: str, allocation_id: str | None) -> None:
        a = self.address(region, allocation_id)
        if a.eni_id and self.store.eni(a.eni_id) is not None:
            raise ec2_error("InvalidIPAddress.InUse", "Address is in use")
        with self.db.transaction():
            self.gateway_store.delete_address(a.allocation_id)
            self.store.delete_tags(a.allocation_id)

    def visible_address(self, a: Address) -> Address:
        """An address whose interface has gone is no longer associated (as on AWS)."""
        if a.eni_id and self.store.eni(a.eni_id) is None:
            return Address(a.allocation_id, a.region, a.public_ip)
        return a

    def describe_addresses(self, region: str, params: dict[str, Any]) -> list[Address]:
        self.ensure_region(region)
        filters = params.get("Filters") or []
        check_names(filters, _ADDRESS_FILTERS)
        ids = params.get("AllocationIds") or []
        ips = params.get("PublicIps") or []
        for aid in ids:
            self.address(region, aid)
        known = {a.public_ip for a in self.gateway_store.addresses(region)}
        for ip in ips:
            if ip not in known:
                raise ec2_error("InvalidAddress.NotFound",
                                f"Address '{ip}' not found.")
        tags = self.store.tags()
        out = []
        for a in map(self.visible_address, self.gateway_store.addresses(region)):
            attrs = {"allocation-id": [a.allocation_id], "domain": ["vpc"],
                     "association-id": [a.association_id] if a.association_id else [],
                     "network-border-group": [region], "public-ip": [a.public_ip],
                     "network-interface-id": [a.eni_id] if a.eni_id else [],
                     "network-interface-owner-id":
                         [self.settings.account_id] if a.eni_id else [],
                     "private-ip-address": [a.private_ip] if a.private_ip else [],
                     "public-ipv4-pool": ["amazon"]}
            if (not ids or a.allocation_id in ids) and (not ips or a.public_ip in ips) \
                    and matches(filters, attrs, tags.get(a.allocation_id, {})):
                out.append(a)
        return out
