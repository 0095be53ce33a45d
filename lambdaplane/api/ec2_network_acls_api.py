"""EC2 Query actions of network ACLs: Create/Delete/DescribeNetworkAcls, Create/Replace/
DeleteNetworkAclEntry, ReplaceNetworkAclAssociation. Same shape as api/ec2_api.py's handlers,
which merges `ACTIONS` into its table."""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from ..service.ec2_paging import paginate
from ..service.vpc import VpcService
from ..store.ec2_network_acls import AclEntry, NetworkAcl

Handler = Callable[[VpcService, str, dict[str, Any]], Awaitable[dict[str, Any]]]


def entry_out(e: AclEntry) -> dict[str, Any]:
    out: dict[str, Any] = {"RuleNumber": e.rule_number, "Protocol": e.protocol,
                           "RuleAction": "allow" if e.allow else "deny", "Egress": e.egress,
                           ("Ipv6CidrBlock" if ":" in e.cidr else "CidrBlock"): e.cidr}
    if e.from_port is not None:
        out["PortRange"] = {"From": e.from_port, "To": e.to_port}
    if e.icmp_type is not None:
        out["IcmpTypeCode"] = {"Type": e.icmp_type, "Code": e.icmp_code}
    return out


def acl_out(svc: VpcService, acl: NetworkAcl) -> dict[str, Any]:
    tags = svc.tags_of(acl.id)
    return {"NetworkAclId": acl.id, "VpcId": acl.vpc_id, "IsDefault": acl.is_default,
            "OwnerId": svc.settings.account_id,
            "Entries": [entry_out(e) for e in svc.acl_entries(acl.id)],
            "Associations": [{"NetworkAclAssociationId": a.id, "NetworkAclId": a.acl_id,
                              "SubnetId": a.subnet_id} for a in svc.acl_associations(acl.id)],
            "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}


async def create_network_acl(svc: VpcService, region: str, p: dict[str, Any]) -> dict[str, Any]:
    acl = await svc.create_network_acl(region, p.get("VpcId"), p.get("TagSpecifications"))
    return {"NetworkAcl": acl_out(svc, acl), "ClientToken": p.get("ClientToken")}


async def delete_network_acl(svc: VpcService, region: str, p: dict[str, Any]) -> dict[str, Any]:
    await svc.delete_network_acl(region, p.get("NetworkAclId"))
    return {}


async def describe_network_acls(svc: VpcService, region: str,
                                p: dict[str, Any]) -> dict[str, Any]:
    found = svc.describe_network_acls(region, p.get("NetworkAclIds") or [],
                                      p.get("Filters") or [])
    page, token = paginate(found, p.get("MaxResults"), p.get("NextToken"))
    return {"NetworkAcls": [acl_out(svc, a) for a in page], "NextToken": token}


def _entry_call(name: str) -> Handler:
    async def handler(svc: VpcService, region: str, p: dict[str, Any]) -> dict[str, Any]:
        await getattr(svc, name)(region, p)
        return {}
    return handler


async def replace_network_acl_association(svc: VpcService, region: str,
                                          p: dict[str, Any]) -> dict[str, Any]:
    assoc = await svc.replace_network_acl_association(region, p.get("AssociationId"),
                                                      p.get("NetworkAclId"))
    return {"NewAssociationId": assoc.id}


ACTIONS: dict[str, Handler] = {
    "CreateNetworkAcl": create_network_acl, "DeleteNetworkAcl": delete_network_acl,
    "DescribeNetworkAcls": describe_network_acls,
    "CreateNetworkAclEntry": _entry_call("create_network_acl_entry"),
    "ReplaceNetworkAclEntry": _entry_call("replace_network_acl_entry"),
    "DeleteNetworkAclEntry": _entry_call("delete_network_acl_entry"),
    "ReplaceNetworkAclAssociation": replace_network_acl_association,
}
