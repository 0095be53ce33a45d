"""Network ACLs as nftables chains in a VPC namespace's security group table (pure rendering;
net/security_groups.py puts them in its table so both load in one transaction).

Stateless, as on AWS: a base chain on the forward hook, ahead of the groups' stateful chain,
judges every packet that crosses a subnet boundary, both ways (including the boundary with an
internet gateway: what comes in from it meets the receiving subnet's inbound entries, replies
included), and never one that stays in its subnet: the source subnet's outbound entries, then
the destination subnet's inbound entries, each in rule-number order (first match wins), the `*`
rule dropping what none matched. Port ranges are destination ports in both directions, so the
return traffic of a connection needs its ephemeral ports allowed.

A Hyperplane ENI's port carries sandbox flows under their transit addresses (SNAT to the ENI's
address comes after the forward hook), so an entry naming addresses also matches the Hyperplane
ports whose ENI address it names, as the security groups do; an `Ipv6CidrBlock` entry those whose
ENI IPv6 address it names (the NAT66 of `Ipv6AllowedForDualStack` flows comes after it too).

In a VPC with an IPv6 block, an entry matches only its own family (`CidrBlock` or
`Ipv6CidrBlock`); the IPv6 `*` entry (32768) is the same final drop.

When every ACL in the VPC begins with "allow all" in both directions (AWS's default ACL),
nothing is rendered: the data path is the one without ACLs."""
from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ..model.network_acls import STAR_RULE, AclEntry

ANY_V4 = "0.0.0.0/0"
ANY_V6 = "::/0"
PRIORITY = "filter - 1"  # before the security groups' forward chain (priority filter)


@dataclass(frozen=True)
class AclPort:
    """A VPC-side port, its subnet, and for a Hyperplane ENI's port the ENI address (and its
    IPv6 addresses)."""
    ifname: str
    subnet_id: str
    nat_ip: str = ""
    nat_ip6: tuple[str, ...] = ()


def _name(resource_id: str) -> str:
    return resource_id.replace("-", "_")


def _allows_everything(entries: list[AclEntry], egress: bool, ipv6: bool = False) -> bool:
    """The first entry of the direction allows all; with IPv6, the first entry of each
    family (AWS's default ACL: 100 for IPv4, 101 for IPv6)."""
    if not ipv6:
        first = min((e for e in entries if e.egress == egress), key=lambda e: e.rule_number,
                    default=None)
        return first is not None and first.allow and first.protocol == "-1" and \
            first.cidr == ANY_V4
    for family_any in (ANY_V4, ANY_V6):
        v6 = family_any == ANY_V6
        first = min((e for e in entries if e.egress == egress and (":" in e.cidr) == v6),
                    key=lambda e: e.rule_number, default=None)
        if first is None or not first.allow or first.protocol != "-1" or \
                first.cidr != family_any:
            return False
    return True


def _service(e: AclEntry) -> str:
    if e.protocol in ("6", "17"):
        proto = "tcp" if e.protocol == "6" else "udp"
        if (e.from_port, e.to_port) == (0, 65535):
            return f"meta l4proto {proto}"
        ports = str(e.from_port) if e.from_port == e.to_port else f"{e.from_port}-{e.to_port}"
        return f"meta l4proto {proto} th dport {ports}"
    if e.protocol == "58":
        parts = ["meta l4proto ipv6-icmp"]
        if e.icmp_type is not None and e.icmp_type != -1:
            parts.append(f"icmpv6 type {e.icmp_type}")
            if e.icmp_code is not None and e.icmp_code != -1:
                parts.append(f"icmpv6 code {e.icmp_code}")
        return " ".join(parts)
    if e.protocol == "1":
        parts = ["meta l4proto icmp"]
        if e.icmp_type is not None and e.icmp_type != -1:
            parts.append(f"icmp type {e.icmp_type}")
            if e.icmp_code is not None and e.icmp_code != -1:
                parts.append(f"icmp code {e.icmp_code}")
        return " ".join(parts)
    return "" if e.protocol == "-1" else f"meta l4proto {int(e.protocol)}"


def entry_lines(e: AclEntry, nat_ports: Iterable[AclPort], ipv6: bool = False) -> list[str]:
    """One entry's nft rules (the address match, and the Hyperplane ports it names); with
    `ipv6`, an entry matches only its own family."""
    verdict = "return" if e.allow else "drop"
    service = _service(e)
    if e.cidr == ANY_V4:
        family = "meta nfproto ipv4" if ipv6 else ""
        return [" ".join(filter(None, [family, service, verdict]))]
    if e.cidr == ANY_V6:
        return [" ".join(filter(None, ["meta nfproto ipv6", service, verdict]))]
    if ":" in e.cidr:
        lines = [" ".join(filter(None, [f"ip6 {'daddr' if e.egress else 'saddr'} {e.cidr}",
                                         service, verdict]))]
        network6 = ipaddress.IPv6Network(e.cidr, strict=False)
        named = sorted(p.ifname for p in nat_ports
                       if any(ipaddress.IPv6Address(a) in network6 for a in p.nat_ip6))
        family = "meta nfproto ipv6"
    else:
        lines = [" ".join(filter(None, [f"ip {'daddr' if e.egress else 'saddr'} {e.cidr}",
                                         service, verdict]))]
        network = ipaddress.IPv4Network(e.cidr)
        named = sorted(p.ifname for p in nat_ports
                       if p.nat_ip and ipaddress.IPv4Address(p.nat_ip) in network)
        family = "meta nfproto ipv4" if ipv6 else ""
    if named:
        links = ", ".join(f'"{n}"' for n in named)
        lines.append(" ".join(filter(None, [f"{'oifname' if e.egress else 'iifname'} "
                                            f"{{ {links} }}", family, service, verdict])))
    return lines


def render_chains(ports: Iterable[AclPort], acl_of_subnet: Mapping[str, str],
                  entries: Iterable[AclEntry], ipv6: bool = False,
                  gateway_links: Iterable[str] = ()) -> str:
    """The ACL chains of one VPC, as lines of the security group table's body ("" when no ACL
    of the VPC can refuse anything). `gateway_links`: links to a gateway (net/gateways.py);
    what comes in through one crosses the boundary of the receiving port's subnet (its inbound
    entries judge it, as on AWS for traffic from an internet gateway); what goes out to one is
    judged by the sending subnet's outbound entries (acl_from_<subnet>)."""
    ports = sorted(ports, key=lambda p: p.ifname)
    by_acl: dict[str, list[AclEntry]] = {}
    for e in entries:
        by_acl.setdefault(e.acl_id, []).append(e)
    used = sorted({acl_of_subnet[p.subnet_id] for p in ports if p.subnet_id in acl_of_subnet})
    if not ports or all(_allows_everything(by_acl.get(a, []), egress, ipv6)
                        for a in used for egress in (False, True)):
        return ""
    nat_ports = [p for p in ports if p.nat_ip or p.nat_ip6]
    subnets = sorted({p.subnet_id for p in ports if p.subnet_id in acl_of_subnet})
    body = [f"  chain acl_forward {{\n    type filter hook forward priority {PRIORITY}; "
            "policy accept;"]
    from_map = ", ".join(f'"{p.ifname}" : jump acl_from_{_name(p.subnet_id)}' for p in ports
                         if p.subnet_id in acl_of_subnet)
    body.append(f"    iifname vmap {{ {from_map} }}")
    into_from_gateway = ", ".join(
        f'"{p.ifname}" : jump acl_{_name(acl_of_subnet[p.subnet_id])}_in'
        for p in ports if p.subnet_id in acl_of_subnet)
    links = sorted(gateway_links) if into_from_gateway else []
    if links:
        names = ", ".join(f'"{n}"' for n in links)
        body.append(f"    iifname {{ {names} }} jump acl_from_gateway")
    body.append("  }")
    if links:
        body.append(f"  chain acl_from_gateway {{\n    oifname vmap {{ {into_from_gateway} }}"
                    "\n  }")
    for subnet in subnets:
        own = ", ".join(f'"{p.ifname}"' for p in ports if p.subnet_id == subnet)
        into = ", ".join(f'"{p.ifname}" : jump acl_{_name(acl_of_subnet[p.subnet_id])}_in'
                         for p in ports if p.subnet_id != subnet and p.subnet_id in acl_of_subnet)
        body.append(f"  chain acl_from_{_name(subnet)} {{")
        body.append(f"    oifname {{ {own} }} return")  # within the subnet: no ACL
        body.append(f"    jump acl_{_name(acl_of_subnet[subnet])}_out")
        if into:
            body.append(f"    oifname vmap {{ {into} }}")
        body.append("  }")
    for acl in used:
        for egress, suffix in ((True, "out"), (False, "in")):
            body.append(f"  chain acl_{_name(acl)}_{suffix} {{")
            for e in sorted((e for e in by_acl.get(acl, [])
                             if e.egress == egress and e.rule_number < STAR_RULE),
                            key=lambda e: e.rule_number):
                body += [f"    {line}" for line in entry_lines(e, nat_ports, ipv6)]
            body.append("    drop\n  }")  # the `*` rule, whatever the store holds
    return "\n".join(body)
