"""The desired kernel state of every VPC, derived from the store (pure; net/reconcile.py makes
the kernel match it).

A VPC is a network namespace. Subnets are routed, not bridged: the namespace's loopback holds
every subnet's router address; each interface is a veth whose VPC end is a port of the VPC
namespace (proxy ARP on, a /32 route to the interface's address) and whose far end, in the
interface's own namespace (`lambdaplane run`), holds the address with the subnet's prefix.
A Hyperplane ENI's far end is its transit in the worker namespace instead, holding only the
transit address: the VPC namespace SNATs the ENI's flows to the ENI's address
(net/hyperplane/). Every packet between two interfaces is therefore forwarded by the VPC
namespace, where security groups are enforced (net/security_groups.py), and network ACLs at
subnet boundaries (net/network_acls.py). Secondary private addresses are held by the far end
and routed like the primary. A VPC with an IPv6 block forwards IPv6 too: each interface's IPv6
addresses are /128 routes to its port (net/ipv6.py), and the same table judges both families."""
from __future__ import annotations

import ipaddress
from collections import defaultdict
from dataclasses import dataclass

from ..model import ipam
from ..model.ec2 import FarEnd, SgRule, Snapshot
from .hyperplane.model import TRANSIT_WORKER_ADDR
from .names import Names, port_ifname
from .network_acls import AclPort, render_chains
from .security_groups import PortRules, render

# The subnet routers' addresses live on the VPC namespace's loopback (this kernel has no dummy
# links): Linux answers ARP for a local address on any interface, so every port answers for its
# subnet's gateway.
GATEWAY_LINK = "lo"
# The VPC end of the VPC's internet gateway link (net/gateways.py owns it): security groups
# judge traffic through it like traffic between ports.
INTERNET_LINK = "igw0"
# The VPC end of the VPC's EVPN port to the host's fabric namespace (net/fabric.py owns it):
# the VPC's segment on other hosts, judged like the internet gateway link.
EVPN_LINK = "evpn0"


@dataclass(frozen=True)
class PortSpec:
    eni_id: str
    ifname: str  # the VPC end, in the VPC namespace
    ip: str
    prefixlen: int
    gateway: str
    mac: str
    far: FarEnd
    group_ids: tuple[str, ...]
    # what the far end holds: the address with the subnet's prefix, or a Hyperplane transit's
    far_addresses: tuple[tuple[str, int], ...]
    # The program using the far namespace: after a restart removed the namespace's name, the
    # namespace is found again through this process instead of being made anew.
    process_pid: int | None = None
    process_start: int | None = None
    ipv6: tuple[str, ...] = ()  # its IPv6 addresses (net/ipv6.py)
    secondary_ips: tuple[str, ...] = ()  # more IPv4 addresses, routed like `ip`


@dataclass(frozen=True)
class VpcNetSpec:
    vpc_id: str
    netns: str
    gateways: tuple[str, ...]
    ports: tuple[PortSpec, ...]
    nft_table: str
    nft_script: str
    ipv6: bool = False  # the VPC has an IPv6 block: the namespace forwards IPv6 too
    # AmazonProvidedDNS: the VPC's base address + 2, on the namespace's loopback; a server
    # socket bound there answers (service/vpc_dns.py). Not judged by security groups.
    resolver: str = ""
    # the resolver's IPv6 address (RESOLVER_IPV6) on the same loopback, for VPCs with IPv6
    resolver6: str = ""


def resolver_address(cidr: str) -> str:
    """The VPC resolver's address: the primary CIDR block's base + 2 (AWS's "plus two")."""
    return str(ipaddress.IPv4Network(cidr).network_address + 2)


# The Route 53 Resolver's link-local alias: in every VPC it answers like base + 2. Translated
# to base + 2 on the way in (conntrack gives replies the alias back as their source), so one
# resolver, its security-group exemption and its Hyperplane path serve both addresses.
RESOLVER_ALIAS = "169.254.169.253"


def resolver_alias_chain(resolver: str) -> str:
    """nft chain (in the VPC's table) that sends DNS for RESOLVER_ALIAS to `resolver`."""
    return ("  chain resolver_alias { type nat hook prerouting priority dstnat; policy accept;"
            f' iifname != "{INTERNET_LINK}" ip daddr {RESOLVER_ALIAS}'
            f" meta l4proto {{ udp, tcp }} th dport 53 dnat ip to {resolver}; }}")


# The Route 53 Resolver's IPv6 address on Nitro (AWS's "fd00:ec2::253"): in a VPC with an
# IPv6 block it answers like base + 2, the only resolver an IPv6-only subnet's resources can
# reach. Held on the VPC namespace's loopback (net/ipv6.py) next to base + 2.
RESOLVER_IPV6 = "fd00:ec2::253"


def resolver_accepts(resolver: str, resolver6: str = "") -> tuple[str, ...]:
    v6 = (f"ip6 daddr {resolver6} udp dport 53", f"ip6 daddr {resolver6} tcp dport 53") \
        if resolver6 else ()
    return (f"ip daddr {resolver} udp dport 53", f"ip daddr {resolver} tcp dport 53", *v6)


def desired_state(names: Names, snap: Snapshot) -> list[VpcNetSpec]:
    subnets = {s.id: s for s in snap.subnets}
    rules_by_group: dict[str, list[SgRule]] = defaultdict(list)
    for rule in snap.rules:
        rules_by_group[rule.group_id].append(rule)
    members: dict[str, list[str]] = defaultdict(list)
    v6_addresses = snap.ipv6.eni_addresses
    for eni in snap.enis:
        for gid in eni.group_ids:
            if eni.ip:  # none in an IPv6-only subnet
                members[gid].append(eni.ip)
            members[gid] += v6_addresses.get(eni.id, [])
            members[gid] += snap.private_ips.get(eni.id, [])
    v6_vpcs = {c.vpc_id for c in snap.ipv6.vpc_cidrs}
    acl_of_subnet = {a.subnet_id: a.acl_id for a in snap.network_acls.associations}
    out = []
    for vpc in snap.vpcs:
        vpc_subnets = sorted((s for s in snap.subnets if s.vpc_id == vpc.id), key=lambda s: s.cidr)
        ports = []
        acl_ports = []
        transits: set[str] = set()
        for eni in snap.enis:
            if eni.vpc_id != vpc.id or eni.far_end is None:
                continue
            subnet = subnets[eni.subnet_id]
            # an IPv6-only subnet's interface has no IPv4 address, prefix or router
            prefixlen = ipaddress.IPv4Network(subnet.cidr).prefixlen if subnet.cidr else 0
            transit = eni.far_end.netns == names.worker_netns  # a Hyperplane ENI's
            if transit:
                transits.add(port_ifname(eni.id))
            secondary = () if transit else tuple(snap.private_ips.get(eni.id, ()))
            far_addresses = ((TRANSIT_WORKER_ADDR, 32),) if transit else \
                tuple((a, prefixlen) for a in (eni.ip, *secondary) if a)
            acl_ports.append(AclPort(port_ifname(eni.id), subnet.id, eni.ip if transit else "",
                                     tuple(v6_addresses.get(eni.id, ())) if transit else ()))
            ports.append(PortSpec(eni.id, port_ifname(eni.id), eni.ip, prefixlen,
                                  ipam.gateway(subnet.cidr) if subnet.cidr else "", eni.mac,
                                  eni.far_end, eni.group_ids,
                                  far_addresses, eni.process_pid, eni.process_start,
                                  tuple(v6_addresses.get(eni.id, ())), secondary))
        vpc_groups = {g.id for g in snap.groups if g.vpc_id == vpc.id}
        rules = [PortRules(p.ifname, p.group_ids, p.ip, nat=p.ifname in transits,
                           ipv6=p.ipv6 if p.ifname in transits else ()) for p in ports]
        ipv6 = vpc.id in v6_vpcs
        resolver = resolver_address(vpc.cidr)
        resolver6 = RESOLVER_IPV6 if ipv6 else ""
        acls = render_chains(acl_ports, acl_of_subnet, snap.network_acls.entries, ipv6=ipv6,
                             gateway_links=(INTERNET_LINK,))
        script = render(names.nft_table, rules,
                        {g: rs for g, rs in rules_by_group.items() if g in vpc_groups}, members,
                        acls + "\n" + resolver_alias_chain(resolver),
                        gateway_links=(INTERNET_LINK, EVPN_LINK), ipv6=ipv6,
                        input_accepts=resolver_accepts(resolver, resolver6))
        out.append(VpcNetSpec(vpc.id, names.vpc_netns(vpc.id),
                              tuple(ipam.gateway(s.cidr) for s in vpc_subnets if s.cidr),
                              tuple(sorted(ports, key=lambda p: p.ifname)), names.nft_table,
                              script, ipv6, resolver, resolver6))
    return out
