"""IPv6 in a VPC namespace, the kernel half (net/reconcile.py calls it for VPCs with an IPv6
block; net/vpc.py says what is wanted). Routed like IPv4, without neighbour proxying: an
interface's far end holds each of its IPv6 addresses as a /128 (no on-link prefix, so every
packet, even to a neighbour in the same /64, goes to the router) with a default route via
fe80::1, the link-local router address every IPv6 port holds on the VPC side; the VPC
namespace forwards IPv6 and routes each address as a /128 to its port, where security groups
and network ACLs judge it (net/security_groups.py, net/network_acls.py; the same `inet`
table). Addresses are added without duplicate address detection: the store made them unique,
and DAD would hold each one back for a second.

Only `lambdaplane run` resources (far ends with a namespace of their own) get IPv6 here."""
from __future__ import annotations

import ipaddress
from pathlib import Path

from . import ns
from .netlink import Netlink
from .vpc import GATEWAY_LINK, RESOLVER_IPV6, PortSpec

ROUTER_LINK_LOCAL = "fe80::1"
_LINK_LOCAL = ipaddress.IPv6Network("fe80::/10")


def sysctl(key: str, value: str, netns: str, changes: list[str]) -> None:
    path = Path("/proc/sys", key.replace(".", "/"))
    with ns.entered(netns):
        if path.exists() and path.read_text().strip() != value:
            ns.set_sysctl(key, value)
            changes.append(f"set {key}={value} in {netns}")


def enable_forwarding(netns: str, changes: list[str]) -> None:
    sysctl("net.ipv6.conf.all.forwarding", "1", netns, changes)


def _is_managed(address: str) -> bool:
    """Addresses the reconciler owns: the router's fe80::1 and global ones, never the
    kernel's own link-local address of a link."""
    return address == ROUTER_LINK_LOCAL or ipaddress.IPv6Address(address) not in _LINK_LOCAL


def _ensure(nl: Netlink, link: str, wanted: set[tuple[str, int]], changes: list[str]) -> None:
    have = {a for a in nl.addresses6(link) if _is_managed(a[0])}
    for address, plen in sorted(have - wanted):
        nl.delete_address(link, address, plen)
        changes.append(f"removed {address}/{plen} from {link} in {nl.netns}")
    for address, plen in sorted(wanted - have):
        nl.add_address6(link, address, plen)
        changes.append(f"added {address}/{plen} to {link} in {nl.netns}")


def configure_port(nl: Netlink, far: Netlink, port: PortSpec, changes: list[str]) -> None:
    """The VPC side's router address and the far end's addresses and default route."""
    if not port.far.owns_netns:
        return
    wanted = {(a, 128) for a in port.ipv6}
    _ensure(nl, port.ifname, {(ROUTER_LINK_LOCAL, 64)} if wanted else set(), changes)
    _ensure(far, port.far.ifname, wanted, changes)
    if not wanted:
        return
    index = far.index(port.far.ifname)
    default = [r for r in far.routes6() if r[1] == 0 and r[0] in ("", "::")]
    if default != [("", 0, index, ROUTER_LINK_LOCAL)] and \
            default != [("::", 0, index, ROUTER_LINK_LOCAL)]:
        far.add_route6("::/0", port.far.ifname, gateway=ROUTER_LINK_LOCAL)
        changes.append(f"set IPv6 default route via {ROUTER_LINK_LOCAL} in {port.far.netns}")


def reconcile_routes(nl: Netlink, ports: list[PortSpec], changes: list[str]) -> None:
    """A /128 route per address to its port; stale /128 routes go."""
    wanted = {a: nl.index(p.ifname) for p in ports if p.far.owns_netns for a in p.ipv6}
    have = {dst: oif for dst, plen, oif, _gw in nl.routes6() if plen == 128
            and ipaddress.IPv6Address(dst) not in _LINK_LOCAL}
    for dst in sorted(set(have) - set(wanted)):
        nl.delete_route6(f"{dst}/128")
        changes.append(f"removed route {dst}/128 in {nl.netns}")
    for dst, oif in sorted(wanted.items()):
        if have.get(dst) != oif and oif is not None:
            nl.add_route6(f"{dst}/128", oif)
            changes.append(f"routed {dst}/128 to {oif} in {nl.netns}")


def reconcile_resolver(nl: Netlink, resolver6: str, changes: list[str]) -> None:
    """The resolver's IPv6 address (net/vpc.py RESOLVER_IPV6) on the namespace's loopback when
    the VPC has IPv6 (`resolver6`), and not otherwise; the loopback's other addresses (::1)
    are the kernel's."""
    have = {(a, plen) for a, plen in nl.addresses6(GATEWAY_LINK) if a == RESOLVER_IPV6}
    wanted = {(resolver6, 128)} if resolver6 else set()
    for address, plen in sorted(have - wanted):
        nl.delete_address(GATEWAY_LINK, address, plen)
        changes.append(f"removed {address}/{plen} from {GATEWAY_LINK} in {nl.netns}")
    for address, plen in sorted(wanted - have):
        nl.add_address6(GATEWAY_LINK, address, plen)
        changes.append(f"added {address}/{plen} to {GATEWAY_LINK} in {nl.netns}")
