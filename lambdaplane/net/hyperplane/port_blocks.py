"""Hyperplane across hosts (issue 20, deliverable 4): the kernel side of port blocks. A
function's ENI address is one address on every host that runs the function; each host SNATs
the ENI's flows only within the port block it leased (store/port_blocks.py; the block's range is
ensure_eni's `ports`). A reply to the ENI's address therefore names its host by its destination
port. This module makes every VPC namespace send a reply whose port lies in a block of another
host to that host over the fabric, where conntrack de-NATs it as on one host.

Per VPC namespace (all rebuilt from a `ReplySteering` spec, idempotent):
- the table `lp<i>-pb`: map `owner` (ENI address . port range → the owning host's mark, an
  interval map), consulted in prerouting (mangle + 1: after the plane's reply marks, before
  the route lookup) for TCP/UDP packets not arriving from the fabric, and at output (the
  namespace's own replies);
- per other host with blocks (its hop number h, 1..4094): the policy rule `fwmark
  host_mark(h) → table hop_table(h)` (priority 1000, as the ENIs' rules; the marks never meet
  ENI marks), the table holding `169.254.240.h/32 dev evpn0` and `default via 169.254.240.h`;
- this host's hop address `169.254.240.<own>/32` on a link `hop0` of its own (a bridge without
  ports: the fabric needs the bridge driver anyway, the dummy driver may be missing), answered
  by ARP on the EVPN port (evpn0), so the other hosts' VPC namespaces reach this one over the
  segment. Not on evpn0 itself: the fabric's routes there live on a link without addresses, and
  deleting the last address of a link flushes its routes. Nothing in the main routing table:
  the fabric (net/fabric.py) and the VPC reconcile own its routes (the VPC reconcile removes
  unknown veths and lo's unknown addresses, never another link).

A host's own blocks need no entry: its conntrack de-NATs their replies (the plane's marks).
A flow another host SNATed is tracked here as an ordinary forwarded flow (from evpn0 to the
resource), so security groups judge it as on one host; only its route back differs. Not owned:
the EVPN port (net/fabric.py), the plane and ENI chains (net/hyperplane/plane.py, eni.py)."""
from __future__ import annotations

import hashlib
import ipaddress
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .. import nft, ns
from ..names import Names
from ..netlink import Netlink
from ..vpc import EVPN_LINK
from .model import RULE_PRIORITY, HyperplaneError, replace_table

STEERING_VERSION = "pb-1"
HOP_NET = ipaddress.IPv4Network("169.254.240.0/20")  # outside every other 169.254 use
HOP_FIRST, HOP_LAST = 1, 4094
HOST_MARK_BASE = 0x4000_0000  # ENI marks are 1..99,999 (net/names.py's eni_mark)
HOP_TABLE_BASE = 200_000  # ENI back tables 100,000+n (n < 100,000); route tables 300,000+
HOP_LINK = "hop0"  # the port-less bridge holding this host's hop address in each VPC namespace


@dataclass(frozen=True, order=True)
class RemoteBlock:
    """A port block of an ENI that another host owns: replies to it go to that host."""
    address: str  # the ENI's address (one on every host)
    first_port: int
    last_port: int
    hop: int  # the owning host's hop number

    def __post_init__(self) -> None:
        _check_hop(self.hop)
        if not 1 <= self.first_port <= self.last_port <= 65535:
            raise ValueError(f"bad port block {self.first_port}-{self.last_port}")


@dataclass(frozen=True)
class ReplySteering:
    """Desired reply steering in one VPC namespace of this host."""
    vpc_id: str
    own_hop: int  # this host's hop number (store/port_blocks.py's PortBlockStore.hop)
    remote: tuple[RemoteBlock, ...]  # every block of another host, of the VPC's ENIs

    def __post_init__(self) -> None:
        _check_hop(self.own_hop)
        if any(b.hop == self.own_hop for b in self.remote):
            raise ValueError("a remote block cannot belong to this host's own hop")

    @property
    def hops(self) -> set[int]:
        return {b.hop for b in self.remote}


def _check_hop(hop: int) -> None:
    if not HOP_FIRST <= hop <= HOP_LAST:
        raise ValueError(f"hop number {hop} out of range {HOP_FIRST}..{HOP_LAST}")


def hop_address(hop: int) -> str:
    """A host's next-hop address on the fabric, the same in every VPC."""
    _check_hop(hop)
    return str(HOP_NET.network_address + hop)


def host_mark(hop: int) -> int:
    return HOST_MARK_BASE + hop


def hop_table(hop: int) -> int:
    return HOP_TABLE_BASE + hop


def steering_table(names: Names) -> str:
    return f"{names.nft_table}-pb"


def desired_steering(vpc_id: str, own_host: str, hops: Mapping[str, int],
                     blocks: Iterable[tuple[str, str, int, int]]) -> ReplySteering:
    """The spec from the store's rows: `hops` host id → hop number, `blocks` (ENI address,
    owning host id, first port, last port) of the VPC's ENIs. This host's blocks are left out
    (its conntrack answers them); a block of a host without a hop number cannot be routed and
    is left out too (that host has not joined yet)."""
    remote = sorted({RemoteBlock(address, first, last, hops[host])
                     for address, host, first, last in blocks
                     if host != own_host and host in hops})
    return ReplySteering(vpc_id, hops[own_host], tuple(remote))


def steering_ruleset(names: Names, spec: ReplySteering) -> str:
    """The table's whole text; its comment carries a digest of the spec (what ensure
    compares)."""
    table = steering_table(names)
    elements = ", ".join(f"{b.address} . {b.first_port}-{b.last_port} : {host_mark(b.hop):#x}"
                         for b in spec.remote)
    lookup = "meta l4proto { tcp, udp } meta mark set ip daddr . th dport map @owner"
    return (
        f"table ip {table} {{\n"
        f'    comment "{_comment(spec)}"\n'
        f"    map owner {{\n"
        f"        type ipv4_addr . inet_service : mark; flags interval;\n"
        + (f"        elements = {{ {elements} }}\n" if elements else "")
        + "    }\n"
        f"    chain prerouting {{\n"
        f"        type filter hook prerouting priority mangle + 1; policy accept;\n"
        # from the fabric: never sent back out of it (a stale block loops nowhere)
        f'        iifname != "{EVPN_LINK}" {lookup}\n'
        f"    }}\n"
        f"    chain output {{\n"
        f"        type route hook output priority mangle + 1; policy accept;\n"
        f"        {lookup}\n"
        f"    }}\n"
        f"}}\n")


def _comment(spec: ReplySteering) -> str:
    digest = hashlib.sha256(repr((spec.own_hop, spec.remote)).encode()).hexdigest()[:16]
    return f"{STEERING_VERSION} {digest}"


def ensure_reply_steering(names: Names, spec: ReplySteering) -> list[str]:
    """Make one VPC namespace steer replies by port block as `spec` says; the changes made
    (none on a second run). The namespace and its EVPN port must exist (net/fabric.py)."""
    netns = names.vpc_netns(spec.vpc_id)
    if not ns.exists(netns):
        raise HyperplaneError(f"no namespace for {spec.vpc_id}")
    changes: list[str] = []
    table = steering_table(names)
    with Netlink(netns) as nl:
        if nl.index(EVPN_LINK) is None:
            raise HyperplaneError(f"{spec.vpc_id}: no {EVPN_LINK} in {netns} (not on the fabric)")
        _ensure_own_hop(nl, netns, spec.own_hop, changes)
        for hop in sorted(spec.hops):
            address = hop_address(hop)
            wanted = [(f"{address}/32", EVPN_LINK, None), ("0.0.0.0/0", EVPN_LINK, address)]
            have = {(r.dst, r.dst_len, r.gateway) for r in nl.table_routes(hop_table(hop))}
            if have != {(address, 32, None), ("0.0.0.0", 0, address)}:
                replace_table(nl, hop_table(hop), wanted)
                changes.append(f"routed host hop {hop} via {address} in {netns}")
        _sync_rules(nl, spec.hops, changes)
    current = nft.list_text(f"table ip {table}", netns)
    if current is None or f'comment "{_comment(spec)}"' not in current:
        nft.apply((f"delete table ip {table}\n" if current is not None else "")
                  + steering_ruleset(names, spec), netns)
        changes.append(f"steered {len(spec.remote)} remote port blocks in {netns}")
    return changes


def _ensure_own_hop(nl: Netlink, netns: str, own_hop: int, changes: list[str]) -> None:
    link = nl.link(HOP_LINK)
    if link is None:
        subprocess.run(["ip", "-n", netns, "link", "add", HOP_LINK, "type", "bridge"],
                       check=True, capture_output=True)
        changes.append(f"created {HOP_LINK} in {netns}")
    if link is None or not link.up:
        nl.set_up(HOP_LINK)  # its address is local (answered by ARP) only while it is up
    own = (hop_address(own_hop), 32)
    have = nl.addresses(HOP_LINK)
    for address, plen in sorted(have - {own}):
        nl.delete_address(HOP_LINK, address, plen)
        changes.append(f"removed {address}/{plen} from {HOP_LINK} in {netns}")
    if own not in have:
        nl.add_address(HOP_LINK, *own)
        changes.append(f"added hop address {own[0]} to {HOP_LINK} in {netns}")


def _hop_rules(nl: Netlink) -> set[int]:
    """Hops that have a policy rule here."""
    return {r.fwmark - HOST_MARK_BASE for r in nl.rules()
            if r.fwmark is not None and r.priority == RULE_PRIORITY
            and HOST_MARK_BASE + HOP_FIRST <= r.fwmark <= HOST_MARK_BASE + HOP_LAST
            and r.table == hop_table(r.fwmark - HOST_MARK_BASE)}


def _sync_rules(nl: Netlink, wanted: set[int], changes: list[str]) -> None:
    have = _hop_rules(nl)
    for hop in sorted(have - wanted):
        nl.delete_rule(host_mark(hop), hop_table(hop), RULE_PRIORITY)
        changes.append(f"removed rule of host hop {hop} in {nl.netns}")
    for hop in sorted(wanted - have):
        nl.add_rule(host_mark(hop), hop_table(hop), RULE_PRIORITY)
        changes.append(f"added rule of host hop {hop} in {nl.netns}")
    stale = {t - HOP_TABLE_BASE for t, *_route in nl.routes_in_tables(
        hop_table(HOP_FIRST), hop_table(HOP_LAST) + 1)} - wanted
    for hop in sorted(stale):
        replace_table(nl, hop_table(hop), [])
        changes.append(f"emptied table of host hop {hop} in {nl.netns}")


def remove_reply_steering(names: Names, vpc_id: str) -> None:
    """Remove everything of this module from a VPC namespace (idempotent); the namespace and
    its EVPN port stay."""
    netns = names.vpc_netns(vpc_id)
    if not ns.exists(netns):
        return
    nft.delete_table("ip", steering_table(names), netns)
    changes: list[str] = []
    with Netlink(netns) as nl:
        _sync_rules(nl, set(), changes)
        nl.delete_link(HOP_LINK)


def reply_steering_state(names: Names, vpc_id: str) -> dict[str, object]:
    """What the kernel holds (tests, diagnostics): the owner map's elements as nft prints
    them, hop rules, this host's hop addresses (on its link `hop0`)."""
    netns = names.vpc_netns(vpc_id)
    state: dict[str, object] = {"table": False, "elements": [], "rules": [], "addresses": []}
    if not ns.exists(netns):
        return state
    try:
        items = nft.list_json(f"map ip {steering_table(names)} owner", netns)
        state["table"] = True
        state["elements"] = [e for item in items if "map" in item
                             for e in item["map"].get("elem", [])]
    except nft.NftError:
        pass
    with Netlink(netns) as nl:
        state["rules"] = sorted(_hop_rules(nl))
        if nl.index(HOP_LINK) is not None:
            state["addresses"] = sorted(a for a, _p in nl.addresses(HOP_LINK))
    return state
