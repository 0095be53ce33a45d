"""Route tables with AWS's rules: each VPC's main route table with its `local` route (made with
the VPC, and at start for VPCs stored before route tables existed), Create/Delete/Describe,
CreateRoute/ReplaceRoute/DeleteRoute with their targets checked, and the associations (subnets
and the main one). A part of VpcService (service/vpc.py), given its Ec2Core; writes
store/ec2_routes.py only.
The kernel side (policy routing per subnet, blackholes) is net/routing.py and net/gateways.py,
applied by the VPC reconcile."""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import ec2_error
from ..store.ec2 import Ec2Store, Vpc
from ..store.ec2_routes import Route, RouteStore, RouteTable, RouteTableAssociation
from .ec2_filters import bool_text, check_names, matches
from .ec2_ids import IdKind, check_id, new_id
from .ipam import parse_cidr
from .ec2_core import Ec2Core
from .ec2_tags import specified_tags

if TYPE_CHECKING:
    from .egress_only_gateways import EgressOnlyGateways
    from .ipv6 import Ipv6Addressing

ROUTE_TABLE = IdKind("rtb", "InvalidRouteTableId.Malformed", "InvalidRouteTableID.NotFound",
                     "The routeTable ID '{id}' does not exist",
                     missing="The request must contain the parameter routeTableId")
LOCAL = "local"
# CreateRoute's target members → the error of an id that names nothing. Only network
# interfaces exist here today; gateways, NAT gateways, peering… come with issue 15.
TARGETS = {
    "GatewayId": ("InvalidGatewayID.NotFound", "gateway"),
    "NatGatewayId": ("InvalidNatGatewayID.NotFound", "natGateway"),
    "NetworkInterfaceId": ("InvalidNetworkInterfaceID.NotFound", "networkInterface"),
    "InstanceId": ("InvalidInstanceID.NotFound", "instance"),
    "VpcPeeringConnectionId": ("InvalidVpcPeeringConnectionID.NotFound", "vpcPeeringConnection"),
    "TransitGatewayId": ("InvalidTransitGatewayID.NotFound", "transitGateway"),
    "EgressOnlyInternetGatewayId": ("InvalidGatewayID.NotFound", "egressOnlyInternetGateway"),
    "VpcEndpointId": ("InvalidVpcEndpointId.NotFound", "vpcEndpoint"),
    "CarrierGatewayId": ("InvalidCarrierGatewayID.NotFound", "carrierGateway"),
    "LocalGatewayId": ("InvalidLocalGatewayID.NotFound", "localGateway"),
    "CoreNetworkArn": ("InvalidParameterValue", "coreNetwork"),
    "OdbNetworkArn": ("InvalidParameterValue", "odbNetwork"),
}
ROUTE_TARGET_FILTERS = {"GatewayId": "route.gateway-id", "NatGatewayId": "route.nat-gateway-id",
                        "InstanceId": "route.instance-id",
                        "TransitGatewayId": "route.transit-gateway-id",
                        "VpcPeeringConnectionId": "route.vpc-peering-connection-id",
                        "EgressOnlyInternetGatewayId": "route.egress-only-internet-gateway-id"}
_FILTERS = ["association.gateway-id", "association.route-table-association-id",
            "association.route-table-id", "association.subnet-id", "association.main",
            "owner-id", "route-table-id", "route.destination-cidr-block",
            "route.destination-ipv6-cidr-block", "route.destination-prefix-list-id",
            "route.origin", "route.state", "vpc-id", *ROUTE_TARGET_FILTERS.values()]


def interface_target_ok(store: Ec2Store, table: RouteTable, eni_id: str) -> bool:
    """Whether network interface `eni_id`, a route's target, is there in the table's region
    (False: the caller answers NotFound); Malformed for an id not well formed,
    InvalidParameterValue for an interface in another VPC than the table's."""
    check_id(eni_id, "eni", "InvalidNetworkInterfaceID.Malformed")
    eni = store.eni(eni_id)
    if eni is None or eni.region != table.region:
        return False
    if eni.vpc_id != table.vpc_id:
        raise ec2_error("InvalidParameterValue", f"Route table {table.id} and network interface "
                        f"{eni_id} belong to different networks")
    return True


def route_to_replace(routes: Iterable[Route], destination: str) -> Route:
    """The route to `destination` that ReplaceRoute changes (IPv4 or IPv6), or AWS's error."""
    for route in routes:
        if route.destination == destination:
            return route
    raise ec2_error("InvalidParameterValue", f"There is no route defined for '{destination}' "
                    "in the route table. Use CreateRoute instead.")


@dataclass(frozen=True)
class RouteView:
    """A route as DescribeRouteTables shows it: `blackhole` when its target is gone."""
    route: Route
    state: str


class RouteTables:
    """The route table part of VpcService."""

    def __init__(self, core: Ec2Core, routes: RouteStore, ipv6: "Ipv6Addressing",
                 egress_only: "EgressOnlyGateways", vpc_cidrs: Callable[[Vpc], list[str]],
                 gateway_target_ok: Callable[[str, str, str], bool],
                 live_gateway_ids: Callable[[], set[str]],
                 nat_target_ok: Callable[[str, str, str], bool],
                 live_nat_ids: Callable[[], set[str]]) -> None:
        self.core = core
        self.settings, self.db, self.store = core.settings, core.db, core.store
        self.ensure_region, self.vpc, self.subnet = core.ensure_region, core.vpc, core.subnet
        self.routes = routes
        self.ipv6 = ipv6  # service/ipv6.py: the VPC's IPv6 blocks are `local` routes
        self.egress_only = egress_only  # service/egress_only_gateways.py: the IPv6 routes
        self.vpc_cidrs = vpc_cidrs  # service/vpc_cidrs.py
        self.gateway_target_ok = gateway_target_ok  # service/gateways.py
        self.live_gateway_ids = live_gateway_ids
        self.nat_target_ok = nat_target_ok  # service/nat_gateways.py
        self.live_nat_ids = live_nat_ids

    # made with VPCs ----------------------------------------------------------------------
    def insert_main_route_table(self, vpc: Vpc) -> RouteTable:
        table = RouteTable(new_id("rtb"), vpc.region, vpc.id)
        self.routes.add_table(table)
        self.routes.put_route(Route(table.id, vpc.cidr, "GatewayId", LOCAL, "CreateRouteTable"))
        self.routes.add_association(RouteTableAssociation(new_id("rtbassoc"), table.id, None,
                                                          True))
        return table

    def ensure_main_route_tables(self) -> int:
        """Give every stored VPC without one its main route table; how many were made."""
        have = {self.routes.table(a.route_table_id).vpc_id  # type: ignore[union-attr]
                for a in self.routes.associations() if a.main}
        missing = [v for v in self.store.vpcs() if v.id not in have]
        if missing:
            with self.db.transaction():
                for vpc in missing:
                    self.insert_main_route_table(vpc)
        return len(missing)

    def vpc_route_table_dependencies(self, vpc: Vpc) -> bool:
        """True when the VPC has route tables besides its main one (DeleteVpc refuses)."""
        main = self.main_route_table(vpc.id)
        return any(t.vpc_id == vpc.id and t.id != main for t in self.routes.tables())

    def delete_vpc_route_tables(self, vpc: Vpc) -> None:
        """In DeleteVpc's transaction: its (main) route table goes with it."""
        for t in self.routes.tables():
            if t.vpc_id == vpc.id:
                self.routes.delete_table(t.id)
                self.store.delete_tags(t.id)

    def main_route_table(self, vpc_id: str) -> str | None:
        tables = {t.id: t for t in self.routes.tables()}
        return next((a.route_table_id for a in self.routes.associations()
                     if a.main and tables[a.route_table_id].vpc_id == vpc_id), None)

    def route_table_taggable_ids(self, region: str) -> set[str]:
        return {t.id for t in self.routes.tables(region)}

    # lookups -----------------------------------------------------------------------------
    def route_table(self, region: str, table_id: str | None) -> RouteTable:
        return ROUTE_TABLE.find(region, table_id, self.routes.table)

    def route_views(self, table_id: str) -> list[RouteView]:
        enis = {e.id for e in self.store.enis()}
        gateways = self.live_gateway_ids()
        return [RouteView(r, "blackhole" if (r.target_kind == "NetworkInterfaceId"
                                             and r.target_id not in enis)
                          or (r.target_kind == "GatewayId" and r.target_id != LOCAL
                              and r.target_id not in gateways)
                          or (r.target_kind == "NatGatewayId"
                              and r.target_id not in self.live_nat_ids())
                          else "active")
                for r in self.routes.routes(table_id)]

    def associations_of(self, table_id: str) -> list[RouteTableAssociation]:
        return [a for a in self.routes.associations() if a.route_table_id == table_id]

    # tables ------------------------------------------------------------------------------
    async def create_route_table(self, region: str, vpc_id: str | None,
                                 tag_specs: list[dict[str, Any]] | None) -> RouteTable:
        self.ensure_region(region)
        if not vpc_id:
            raise ec2_error("MissingParameter", "The request must contain the parameter vpcId")
        vpc = self.vpc(region, vpc_id)
        table = RouteTable(new_id("rtb"), region, vpc.id)
        with self.db.transaction():
            self.routes.add_table(table)
            for cidr in self.vpc_cidrs(vpc):
                self.routes.put_route(Route(table.id, cidr, "GatewayId", LOCAL,
                                            "CreateRouteTable"))
            self.store.set_tags(table.id, specified_tags(tag_specs, "route-table"))
        return table

    async def delete_route_table(self, region: str, table_id: str | None) -> None:
        self.ensure_region(region)
        table = self.route_table(region, table_id)
        if self.associations_of(table.id):
            raise ec2_error("DependencyViolation",
                            f"The routeTable '{table.id}' has dependencies and cannot be "
                            "deleted.")
        with self.db.transaction():
            self.routes.delete_table(table.id)
            self.store.delete_tags(table.id)

    def describe_route_tables(self, region: str, ids: list[str],
                              filters: list[dict[str, Any]]) -> list[RouteTable]:
        self.ensure_region(region)
        check_names(filters, _FILTERS)
        for tid in ids:
            self.route_table(region, tid)
        tags = self.store.tags()
        out = []
        for t in self.routes.tables(region):
            if (not ids or t.id in ids) and matches(filters, self._filter_values(t),
                                                    tags.get(t.id, {})):
                out.append(t)
        return out

    def _filter_values(self, t: RouteTable) -> dict[str, list[str]]:
        assocs = self.associations_of(t.id)
        views = self.route_views(t.id)
        values: dict[str, list[str]] = {
            "route-table-id": [t.id], "vpc-id": [t.vpc_id],
            "owner-id": [self.settings.account_id],
            "association.route-table-association-id": [a.id for a in assocs],
            "association.route-table-id": [t.id for _ in assocs],
            "association.subnet-id": [a.subnet_id for a in assocs if a.subnet_id],
            "association.main": [bool_text(a.main) for a in assocs],
            "route.destination-cidr-block": [v.route.destination for v in views],
            # the VPC's IPv6 blocks are `local` routes of every table (service/ipv6.py)
            "route.destination-ipv6-cidr-block":
                [b.cidr for b in self.ipv6.vpc_blocks(t.vpc_id)],
            "route.origin": [v.route.origin for v in views],
            "route.state": [v.state for v in views]}
        for kind, name in ROUTE_TARGET_FILTERS.items():
            values[name] = [v.route.target_id for v in views if v.route.target_kind == kind]
        for name, more in self.egress_only.filter_values(
                t.id).items():  # the IPv6 routes (service/egress_only_gateways.py)
            values[name] = values.get(name, []) + more
        return values

    # routes ------------------------------------------------------------------------------
    def _destination(self, params: dict[str, Any]) -> str:
        if params.get("DestinationIpv6CidrBlock") or params.get("DestinationPrefixListId"):
            raise ec2_error("InvalidParameterValue",  # [?] no prefix lists here yet
                            "Prefix list destinations are not supported by lambdaplane yet")
        raw = params.get("DestinationCidrBlock")
        if not raw:
            raise ec2_error("MissingParameter",
                            "The request must contain the parameter destinationCidrBlock or "
                            "destinationIpv6CidrBlock or destinationPrefixListId")
        net = parse_cidr(raw, "destinationCidrBlock")
        if net.version != 4:
            raise ec2_error("InvalidParameterValue",
                            f"Value ({raw}) for parameter destinationCidrBlock is invalid. "
                            "This is not a valid IPv4 CIDR block.")
        return str(net)

    def _target(self, table: RouteTable, params: dict[str, Any]) -> tuple[str, str]:
        """The one target a CreateRoute/ReplaceRoute names, checked to exist in the VPC."""
        given = [k for k in TARGETS if params.get(k)]
        if params.get("LocalTarget"):
            given.append("LocalTarget")
        if not given:
            raise ec2_error("MissingParameter",  # [?] AWS's wording
                            "The request must contain exactly one of gatewayId, natGatewayId, "
                            "networkInterfaceId, instanceId, vpcPeeringConnectionId, "
                            "transitGatewayId, egressOnlyInternetGatewayId, vpcEndpointId, "
                            "carrierGatewayId, localGatewayId or coreNetworkArn")
        if len(given) > 1:
            raise ec2_error("InvalidParameterCombination",  # [?] AWS's wording
                            f"The parameters {' and '.join(given)} cannot be used together")
        (kind,) = given
        if kind == "LocalTarget" or (kind == "GatewayId" and params[kind] == LOCAL):
            return "GatewayId", LOCAL
        value = params[kind]
        if kind == "NetworkInterfaceId" and interface_target_ok(self.store, table, value):
            return kind, value
        if kind == "GatewayId" and value.startswith("igw-") and \
                self.gateway_target_ok(table.vpc_id, table.region, value):
            return kind, value
        if kind == "NatGatewayId" and value.startswith("nat-") and \
                self.nat_target_ok(table.vpc_id, table.region, value):
            return kind, value
        self.egress_only.refuse_ipv4_target(table, kind, value)
        code, noun = TARGETS[kind]
        raise ec2_error(code, f"The {noun} ID '{value}' does not exist")

    async def create_route(self, region: str, params: dict[str, Any]) -> None:
        self.ensure_region(region)
        table = self.route_table(region, params.get("RouteTableId"))
        if params.get("DestinationIpv6CidrBlock"):  # service/egress_only_gateways.py
            await self.egress_only.create_route(table, params)
            return
        destination = self._destination(params)
        kind, target = self._target(table, params)
        if any(r.destination == destination for r in self.routes.routes(table.id)):
            raise ec2_error("RouteAlreadyExists",
                            f"The route identified by {destination} already exists.")
        if target == LOCAL:
            raise ec2_error("InvalidParameterValue",  # [?] wording
                            f"Cannot create a route to 'local' for {destination}: the local "
                            "route is created with the route table")
        with self.db.transaction():
            self.routes.put_route(Route(table.id, destination, kind, target, "CreateRoute"))

    async def replace_route(self, region: str, params: dict[str, Any]) -> None:
        self.ensure_region(region)
        table = self.route_table(region, params.get("RouteTableId"))
        if params.get("DestinationIpv6CidrBlock"):  # service/egress_only_gateways.py
            await self.egress_only.replace_route(table, params)
            return
        destination = self._destination(params)
        old = route_to_replace(self.routes.routes(table.id), destination)
        kind, target = self._target(table, params)
        if (target == LOCAL and old.origin != "CreateRouteTable") or \
                (old.origin == "CreateRouteTable" and kind != "NetworkInterfaceId"
                 and target != LOCAL):
            raise ec2_error("InvalidParameterValue",  # [?] wording
                            f"The local route {destination} can only lead to 'local' or to a "
                            "network interface in the VPC")
        with self.db.transaction():
            self.routes.put_route(Route(table.id, destination, kind, target, old.origin))

    async def delete_route(self, region: str, params: dict[str, Any]) -> None:
        self.ensure_region(region)
        table = self.route_table(region, params.get("RouteTableId"))
        if params.get("DestinationIpv6CidrBlock"):  # service/egress_only_gateways.py
            await self.egress_only.delete_route(table, params)
            return
        destination = self._destination(params)
        old = next((r for r in self.routes.routes(table.id) if r.destination == destination),
                   None)
        if old is None:
            raise ec2_error("InvalidRoute.NotFound",
                            f"no route with destination-cidr-block {destination} in route "
                            f"table {table.id}")
        if old.origin == "CreateRouteTable":
            raise ec2_error("InvalidParameterValue",
                            f"cannot remove local route {destination} in route table "
                            f"{table.id}")
        with self.db.transaction():
            self.routes.delete_route(table.id, destination)

    # associations ------------------------------------------------------------------------
    def _association(self, association_id: str | None) -> RouteTableAssociation:
        if not association_id:
            raise ec2_error("MissingParameter",
                            "The request must contain the parameter associationId")
        found = next((a for a in self.routes.associations() if a.id == association_id), None)
        if found is None:
            raise ec2_error("InvalidAssociationID.NotFound",
                            f"The association ID '{association_id}' does not exist")
        return found

    async def associate_route_table(self, region: str, table_id: str | None,
                                    subnet_id: str | None,
                                    gateway_id: str | None) -> RouteTableAssociation:
        self.ensure_region(region)
        table = self.route_table(region, table_id)
        if gateway_id:
            raise ec2_error("InvalidGatewayID.NotFound",  # no gateways yet (issue 15)
                            f"The gateway ID '{gateway_id}' does not exist")
        if not subnet_id:
            raise ec2_error("MissingParameter", "The request must contain the parameter subnetId")
        subnet = self.subnet(region, subnet_id)
        if subnet.vpc_id != table.vpc_id:
            raise ec2_error("InvalidParameterValue",
                            f"Route table {table.id} and subnet {subnet.id} belong to different "
                            "networks")
        current = next((a for a in self.routes.associations() if a.subnet_id == subnet.id), None)
        if current is not None:
            raise ec2_error("Resource.AlreadyAssociated",
                            f"the specified association for route table {table.id} conflicts "
                            f"with an existing association")
        assoc = RouteTableAssociation(new_id("rtbassoc"), table.id, subnet.id, False)
        with self.db.transaction():
            self.routes.add_association(assoc)
        return assoc

    async def disassociate_route_table(self, region: str, association_id: str | None) -> None:
        self.ensure_region(region)
        assoc = self._association(association_id)
        if assoc.main:
            raise ec2_error("InvalidParameterValue",
                            f"cannot disassociate the main route table association {assoc.id}")
        with self.db.transaction():
            self.routes.delete_association(assoc.id)

    async def replace_route_table_association(self, region: str, association_id: str | None,
                                              table_id: str | None) -> RouteTableAssociation:
        """A subnet moves to another table, or the VPC's main table becomes another one; either
        way the association gets a new id."""
        self.ensure_region(region)
        old = self._association(association_id)
        table = self.route_table(region, table_id)
        old_table = self.routes.table(old.route_table_id)
        if old_table is None or old_table.region != region:
            raise ec2_error("InvalidAssociationID.NotFound",
                            f"The association ID '{old.id}' does not exist")
        if old_table.vpc_id != table.vpc_id:
            raise ec2_error("InvalidParameterValue",
                            f"Route table {table.id} and association {old.id} belong to "
                            "different networks")
        new = RouteTableAssociation(new_id("rtbassoc"), table.id, old.subnet_id, old.main)
        with self.db.transaction():
            self.routes.delete_association(old.id)
            self.routes.add_association(new)
        return new
