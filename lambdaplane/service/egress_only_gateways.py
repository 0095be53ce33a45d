"""Egress-only internet gateways and IPv6 routes to gateways, with AWS's rules:
Create/Describe/DeleteEgressOnlyInternetGateway, and CreateRoute/ReplaceRoute/DeleteRoute with
`DestinationIpv6CidrBlock` (to an egress-only gateway, an attached internet gateway or a network
interface of the VPC). A collaborator of VpcService (`svc.egress_only`); writes
store/egress_only_gateways.py only, and asks for a reconcile after every change the kernel
shows. The kernel side, IPv6 policy routing per subnet and the gateways' stateful rule, is
net/gateways6.py; `desired()` computes its specs from the store."""
from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Any

from ..errors import ec2_error
from ..net import gateways6, routing
from ..net.names import port_ifname
from ..store.ec2 import Snapshot
from ..store.ec2_routes import Route, RouteTable
from ..store.egress_only_gateways import EgressOnlyGateway, EgressOnlyGatewayStore
from .ec2_filters import check_names, matches
from .ec2_ids import IdKind, check_id, new_id
from .ipam import parse_ipv6_cidr
from .route_tables import TARGETS, RouteView, interface_target_ok, route_to_replace

if TYPE_CHECKING:
    from .vpc import VpcService

EGRESS_ONLY_GATEWAY = IdKind(
    "eigw", "InvalidEgressOnlyInternetGatewayId.Malformed",
    "InvalidEgressOnlyInternetGatewayId.NotFound",
    "The egressOnlyInternetGateway ID '{id}' does not exist",
    missing="The request must contain the parameter EgressOnlyInternetGatewayId")
_EIGW = "EgressOnlyInternetGatewayId"
_IPV6_TARGETS = ("GatewayId", _EIGW, "NetworkInterfaceId")


class EgressOnlyGateways:
    """The egress-only internet gateway and IPv6 route part of VpcService."""

    def __init__(self, svc: "VpcService") -> None:
        self.svc = svc
        self.store = EgressOnlyGatewayStore(svc.db)

    # gateways ----------------------------------------------------------------------------
    def gateway(self, region: str, gateway_id: str | None) -> EgressOnlyGateway:
        return EGRESS_ONLY_GATEWAY.find(region, gateway_id, self.store.gateway)

    def taggable_ids(self, region: str) -> set[str]:
        return {g.id for g in self.store.gateways(region)}

    async def create(self, region: str, vpc_id: str | None,
                     tag_specs: list[dict[str, Any]] | None) -> EgressOnlyGateway:
        self.svc.ensure_region(region)
        if not vpc_id:
            raise ec2_error("MissingParameter", "The request must contain the parameter vpcId")
        vpc = self.svc.vpc(region, vpc_id)
        g = EgressOnlyGateway(new_id("eigw"), region, vpc.id)
        with self.svc.db.transaction():
            self.store.put_gateway(g)
            self.svc.store.set_tags(g.id, self.svc._tag_specs(
                tag_specs, "egress-only-internet-gateway"))
        await self.svc.reconcile()  # the VPC gets its link to the internet
        return g

    async def delete(self, region: str, gateway_id: str | None) -> None:
        """Routes to it stay and turn `blackhole`, as on AWS."""
        self.svc.ensure_region(region)
        g = self.gateway(region, gateway_id)
        with self.svc.db.transaction():
            self.store.delete_gateway(g.id)
            self.svc.store.delete_tags(g.id)
        await self.svc.reconcile()

    def describe(self, region: str, ids: list[str],
                 filters: list[dict[str, Any]]) -> list[EgressOnlyGateway]:
        self.svc.ensure_region(region)
        check_names(filters, [])  # AWS documents tag:<key> and tag-key only
        for gid in ids:
            self.gateway(region, gid)
        tags = self.svc.store.tags()
        return [g for g in self.store.gateways(region)
                if (not ids or g.id in ids) and matches(filters, {}, tags.get(g.id, {}))]

    def vpc_dependencies(self, vpc_id: str) -> bool:
        """DeleteVpc: an egress-only internet gateway keeps its VPC."""
        return any(g.vpc_id == vpc_id for g in self.store.gateways())

    # IPv6 routes -------------------------------------------------------------------------
    def route_views(self, table_id: str) -> list[RouteView]:
        enis = {e.id for e in self.svc.store.enis()}
        live = {g.id for g in self.store.gateways()} | self.svc.live_gateway_ids()
        return [RouteView(r, "active" if r.target_id in (live | enis) else "blackhole")
                for r in self.store.routes(table_id)]

    def filter_values(self, table_id: str) -> dict[str, list[str]]:
        """What DescribeRouteTables' route.* filters see of the IPv6 routes."""
        views = self.route_views(table_id)
        return {"route.destination-ipv6-cidr-block": [v.route.destination for v in views],
                "route.origin": [v.route.origin for v in views],
                "route.state": [v.state for v in views],
                "route.gateway-id": [v.route.target_id for v in views
                                     if v.route.target_kind == "GatewayId"],
                "route.egress-only-internet-gateway-id": [
                    v.route.target_id for v in views if v.route.target_kind == _EIGW]}

    def refuse_ipv4_target(self, table: RouteTable, kind: str, value: str) -> None:
        """An IPv4 route (service/route_tables.py) to an egress-only gateway that exists: it
        carries IPv6 only."""
        g = self.store.gateway(value) if kind == _EIGW else None
        if g is not None and g.region == table.region:
            raise ec2_error("InvalidParameterValue",  # [?] AWS's wording
                            "Route target is not supported. An egress-only internet gateway "
                            "is the target of IPv6 routes only (destinationIpv6CidrBlock)")

    def _destination(self, params: dict[str, Any]) -> str:
        """The one IPv6 destination of the call (one destination per route, as on AWS)."""
        if params.get("DestinationCidrBlock") or params.get("DestinationPrefixListId"):
            raise ec2_error("InvalidParameterCombination",  # [?] AWS's wording
                            "Only one of destinationCidrBlock, destinationIpv6CidrBlock and "
                            "destinationPrefixListId may be given")
        return str(parse_ipv6_cidr(params["DestinationIpv6CidrBlock"], "destinationIpv6CidrBlock"))

    def _is_local(self, table: RouteTable, destination: str) -> bool:
        return any(b.cidr == destination for b in self.svc.ipv6.vpc_blocks(table.vpc_id))

    def _target(self, table: RouteTable, params: dict[str, Any]) -> tuple[str, str]:
        given = [k for k in TARGETS if params.get(k)]
        if not given:
            raise ec2_error("MissingParameter",  # [?] AWS's wording
                            "The request must contain exactly one of gatewayId, "
                            "egressOnlyInternetGatewayId, networkInterfaceId, …")
        if len(given) > 1:
            raise ec2_error("InvalidParameterCombination",  # [?] AWS's wording
                            f"The parameters {' and '.join(given)} cannot be used together")
        (kind,) = given
        value = params[kind]
        if kind not in _IPV6_TARGETS:
            if kind == "NatGatewayId":  # NAT64 (64:ff9b::/96) is not built here
                raise ec2_error("InvalidParameterValue",  # [?]
                                "NAT gateways as targets of IPv6 routes are not supported by "
                                "lambdaplane yet")
            code, noun = TARGETS[kind]
            raise ec2_error(code, f"The {noun} ID '{value}' does not exist")
        if kind == _EIGW:
            check_id(value, "eigw", "InvalidEgressOnlyInternetGatewayId.Malformed")
            g = self.store.gateway(value)
            if g is not None and g.region == table.region:
                if g.vpc_id != table.vpc_id:
                    raise ec2_error("InvalidParameterValue",
                                    f"route table {table.id} and network gateway {value} "
                                    "belong to different networks")
                return kind, value
        elif kind == "GatewayId" and value.startswith("igw-") and \
                self.svc.gateway_target_ok(table.vpc_id, table.region, value):
            return kind, value
        elif kind == "NetworkInterfaceId" and interface_target_ok(self.svc.store, table, value):
            return kind, value
        code, noun = TARGETS[kind]
        raise ec2_error(code, f"The {noun} ID '{value}' does not exist")

    async def create_route(self, table: RouteTable, params: dict[str, Any]) -> None:
        destination = self._destination(params)
        kind, target = self._target(table, params)
        if self._is_local(table, destination) or any(
                r.destination == destination for r in self.store.routes(table.id)):
            raise ec2_error("RouteAlreadyExists",
                            f"The route identified by {destination} already exists.")
        with self.svc.db.transaction():
            self.store.put_route(Route(table.id, destination, kind, target, "CreateRoute"))
        await self.svc.reconcile()

    async def replace_route(self, table: RouteTable, params: dict[str, Any]) -> None:
        destination = self._destination(params)
        if self._is_local(table, destination):
            raise ec2_error("InvalidParameterValue",  # [?] wording
                            f"The local route {destination} can only lead to 'local'")
        old = route_to_replace(self.store.routes(table.id), destination)
        kind, target = self._target(table, params)
        with self.svc.db.transaction():
            self.store.put_route(Route(table.id, destination, kind, target, old.origin))
        await self.svc.reconcile()

    async def delete_route(self, table: RouteTable, params: dict[str, Any]) -> None:
        destination = self._destination(params)
        if self._is_local(table, destination):
            raise ec2_error("InvalidParameterValue",
                            f"cannot remove local route {destination} in route table "
                            f"{table.id}")
        if not any(r.destination == destination for r in self.store.routes(table.id)):
            raise ec2_error("InvalidRoute.NotFound",
                            f"no route with destination-ipv6-cidr-block {destination} in "
                            f"route table {table.id}")
        with self.svc.db.transaction():
            self.store.delete_route(table.id, destination)
        await self.svc.reconcile()

    # the kernel --------------------------------------------------------------------------
    def linked_vpcs(self) -> frozenset[str]:
        """VPCs that need the gateway link for an egress-only gateway (net/gateways.py): those
        with an IPv6 block to send through it."""
        with_ipv6 = {b.vpc_id for b in self.svc.ipv6.store.vpc_cidrs()}
        return frozenset(g.vpc_id for g in self.store.gateways() if g.vpc_id in with_ipv6)

    def desired(self, snap: Snapshot) -> list[gateways6.Ipv6GatewaySpec]:
        """Each IPv6 VPC's IPv6 policy routing and gateway rule (net/gateways6.py)."""
        svc = self.svc
        ipv6 = svc.ipv6.store.snapshot()
        if not ipv6.vpc_cidrs:
            return []  # no IPv6 anywhere: nothing to route (what was made is undone)
        blocks: dict[str, list[str]] = defaultdict(list)
        for b in ipv6.vpc_cidrs:
            blocks[b.vpc_id].append(b.cidr)
        subnet_vpc = {s.id: s.vpc_id for s in snap.subnets}
        subnet_blocks: dict[str, list[str]] = defaultdict(list)
        for c in ipv6.subnet_cidrs:
            subnet_blocks[c.subnet_id].append(c.cidr)
        attached = {g.vpc_id: g.id for g in svc.gateway_store.gateways() if g.vpc_id}
        eigws: dict[str, set[str]] = defaultdict(set)
        for g in self.store.gateways():
            eigws[g.vpc_id].add(g.id)
        tables = svc.routes.tables()
        explicit = {a.subnet_id: a.route_table_id for a in svc.routes.associations()
                    if a.subnet_id}
        main = {a.route_table_id for a in svc.routes.associations() if a.main}
        routes_of: dict[str, list[Route]] = defaultdict(list)
        for r in self.store.routes():
            routes_of[r.route_table_id].append(r)
        internet = svc.settings.internet_netns or ""
        out = []
        for vpc in snap.vpcs:
            if not blocks.get(vpc.id):
                continue
            mine = sorted(t.id for t in tables if t.vpc_id == vpc.id)
            main_table = next((t for t in mine if t in main), None)
            linked = bool(internet) and (vpc.id in attached or bool(eigws.get(vpc.id)))
            # (the same rule as linked_vpcs(): this VPC has an IPv6 block)
            enis = {e.id: e for e in snap.enis if e.vpc_id == vpc.id}
            kernel_tables = {}
            open_in: list[tuple[str, str]] = []
            for rank, tid in enumerate(mine):
                routes = []
                for r in routes_of.get(tid, []):
                    to_gateway = (r.target_kind == _EIGW and r.target_id in eigws[vpc.id]) or \
                        (r.target_kind == "GatewayId" and attached.get(vpc.id) == r.target_id)
                    eni = enis.get(r.target_id) if r.target_kind == "NetworkInterfaceId" \
                        else None
                    eni_ips = ipv6.eni_addresses.get(eni.id, []) if eni else []
                    if to_gateway and linked:
                        routes.append(gateways6.Route6(r.destination, "unicast",
                                                       gateways6.INTERNET_SIDE_LL,
                                                       gateways6.LINK))
                    elif eni is not None and eni.far_end is not None and eni_ips:
                        routes.append(gateways6.Route6(r.destination, "unicast", eni_ips[0],
                                                       port_ifname(eni.id)))
                    else:
                        routes.append(gateways6.Route6(r.destination, "blackhole"))
                    if r.target_kind == "GatewayId" and to_gateway and linked:
                        for s, vid in subnet_vpc.items():
                            if vid == vpc.id and (explicit.get(s) or main_table) == tid:
                                open_in += [(c, r.destination) for c in subnet_blocks[s]]
                for block in blocks[vpc.id]:  # the local route: unheld addresses go nowhere
                    routes.append(gateways6.Route6(block, "blackhole"))
                if not any(x.dst == "::/0" for x in routes):
                    routes.append(gateways6.Route6("::/0", "blackhole"))
                kernel_tables[routing.TABLE_BASE + rank] = tuple(sorted(routes))
            rank_of = {tid: i for i, tid in enumerate(mine)}
            rules = []
            for e in enis.values():
                table_id = explicit.get(e.subnet_id) or main_table
                if e.far_end is not None and table_id in rank_of:
                    rules.append((port_ifname(e.id),
                                  routing.TABLE_BASE + rank_of[table_id or ""]))
            out.append(gateways6.Ipv6GatewaySpec(
                vpc.id, svc.names.vpc_netns(vpc.id), internet if linked else "",
                svc.names.gateway_veth(vpc.id), tuple(sorted(blocks[vpc.id])),
                kernel_tables, tuple(sorted(rules)), tuple(sorted(set(open_in))),
                f"{svc.names.prefix}-gw6"))
        return out

