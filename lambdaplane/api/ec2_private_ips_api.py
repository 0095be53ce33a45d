"""EC2 Query actions of secondary private IPv4 addresses (service/private_ips.py):
Assign/UnassignPrivateIpAddresses, and the PrivateIpAddresses field api/ec2_api.py puts into
interfaces. Same handler shape as ec2_api's, which merges `ACTIONS` into its table."""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from ..service.eni_filters import private_dns_name
from ..service.vpc import VpcService
from ..store.ec2 import Eni

Handler = Callable[[VpcService, str, dict[str, Any]], Awaitable[dict[str, Any]]]


def private_ip_addresses(svc: VpcService, eni: Eni) -> list[dict[str, Any]]:
    return [{"Primary": address == eni.ip, "PrivateIpAddress": address,
             "PrivateDnsName": private_dns_name(eni.region, address)}
            for address in (eni.ip, *svc.private_ips.of(eni.id)) if address]


def create_params(p: dict[str, Any]) -> tuple[str | None, int | None, list[str]]:
    """CreateNetworkInterface's addresses: (primary, secondary count, secondary addresses);
    the primary is `PrivateIpAddress` or the `PrivateIpAddresses` entry marked Primary."""
    primary = p.get("PrivateIpAddress")
    secondary: list[str] = []
    for spec in p.get("PrivateIpAddresses") or []:
        if spec.get("Primary") and not primary:
            primary = spec.get("PrivateIpAddress")
        elif spec.get("PrivateIpAddress") and spec.get("PrivateIpAddress") != primary:
            secondary.append(spec["PrivateIpAddress"])
    return primary, p.get("SecondaryPrivateIpAddressCount"), secondary


async def assign_private_ip_addresses(svc: VpcService, region: str,
                                      p: dict[str, Any]) -> dict[str, Any]:
    eni, addresses = await svc.private_ips.assign(region, p)
    return {"NetworkInterfaceId": eni.id,
            "AssignedPrivateIpAddresses": [{"PrivateIpAddress": a} for a in addresses],
            "AssignedIpv4Prefixes": []}


async def unassign_private_ip_addresses(svc: VpcService, region: str,
                                        p: dict[str, Any]) -> dict[str, Any]:
    await svc.private_ips.unassign(region, p)
    return {}


ACTIONS: dict[str, Handler] = {
    "AssignPrivateIpAddresses": assign_private_ip_addresses,
    "UnassignPrivateIpAddresses": unassign_private_ip_addresses,
}
