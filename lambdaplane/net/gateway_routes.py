"""Which kernel route each stored route of a VPC becomes (pure; net/gateways.py builds the
tables from these, net/routing.py makes them): an attached internet gateway (with an internet
here) → via the gateway link; a public NAT gateway that works → the same link, marked with its
realm; a network interface of the VPC → via its address out of its port; a private NAT gateway
→ wherever its own subnet's routes send the destination, marked with its realm; anything else
→ blackhole."""
from __future__ import annotations

import ipaddress
from typing import Any

from .names import port_ifname
from .routing import KernelRoute
from .vpc import INTERNET_LINK

INTERNET_SIDE_ADDR = "169.254.253.2"  # the internet end of a VPC's gateway link


def routed_to_gateway(routes: list, gateway_id: str) -> bool:  # type: ignore[type-arg]
    """A public NAT gateway works only from a subnet whose default route is the gateway."""
    return any(r.destination == "0.0.0.0/0" and r.target_id == gateway_id for r in routes)


def kernel_route(r: Any, vpc_id: str, attached: dict[str, str], has_internet: bool,
                  enis: dict[str, Any], realms: dict[str, Any]) -> KernelRoute:
    dst = str(ipaddress.IPv4Network(r.destination))
    if r.target_kind == "NatGatewayId" and r.target_id in realms:
        return KernelRoute(dst, "unicast", INTERNET_SIDE_ADDR, INTERNET_LINK,
                           realms[r.target_id][0])
    if r.target_kind == "GatewayId" and r.target_id != "local" \
            and attached.get(vpc_id) == r.target_id and has_internet:
        return KernelRoute(dst, "unicast", INTERNET_SIDE_ADDR, INTERNET_LINK)
    if r.target_kind == "NetworkInterfaceId" and r.target_id in enis \
            and enis[r.target_id].far_end is not None and r.target_id != "local" \
            and enis[r.target_id].ip:  # an IPv6-only subnet's interface takes no IPv4 route
        eni = enis[r.target_id]
        return KernelRoute(dst, "unicast", eni.ip, port_ifname(eni.id))
    return KernelRoute(dst, "blackhole")


def through_private_nat(table: list[KernelRoute], routes: list[Any],
                         private_realms: dict[str, tuple[int, str, str]],
                         routes_of: dict[str, list[Any]], vpc_id: str,
                         attached: dict[str, str], has_internet: bool,
                         enis: dict[str, Any]) -> list[KernelRoute]:
    """A route to a private NAT gateway leads where the NAT gateway's own subnet routes its
    destination (the longest of that table's routes covering it, and that table's more specific
    routes inside it), marked with the NAT gateway's realm so that its flows are translated to
    its private address. What its subnet sends to the internet gateway is dropped there (a
    private address has no way out, as on AWS); what it sends to a NAT gateway, to `local` or
    nowhere is a blackhole."""
    if not private_realms:
        return table
    out = [k for k, r in zip(table, routes) if not (
        r.target_kind == "NatGatewayId" and r.target_id in private_realms)]
    mine = {str(ipaddress.IPv4Network(r.destination)) for r in routes}
    for r in routes:
        if r.target_kind != "NatGatewayId" or r.target_id not in private_realms:
            continue
        realm, _ip, nat_table = private_realms[r.target_id]
        dst = ipaddress.IPv4Network(r.destination)
        onward = [q for q in routes_of.get(nat_table, [])
                  if q.target_kind != "NatGatewayId" and q.target_id != "local"]
        covering = max((q for q in onward if dst.subnet_of(ipaddress.IPv4Network(
            q.destination))), key=lambda q: ipaddress.IPv4Network(q.destination).prefixlen,
            default=None)
        inside = [q for q in onward if ipaddress.IPv4Network(q.destination).subnet_of(dst)
                  and ipaddress.IPv4Network(q.destination) != dst
                  and str(ipaddress.IPv4Network(q.destination)) not in mine]
        for q, at in ([(covering, str(dst))] if covering else []) + \
                [(q, str(ipaddress.IPv4Network(q.destination))) for q in inside]:
            assert q is not None
            k = kernel_route(q, vpc_id, attached, has_internet, enis, {})
            out.append(KernelRoute(at, k.kind, k.via, k.dev, realm) if k.kind == "unicast"
                       else KernelRoute(at, "blackhole"))
        if covering is None:
            out.append(KernelRoute(str(dst), "blackhole"))
    return out
