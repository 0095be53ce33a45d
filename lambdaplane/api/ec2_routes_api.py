"""EC2 Query actions of route tables: Create/Delete/DescribeRouteTables, Create/Replace/
DeleteRoute, Associate/Disassociate/ReplaceRouteTableAssociation. Same shape as
api/ec2_api.py's handlers, which merges `ACTIONS` into its table."""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from ..service.ec2_paging import paginate
from ..service.vpc import VpcService
from ..store.ec2_routes import RouteTable, RouteTableAssociation

Handler = Callable[[VpcService, str, dict[str, Any]], Awaitable[dict[str, Any]]]


def association_out(a: RouteTableAssociation) -> dict[str, Any]:
    out: dict[str, Any] = {"Main": a.main, "RouteTableAssociationId": a.id,
                           "RouteTableId": a.route_table_id,
                           "AssociationState": {"State": "associated"}}
    if a.subnet_id:
        out["SubnetId"] = a.subnet_id
    return out


def route_table_out(svc: VpcService, t: RouteTable) -> dict[str, Any]:
    routes = []
    for view in svc.route_views(t.id):
        r = view.route
        routes.append({"DestinationCidrBlock": r.destination, r.target_kind: r.target_id,
                       "Origin": r.origin, "State": view.state})
    for block in svc.ipv6.vpc_blocks(t.vpc_id):  # each IPv6 block of the VPC: a local route
        routes.append({"DestinationIpv6CidrBlock": block.cidr, "GatewayId": "local",
                       "Origin": "CreateRouteTable", "State": "active"})
    for view in svc.egress_only.route_views(t.id):  # IPv6 routes to gateways, interfaces
        r = view.route
        routes.append({"DestinationIpv6CidrBlock": r.destination, r.target_kind: r.target_id,
                       "Origin": r.origin, "State": view.state})
    tags = svc.tags_of(t.id)
    return {"RouteTableId": t.id, "VpcId": t.vpc_id, "OwnerId": svc.settings.account_id,
            "Routes": routes, "PropagatingVgws": [],
            "Associations": [association_out(a) for a in svc.associations_of(t.id)],
            "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}


async def create_route_table(svc: VpcService, region: str, p: dict[str, Any]) -> dict[str, Any]:
    table = await svc.create_route_table(region, p.get("VpcId"), p.get("TagSpecifications"))
    return {"RouteTable": route_table_out(svc, table), "ClientToken": p.get("ClientToken")}


async def delete_route_table(svc: VpcService, region: str, p: dict[str, Any]) -> dict[str, Any]:
    await svc.delete_route_table(region, p.get("RouteTableId"))
    return {}


async def describe_route_tables(svc: VpcService, region: str,
                                p: dict[str, Any]) -> dict[str, Any]:
    found = svc.describe_route_tables(region, p.get("RouteTableIds") or [],
                                      p.get("Filters") or [])
    page, token = paginate(found, p.get("MaxResults"), p.get("NextToken"), high=100)
    return {"RouteTables": [route_table_out(svc, t) for t in page], "NextToken": token}


def _route_call(name: str) -> Handler:
    async def handler(svc: VpcService, region: str, p: dict[str, Any]) -> dict[str, Any]:
        await getattr(svc, name)(region, p)
        return {"Return": True} if name == "create_route" else {}
    return handler


async def associate_route_table(svc: VpcService, region: str,
                                p: dict[str, Any]) -> dict[str, Any]:
    assoc = await svc.associate_route_table(region, p.get("RouteTableId"), p.get("SubnetId"),
                                            p.get("GatewayId"))
    return {"AssociationId": assoc.id, "AssociationState": {"State": "associated"}}


async def disassociate_route_table(svc: VpcService, region: str,
                                   p: dict[str, Any]) -> dict[str, Any]:
    await svc.disassociate_route_table(region, p.get("AssociationId"))
    return {}


async def replace_route_table_association(svc: VpcService, region: str,
                                          p: dict[str, Any]) -> dict[str, Any]:
    assoc = await svc.replace_route_table_association(region, p.get("AssociationId"),
                                                      p.get("RouteTableId"))
    return {"NewAssociationId": assoc.id, "AssociationState": {"State": "associated"}}


ACTIONS: dict[str, Handler] = {
    "CreateRouteTable": create_route_table, "DeleteRouteTable": delete_route_table,
    "DescribeRouteTables": describe_route_tables, "CreateRoute": _route_call("create_route"),
    "ReplaceRoute": _route_call("replace_route"), "DeleteRoute": _route_call("delete_route"),
    "AssociateRouteTable": associate_route_table,
    "DisassociateRouteTable": disassociate_route_table,
    "ReplaceRouteTableAssociation": replace_route_table_association,
}
