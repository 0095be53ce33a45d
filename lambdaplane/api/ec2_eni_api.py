"""EC2 Query actions of network interface attributes: Describe/Modify/
ResetNetworkInterfaceAttribute. Same shape as api/ec2_api.py's handlers, which merges `ACTIONS`
into its table."""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from ..service.vpc import VpcService

Handler = Callable[[VpcService, str, dict[str, Any]], Awaitable[dict[str, Any]]]


async def describe_network_interface_attribute(svc: VpcService, region: str,
                                               p: dict[str, Any]) -> dict[str, Any]:
    eni, attribute = svc.describe_interface_attribute(region, p.get("NetworkInterfaceId"),
                                                      p.get("Attribute"))
    out: dict[str, Any] = {"NetworkInterfaceId": eni.id}
    if attribute == "description":
        out["Description"] = {"Value": eni.description}
    elif attribute == "groupSet":
        groups = [svc.store.group(g) for g in eni.group_ids]
        out["Groups"] = [{"GroupId": g.id, "GroupName": g.name} for g in groups if g]
    elif attribute == "sourceDestCheck":
        out["SourceDestCheck"] = {"Value": svc.source_dest_check(eni)}
    elif attribute == "attachment" and eni.status == "in-use":
        out["Attachment"] = {"AttachmentId": "ela-attach-" + eni.id[4:], "DeviceIndex": 0,
                             "Status": "attached", "DeleteOnTermination": False}
    elif attribute == "associatePublicIpAddress":
        out["AssociatePublicIpAddress"] = False
    return out


async def modify_network_interface_attribute(svc: VpcService, region: str,
                                             p: dict[str, Any]) -> dict[str, Any]:
    await svc.modify_interface_attribute(region, p)
    return {}


async def reset_network_interface_attribute(svc: VpcService, region: str,
                                            p: dict[str, Any]) -> dict[str, Any]:
    await svc.reset_interface_attribute(region, p.get("NetworkInterfaceId"),
                                        p.get("SourceDestCheck"))
    return {}


ACTIONS: dict[str, Handler] = {
    "DescribeNetworkInterfaceAttribute": describe_network_interface_attribute,
    "ModifyNetworkInterfaceAttribute": modify_network_interface_attribute,
    "ResetNetworkInterfaceAttribute": reset_network_interface_attribute,
}
