"""Security groups as one nftables table in a VPC namespace. Pure rendering: ports and group
rules in, an nft script out (applied elsewhere as one transaction).

Every packet between two interfaces is forwarded by the VPC namespace, so the forward chain is
where groups are enforced, statefully: established/related traffic passes; a new flow must
match an egress rule of one of the sender's groups *and* an ingress rule of one of the
receiver's groups; everything else is dropped (the peer sees a time-out, as in AWS). A rule
naming a group matches the addresses of that group's members, kept in a named set.

A Hyperplane ENI's port carries sandbox flows that are SNATed to the ENI's address only after
this chain (net/hyperplane.py), so an ingress rule that names sources also admits new flows
from the Hyperplane ports whose ENI address it names: the receiver's groups judge the address
the receiver will see.

In a VPC with an IPv6 block (`ipv6`), IPv6 is judged like IPv4: a rule's addresses name one
family (`0.0.0.0/0` admits no IPv6, `::/0` no IPv4), a group reference both (a second set holds
the members' IPv6 addresses), and neighbour discovery with the router may reach the namespace.
Without one, IPv6 is dropped and the script is what it was before IPv6 existed.

The table carries a fingerprint of its own content as its comment, so the reconciler can see
that the kernel already holds exactly this ruleset and change nothing."""
from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ..model.ec2 import SgRule
from .flow_sources import LOG_PREFIX, NFLOG_GROUP

ANY_V4 = "0.0.0.0/0"
ANY_V6 = "::/0"


@dataclass(frozen=True)
class PortRules:
    """One interface's VPC-side link, the groups it belongs to and its address; `nat`: a
    Hyperplane ENI's port, whose flows are SNATed to that address after the forward chain."""
    ifname: str
    group_ids: tuple[str, ...]
    ip: str = ""
    nat: bool = False
    ipv6: tuple[str, ...] = ()  # a Hyperplane port's ENI IPv6 addresses (NAT66 to them)


def set_name(group_id: str) -> str:
    return "g_" + group_id.replace("-", "_")


def set_name6(group_id: str) -> str:
    return "g6_" + group_id.replace("-", "_")


def rule_match(rule: SgRule) -> str:
    """The nft match for one rule (empty: matches every IPv4 packet)."""
    return " ".join(filter(None, [_peer_match(rule), _service_match(rule)]))


def rule_matches(rule: SgRule, ipv6: bool = False) -> list[str]:
    """The nft matches for one rule in a VPC with IPv6, where a rule's addresses name one
    family (IpRanges or Ipv6Ranges) and a group reference both; without IPv6, `rule_match`."""
    if not ipv6:
        return [rule_match(rule)]
    service = _service_match(rule)
    direction = "daddr" if rule.egress else "saddr"
    if rule.ref_group_id:
        peers = [f"ip {direction} @{set_name(rule.ref_group_id)}",
                 f"ip6 {direction} @{set_name6(rule.ref_group_id)}"]
    elif rule.cidr == ANY_V6:
        peers = ["meta nfproto ipv6"]
    elif rule.cidr and ":" in rule.cidr:
        peers = [f"ip6 {direction} {rule.cidr}"]
    elif rule.cidr == ANY_V4 or not rule.cidr:
        peers = ["meta nfproto ipv4"]
    else:
        peers = [f"ip {direction} {rule.cidr}"]
    return [" ".join(filter(None, [peer, service])) for peer in peers]


def _peer_match(rule: SgRule) -> str:
    if rule.ref_group_id:
        return f"ip {'daddr' if rule.egress else 'saddr'} @{set_name(rule.ref_group_id)}"
    if rule.cidr and ":" in rule.cidr:
        return f"ip6 {'daddr' if rule.egress else 'saddr'} {rule.cidr}" \
            if rule.cidr != ANY_V6 else "meta nfproto ipv6"
    if rule.cidr and rule.cidr != ANY_V4:
        return f"ip {'daddr' if rule.egress else 'saddr'} {rule.cidr}"
    return ""


def _nat_ports_named(rule: SgRule, nat_ports: Iterable[PortRules]) -> list[str]:
    """The Hyperplane ports whose ENI address (of the rule's family) an ingress rule's source
    names."""
    if rule.ref_group_id:
        return sorted(p.ifname for p in nat_ports if rule.ref_group_id in p.group_ids)
    if rule.cidr and ":" in rule.cidr:
        network6 = ipaddress.IPv6Network(rule.cidr, strict=False)
        return sorted(p.ifname for p in nat_ports
                      if any(ipaddress.IPv6Address(a) in network6 for a in p.ipv6))
    network = ipaddress.IPv4Network(rule.cidr or ANY_V4, strict=False)
    return sorted(p.ifname for p in nat_ports if ipaddress.IPv4Address(p.ip) in network)


def _nat_family(rule: SgRule, ipv6: bool) -> str:
    """The family a NAT port match of a rule naming addresses is limited to (in a VPC with
    IPv6: a rule naming an ENI's IPv4 address admits none of its IPv6 flows, and back)."""
    if rule.ref_group_id or not ipv6:
        return ""
    return "meta nfproto ipv6" if rule.cidr and ":" in rule.cidr else "meta nfproto ipv4"


def _service_match(rule: SgRule) -> str:
    parts: list[str] = []
    proto = rule.protocol
    if proto in ("tcp", "udp"):
        parts.append(f"meta l4proto {proto}")
        if (rule.from_port, rule.to_port) not in ((0, 65535), (-1, -1)):
            ports = str(rule.from_port) if rule.from_port == rule.to_port \
                else f"{rule.from_port}-{rule.to_port}"
            parts.append(f"th dport {ports}")
    elif proto == "icmp":
        parts.append("meta l4proto icmp")
        if rule.from_port != -1:
            parts.append(f"icmp type {rule.from_port}")
            if rule.to_port != -1:
                parts.append(f"icmp code {rule.to_port}")
    elif proto == "58":  # ICMPv6: its type and code in the port fields, as AWS keeps them
        parts.append("meta l4proto ipv6-icmp")
        if rule.from_port != -1:
            parts.append(f"icmpv6 type {rule.from_port}")
            if rule.to_port != -1:
                parts.append(f"icmpv6 code {rule.to_port}")
    elif proto != "-1":
        parts.append(f"meta l4proto {int(proto)}")
    return " ".join(parts)


def port_rule_lines(port: PortRules, rules_by_group: Mapping[str, list[SgRule]],
                    egress: bool, nat_ports: Iterable[PortRules] = (),
                    ipv6: bool = False) -> list[str]:
    """Distinct matches of the port's groups in one direction (duplicates across groups merge);
    ingress rules naming sources also match the `nat_ports` whose address they name."""
    nat_ports = list(nat_ports)
    lines: list[str] = []
    for gid in port.group_ids:
        for rule in rules_by_group.get(gid, []):
            if rule.egress != egress:
                continue
            matches = rule_matches(rule, ipv6)
            named = _nat_ports_named(rule, nat_ports) if not egress and _peer_match(rule) else []
            if named:
                links = ", ".join(f'"{name}"' for name in named)
                matches.append(" ".join(filter(None, [f"iifname {{ {links} }}",
                                                      _nat_family(rule, ipv6),
                                                      _service_match(rule)])))
            lines += [m for m in matches if m not in lines]
    return lines


def render(table: str, ports: Iterable[PortRules], rules_by_group: Mapping[str, list[SgRule]],
           members: Mapping[str, Iterable[str]], extra: str = "",
           gateway_links: Iterable[str] = (), ipv6: bool = False,
           input_accepts: Iterable[str] = ()) -> str:
    """The whole table as one script that replaces any previous version atomically; `extra`:
    more of the table's body, loaded in the same transaction (the network ACL chains);
    `gateway_links`: links to a gateway (net/gateways.py), whose traffic in is judged by the
    receiving port's ingress rules and traffic out by the sending port's egress rules;
    `ipv6`: the VPC has an IPv6 block, so IPv6 is judged like IPv4 instead of dropped (without
    it the script is what it was before IPv6 existed);
    `input_accepts`: matches of traffic to the namespace itself that is let in whatever the
    groups say (the VPC resolver, net/vpc.py: AWS's DNS is not subject to security groups)."""
    gateway_links = sorted(gateway_links)
    ports = sorted(ports, key=lambda p: p.ifname)
    nat_ports = [p for p in ports if p.nat]
    referenced = sorted({r.ref_group_id for rs in rules_by_group.values() for r in rs
                         if r.ref_group_id})
    body: list[str] = []
    for gid in referenced:
        addrs = sorted(a for a in set(members.get(gid, ())) if ":" not in a)
        elements = f" elements = {{ {', '.join(addrs)} }};" if addrs else ""
        body.append(f"  set {set_name(gid)} {{ type ipv4_addr;{elements} }}")
        if ipv6:
            addrs6 = sorted(a for a in set(members.get(gid, ())) if ":" in a)
            elements6 = f" elements = {{ {', '.join(addrs6)} }};" if addrs6 else ""
            body.append(f"  set {set_name6(gid)} {{ type ipv6_addr;{elements6} }}")
    # IPv6 neighbour discovery with the router (fe80::1 on each port) is not tracked: let it in
    neighbours = (" meta l4proto ipv6-icmp icmpv6 type { nd-neighbor-solicit,"
                  " nd-neighbor-advert } accept;") if ipv6 else ""
    accepts = "".join(f" {match} accept;" for match in input_accepts)
    body.append("  chain input { type filter hook input priority filter; policy drop;"
                f" ct state established,related accept;{neighbours}{accepts} }}")
    body.append("  chain forward {")
    body.append("    type filter hook forward priority filter; policy drop;")
    body.append("    ct state established,related accept")
    body.append("    ct state invalid drop")
    if not ipv6:
        body.append("    meta nfproto != ipv4 drop")
    if ports:
        egress_map = ", ".join(f'"{p.ifname}" : jump out_{p.ifname}' for p in ports)
        body.append(f"    iifname vmap {{ {egress_map} }}")
        if gateway_links:
            links = ", ".join(f'"{name}"' for name in gateway_links)
            body.append(f"    iifname {{ {links} }} goto deliver")
    body.append("  }")
    if ports:
        ingress_map = ", ".join(f'"{p.ifname}" : jump in_{p.ifname}' for p in ports)
        # Reached by `goto` from an egress chain: falling off a port's ingress chain returns to
        # the forward chain's end, i.e. the drop policy.
        to_gateway = "".join(f'\n    oifname "{name}" accept' for name in gateway_links)
        body.append(f"  chain deliver {{\n    oifname vmap {{ {ingress_map} }}{to_gateway}\n  }}")
    for p in ports:
        out = [f"{m} goto deliver".strip()
               for m in port_rule_lines(p, rules_by_group, egress=True, ipv6=ipv6)]
        inn = [f"{m} accept".strip()
               for m in port_rule_lines(p, rules_by_group, egress=False, nat_ports=nat_ports,
                                        ipv6=ipv6)]
        body.append(f"  chain out_{p.ifname} {{")
        body += [f"    {line}" for line in out]
        body.append(f"    {drop_log('out', p.ifname)}")
        body.append("  }")
        body.append(f"  chain in_{p.ifname} {{")
        body += [f"    {line}" for line in inn]
        body.append(f"    {drop_log('in', p.ifname)}")
        body.append("  }")
    if extra:
        body.append(extra)
    text = "\n".join(body)
    digest = fingerprint(text)
    # Declaring the table first makes `delete` valid even when it does not exist yet; the
    # three statements form one transaction, so no packet ever sees a half-built ruleset.
    return (f"add table inet {table}\ndelete table inet {table}\n"
            f"table inet {table} {{\n  comment \"{digest}\"\n{text}\n}}\n")


def drop_log(direction: str, ifname: str) -> str:
    """The last statement of a port's chain: a packet that reaches it matched no rule and is
    dropped by the forward policy after it; NFLOG hands it to the flow-log collector
    (net/flow_sources.py) as a REJECT, naming the port and the direction (no listener: no-op)."""
    return f'log prefix "{LOG_PREFIX} {direction} {ifname}" group {NFLOG_GROUP}'


def fingerprint(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def script_fingerprint(script: str) -> str:
    marker = 'comment "'
    start = script.index(marker) + len(marker)
    return script[start:script.index('"', start)]
