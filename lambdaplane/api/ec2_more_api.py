"""EC2 Query actions added around the VPC core of api/ec2_api.py: VPC and subnet attributes
(Describe/ModifyVpcAttribute, ModifySubnetAttribute), the tag calls (DeleteTags,
DescribeTags), security group rules by id (ModifySecurityGroupRules,
UpdateSecurityGroupRuleDescriptions*), secondary CIDR blocks (Associate/
DisassociateVpcCidrBlock) and subnet CIDR reservations. Same shape as ec2_api's handlers:
(service, region, params) → the output dict; ec2_api merges `ACTIONS` into its table."""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from ..errors import ec2_error
from ..service.ec2_attributes import VPC_ATTRIBUTES
from ..service.ec2_paging import paginate
from ..service.vpc import VpcService
from .ec2_ipv6_api import vpc_block_out

Handler = Callable[[VpcService, str, dict[str, Any]], Awaitable[dict[str, Any]]]


async def describe_vpc_attribute(svc: VpcService, region: str,
                                 p: dict[str, Any]) -> dict[str, Any]:
    vpc, attribute, value = svc.describe_vpc_attribute(region, p.get("VpcId"),
                                                       p.get("Attribute"))
    return {"VpcId": vpc.id, VPC_ATTRIBUTES[attribute]: {"Value": value}}


async def modify_vpc_attribute(svc: VpcService, region: str, p: dict[str, Any]) -> dict[str, Any]:
    await svc.modify_vpc_attribute(region, p)
    return {}


async def modify_subnet_attribute(svc: VpcService, region: str,
                                  p: dict[str, Any]) -> dict[str, Any]:
    await svc.modify_subnet_attribute(region, p)
    return {}


async def delete_tags(svc: VpcService, region: str, p: dict[str, Any]) -> dict[str, Any]:
    if not p.get("Resources"):
        raise ec2_error("MissingParameter", "The request must contain the parameter resourceIdSet")
    await svc.delete_tags(region, p["Resources"], p.get("Tags"))
    return {}


async def describe_tags(svc: VpcService, region: str, p: dict[str, Any]) -> dict[str, Any]:
    found, token = paginate(svc.describe_tags(region, p.get("Filters") or []),
                            p.get("MaxResults"), p.get("NextToken"))
    return {"Tags": [{"ResourceId": t.resource_id, "ResourceType": t.resource_type,
                      "Key": t.key, "Value": t.value} for t in found], "NextToken": token}


async def modify_security_group_rules(svc: VpcService, region: str,
                                      p: dict[str, Any]) -> dict[str, Any]:
    await svc.modify_rules(region, p.get("GroupId"), p.get("SecurityGroupRules") or [])
    return {"Return": True}


def _update_descriptions(egress: bool) -> Handler:
    async def handler(svc: VpcService, region: str, p: dict[str, Any]) -> dict[str, Any]:
        await svc.update_rule_descriptions(region, p, egress)
        return {"Return": True}
    return handler


async def associate_vpc_cidr_block(svc: VpcService, region: str,
                                   p: dict[str, Any]) -> dict[str, Any]:
    if p.get("AmazonProvidedIpv6CidrBlock") or p.get("Ipv6Pool") or p.get("Ipv6CidrBlock") \
            or p.get("Ipv6IpamPoolId"):  # IPv6: service/ipv6.py
        vpc6, block6 = await svc.ipv6.associate_vpc_block(region, p)
        return {"VpcId": vpc6.id, "Ipv6CidrBlockAssociation": vpc_block_out(block6)}
    vpc, block = await svc.associate_vpc_cidr_block(region, p)
    return {"VpcId": vpc.id, "CidrBlockAssociation": {
        "AssociationId": block.association_id, "CidrBlock": block.cidr,
        "CidrBlockState": {"State": "associated"}}}


async def disassociate_vpc_cidr_block(svc: VpcService, region: str,
                                      p: dict[str, Any]) -> dict[str, Any]:
    if svc.ipv6.owns_association(p.get("AssociationId")):
        vpc6, block6 = await svc.ipv6.disassociate_vpc_block(region, p["AssociationId"])
        return {"VpcId": vpc6.id,
                "Ipv6CidrBlockAssociation": vpc_block_out(block6, "disassociating")}
    vpc, block = await svc.disassociate_vpc_cidr_block(region, p.get("AssociationId"))
    return {"VpcId": vpc.id, "CidrBlockAssociation": {
        "AssociationId": block.association_id, "CidrBlock": block.cidr,
        "CidrBlockState": {"State": "disassociating"}}}


def reservation_out(svc: VpcService, r: Any) -> dict[str, Any]:
    tags = svc.tags_of(r.id)
    out = {"SubnetCidrReservationId": r.id, "SubnetId": r.subnet_id, "Cidr": r.cidr,
           "ReservationType": r.reservation_type, "OwnerId": svc.settings.account_id,
           "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}
    if r.description:
        out["Description"] = r.description
    return out


async def create_subnet_cidr_reservation(svc: VpcService, region: str,
                                         p: dict[str, Any]) -> dict[str, Any]:
    reservation = await svc.create_subnet_cidr_reservation(region, p)
    return {"SubnetCidrReservation": reservation_out(svc, reservation)}


async def delete_subnet_cidr_reservation(svc: VpcService, region: str,
                                         p: dict[str, Any]) -> dict[str, Any]:
    out = None
    reservation_id = p.get("SubnetCidrReservationId")
    if reservation_id:  # describe it before it (and its tags) go
        found = [r for r in svc.reservations.all() if r.id == reservation_id]
        out = reservation_out(svc, found[0]) if found else None
    await svc.delete_subnet_cidr_reservation(region, reservation_id)
    return {"DeletedSubnetCidrReservation": out}


async def get_subnet_cidr_reservations(svc: VpcService, region: str,
                                       p: dict[str, Any]) -> dict[str, Any]:
    found, token = paginate(svc.get_subnet_cidr_reservations(region, p.get("SubnetId"),
                                                             p.get("Filters") or []),
                            p.get("MaxResults"), p.get("NextToken"))
    return {"SubnetIpv4CidrReservations": [reservation_out(svc, r) for r in found],
            "SubnetIpv6CidrReservations": [], "NextToken": token}


ACTIONS: dict[str, Handler] = {
    "DescribeVpcAttribute": describe_vpc_attribute, "ModifyVpcAttribute": modify_vpc_attribute,
    "ModifySubnetAttribute": modify_subnet_attribute, "DeleteTags": delete_tags,
    "DescribeTags": describe_tags, "ModifySecurityGroupRules": modify_security_group_rules,
    "UpdateSecurityGroupRuleDescriptionsIngress": _update_descriptions(False),
    "UpdateSecurityGroupRuleDescriptionsEgress": _update_descriptions(True),
    "AssociateVpcCidrBlock": associate_vpc_cidr_block,
    "DisassociateVpcCidrBlock": disassociate_vpc_cidr_block,
    "CreateSubnetCidrReservation": create_subnet_cidr_reservation,
    "DeleteSubnetCidrReservation": delete_subnet_cidr_reservation,
    "GetSubnetCidrReservations": get_subnet_cidr_reservations,
}
