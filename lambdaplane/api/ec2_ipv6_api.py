"""EC2 Query actions and output shapes of IPv6 (service/ipv6.py): Associate/
DisassociateSubnetCidrBlock, Assign/UnassignIpv6Addresses, and the Ipv6CidrBlockAssociationSet
/ Ipv6Addresses fields api/ec2_api.py puts into VPCs, subnets and interfaces. Same handler
shape as ec2_api's, which merges `ACTIONS` into its table."""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from ..service.vpc import VpcService
from ..store.ec2 import Eni, Subnet, Vpc
from ..store.ec2_ipv6 import SubnetIpv6Cidr, VpcIpv6Cidr

Handler = Callable[[VpcService, str, dict[str, Any]], Awaitable[dict[str, Any]]]


def vpc_block_out(block: VpcIpv6Cidr, state: str = "associated") -> dict[str, Any]:
    return {"AssociationId": block.association_id, "Ipv6CidrBlock": block.cidr,
            "Ipv6CidrBlockState": {"State": state}, "NetworkBorderGroup": block.border_group,
            "Ipv6Pool": "Amazon", "Ipv6AddressAttribute": "private", "IpSource": "amazon"}


def subnet_block_out(block: SubnetIpv6Cidr, state: str = "associated") -> dict[str, Any]:
    return {"AssociationId": block.association_id, "Ipv6CidrBlock": block.cidr,
            "Ipv6CidrBlockState": {"State": state}, "Ipv6AddressAttribute": "private",
            "IpSource": "amazon"}


def vpc_ipv6_set(svc: VpcService, vpc: Vpc) -> list[dict[str, Any]]:
    return [vpc_block_out(b) for b in svc.ipv6.vpc_blocks(vpc.id)]


def subnet_ipv6_set(svc: VpcService, subnet: Subnet) -> list[dict[str, Any]]:
    return [subnet_block_out(b) for b in svc.ipv6.subnet_blocks(subnet.id)]


def eni_ipv6_addresses(svc: VpcService, eni: Eni) -> list[dict[str, Any]]:
    return [{"Ipv6Address": a, "IsPrimaryIpv6": False} for a in svc.ipv6.addresses_of(eni.id)]


async def associate_subnet_cidr_block(svc: VpcService, region: str,
                                      p: dict[str, Any]) -> dict[str, Any]:
    if p.get("Ipv6IpamPoolId") or p.get("Ipv6NetmaskLength"):
        svc.ipv6.check_new_subnet(region, p)  # refuses IPAM
    subnet, block = await svc.ipv6.add_subnet_block(region, p.get("SubnetId"),
                                                    p.get("Ipv6CidrBlock"))
    return {"SubnetId": subnet.id, "Ipv6CidrBlockAssociation": subnet_block_out(block)}


async def disassociate_subnet_cidr_block(svc: VpcService, region: str,
                                         p: dict[str, Any]) -> dict[str, Any]:
    subnet, block = await svc.ipv6.remove_subnet_block(region, p.get("AssociationId"))
    return {"SubnetId": subnet.id,
            "Ipv6CidrBlockAssociation": subnet_block_out(block, "disassociating")}


async def assign_ipv6_addresses(svc: VpcService, region: str,
                                p: dict[str, Any]) -> dict[str, Any]:
    eni, addresses = await svc.ipv6.assign(region, p)
    return {"NetworkInterfaceId": eni.id, "AssignedIpv6Addresses": addresses,
            "AssignedIpv6Prefixes": []}


async def unassign_ipv6_addresses(svc: VpcService, region: str,
                                  p: dict[str, Any]) -> dict[str, Any]:
    eni, addresses = await svc.ipv6.unassign(region, p)
    return {"NetworkInterfaceId": eni.id, "UnassignedIpv6Addresses": addresses,
            "UnassignedIpv6Prefixes": []}


ACTIONS: dict[str, Handler] = {
    "AssociateSubnetCidrBlock": associate_subnet_cidr_block,
    "DisassociateSubnetCidrBlock": disassociate_subnet_cidr_block,
    "AssignIpv6Addresses": assign_ipv6_addresses,
    "UnassignIpv6Addresses": unassign_ipv6_addresses,
}
