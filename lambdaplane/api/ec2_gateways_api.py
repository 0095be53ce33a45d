"""EC2 Query actions of internet gateways, Elastic IPs and NAT gateways: Create/Attach/Detach/
Delete/DescribeInternetGateways, Allocate/Associate/Disassociate/Release/DescribeAddresses,
Create/Delete/DescribeNatGateways. Also
makes the route table actions take effect in the kernel at once (a reconcile after each).
Same shape as api/ec2_api.py's handlers, which merges `ACTIONS` into its table."""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from ..service.ec2_paging import paginate
from ..service.vpc import VpcService
from ..store.gateways import Address, InternetGateway
from ..store.nat_gateways import NatGateway
from . import ec2_routes_api

Handler = Callable[[VpcService, str, dict[str, Any]], Awaitable[dict[str, Any]]]


def _tags(svc: VpcService, resource_id: str) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in svc.tags_of(resource_id).items()]


def internet_gateway_out(svc: VpcService, g: InternetGateway) -> dict[str, Any]:
    return {"InternetGatewayId": g.id, "OwnerId": svc.settings.account_id,
            "Attachments": [{"State": "available", "VpcId": g.vpc_id}] if g.vpc_id else [],
            "Tags": _tags(svc, g.id)}


def address_out(svc: VpcService, a: Address) -> dict[str, Any]:
    out: dict[str, Any] = {"PublicIp": a.public_ip, "AllocationId": a.allocation_id,
                           "Domain": "vpc", "PublicIpv4Pool": "amazon",
                           "NetworkBorderGroup": a.region, "Tags": _tags(svc, a.allocation_id)}
    if a.association_id:
        out.update({"AssociationId": a.association_id, "NetworkInterfaceId": a.eni_id,
                    "NetworkInterfaceOwnerId": svc.settings.account_id,
                    "PrivateIpAddress": a.private_ip})
    return out


async def create_internet_gateway(svc: VpcService, region: str,
                                  p: dict[str, Any]) -> dict[str, Any]:
    g = await svc.create_internet_gateway(region, p.get("TagSpecifications"))
    return {"InternetGateway": internet_gateway_out(svc, g)}


async def attach_internet_gateway(svc: VpcService, region: str,
                                  p: dict[str, Any]) -> dict[str, Any]:
    await svc.attach_internet_gateway(region, p.get("InternetGatewayId"), p.get("VpcId"))
    return {}


async def detach_internet_gateway(svc: VpcService, region: str,
                                  p: dict[str, Any]) -> dict[str, Any]:
    await svc.detach_internet_gateway(region, p.get("InternetGatewayId"), p.get("VpcId"))
    return {}


async def delete_internet_gateway(svc: VpcService, region: str,
                                  p: dict[str, Any]) -> dict[str, Any]:
    await svc.delete_internet_gateway(region, p.get("InternetGatewayId"))
    return {}


async def describe_internet_gateways(svc: VpcService, region: str,
                                     p: dict[str, Any]) -> dict[str, Any]:
    found = svc.describe_internet_gateways(region, p.get("InternetGatewayIds") or [],
                                           p.get("Filters") or [])
    page, token = paginate(found, p.get("MaxResults"), p.get("NextToken"), low=5, high=1000)
    return {"InternetGateways": [internet_gateway_out(svc, g) for g in page],
            "NextToken": token}


async def allocate_address(svc: VpcService, region: str, p: dict[str, Any]) -> dict[str, Any]:
    a = await svc.allocate_address(region, p)
    return {"PublicIp": a.public_ip, "AllocationId": a.allocation_id, "Domain": "vpc",
            "PublicIpv4Pool": "amazon", "NetworkBorderGroup": region}


async def associate_address(svc: VpcService, region: str, p: dict[str, Any]) -> dict[str, Any]:
    a = await svc.associate_address(region, p)
    return {"AssociationId": a.association_id}


async def disassociate_address(svc: VpcService, region: str,
                               p: dict[str, Any]) -> dict[str, Any]:
    await svc.disassociate_address(region, p.get("AssociationId"))
    return {}


async def release_address(svc: VpcService, region: str, p: dict[str, Any]) -> dict[str, Any]:
    await svc.release_address(region, p.get("AllocationId"))
    return {}


async def describe_addresses(svc: VpcService, region: str, p: dict[str, Any]) -> dict[str, Any]:
    return {"Addresses": [address_out(svc, a) for a in svc.describe_addresses(region, p)]}


def _time(t: float) -> str:
    import datetime

    return datetime.datetime.fromtimestamp(t, datetime.UTC).strftime(
        "%Y-%m-%dT%H:%M:%S.000Z")


def nat_gateway_out(svc: VpcService, n: NatGateway) -> dict[str, Any]:
    address: dict[str, Any] = {"NetworkInterfaceId": n.eni_id, "PrivateIp": n.private_ip,
                               "IsPrimary": True,
                               "Status": "succeeded" if n.state != "deleted" else "deleted"}
    if n.allocation_id:
        address.update({"AllocationId": n.allocation_id, "PublicIp": n.public_ip})
        assoc = next((a.association_id for a in svc.gateway_store.addresses()
                      if a.allocation_id == n.allocation_id and a.eni_id == n.eni_id), None)
        if assoc:
            address["AssociationId"] = assoc
    out: dict[str, Any] = {"NatGatewayId": n.id, "SubnetId": n.subnet_id, "VpcId": n.vpc_id,
                           "State": n.state, "ConnectivityType": n.connectivity,
                           "CreateTime": _time(n.created), "NatGatewayAddresses": [address],
                           "Tags": _tags(svc, n.id)}
    if n.deleted is not None:
        out["DeleteTime"] = _time(n.deleted)
    return out


async def create_nat_gateway(svc: VpcService, region: str, p: dict[str, Any]) -> dict[str, Any]:
    n = await svc.create_nat_gateway(region, p)
    return {"NatGateway": nat_gateway_out(svc, n), "ClientToken": p.get("ClientToken")}


async def delete_nat_gateway(svc: VpcService, region: str, p: dict[str, Any]) -> dict[str, Any]:
    n = await svc.delete_nat_gateway(region, p.get("NatGatewayId"))
    return {"NatGatewayId": n.id}


async def describe_nat_gateways(svc: VpcService, region: str,
                                p: dict[str, Any]) -> dict[str, Any]:
    found = svc.describe_nat_gateways(region, p)
    page, token = paginate(found, p.get("MaxResults"), p.get("NextToken"), low=5, high=1000)
    return {"NatGateways": [nat_gateway_out(svc, n) for n in page], "NextToken": token}


def _reconciling(handler: Handler) -> Handler:
    """A route table action, then the kernel made to match (routes take effect at once)."""
    async def run(svc: VpcService, region: str, p: dict[str, Any]) -> dict[str, Any]:
        out = await handler(svc, region, p)
        await svc.reconcile()
        return out
    return run


ACTIONS: dict[str, Handler] = {
    "CreateInternetGateway": create_internet_gateway,
    "AttachInternetGateway": attach_internet_gateway,
    "DetachInternetGateway": detach_internet_gateway,
    "DeleteInternetGateway": delete_internet_gateway,
    "DescribeInternetGateways": describe_internet_gateways,
    "AllocateAddress": allocate_address, "AssociateAddress": associate_address,
    "DisassociateAddress": disassociate_address, "ReleaseAddress": release_address,
    "DescribeAddresses": describe_addresses,
    "CreateNatGateway": create_nat_gateway, "DeleteNatGateway": delete_nat_gateway,
    "DescribeNatGateways": describe_nat_gateways,
}
ACTIONS.update({name: _reconciling(handler) for name, handler in ec2_routes_api.ACTIONS.items()
                if not name.startswith("Describe")})
