"""EC2 Query actions of egress-only internet gateways: Create/Describe/
DeleteEgressOnlyInternetGateway(s). Same shape as api/ec2_api.py's handlers, which merges
`ACTIONS` into its table. (IPv6 routes to them are CreateRoute's, api/ec2_routes_api.py.)"""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from ..service.ec2_paging import paginate
from ..service.vpc import VpcService
from ..store.egress_only_gateways import EgressOnlyGateway

Handler = Callable[[VpcService, str, dict[str, Any]], Awaitable[dict[str, Any]]]


def gateway_out(svc: VpcService, g: EgressOnlyGateway) -> dict[str, Any]:
    return {"EgressOnlyInternetGatewayId": g.id,
            "Attachments": [{"State": "attached", "VpcId": g.vpc_id}],
            "Tags": [{"Key": k, "Value": v} for k, v in svc.tags_of(g.id).items()]}


async def create(svc: VpcService, region: str, p: dict[str, Any]) -> dict[str, Any]:
    g = await svc.egress_only.create(region, p.get("VpcId"), p.get("TagSpecifications"))
    return {"EgressOnlyInternetGateway": gateway_out(svc, g),
            "ClientToken": p.get("ClientToken")}


async def describe(svc: VpcService, region: str, p: dict[str, Any]) -> dict[str, Any]:
    found = svc.egress_only.describe(region, p.get("EgressOnlyInternetGatewayIds") or [],
                                     p.get("Filters") or [])
    page, token = paginate(found, p.get("MaxResults"), p.get("NextToken"), low=5, high=255)
    return {"EgressOnlyInternetGateways": [gateway_out(svc, g) for g in page],
            "NextToken": token}


async def delete(svc: VpcService, region: str, p: dict[str, Any]) -> dict[str, Any]:
    await svc.egress_only.delete(region, p.get("EgressOnlyInternetGatewayId"))
    return {"ReturnCode": True}


ACTIONS: dict[str, Handler] = {
    "CreateEgressOnlyInternetGateway": create,
    "DescribeEgressOnlyInternetGateways": describe,
    "DeleteEgressOnlyInternetGateway": delete,
}
