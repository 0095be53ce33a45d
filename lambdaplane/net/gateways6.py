"""IPv6 out of a VPC, in the kernel: the IPv6 half of each route table (policy routing per
subnet, as net/routing.py does for IPv4) and the rule of its gateways (net thread).

Each route table of an IPv6 VPC is also an IPv6 kernel table (TABLE_BASE + its rank, the same
numbers as its IPv4 table: the families' tables are apart); every port of a subnet gets
`iif <port> lookup <its table>` behind `lookup main suppress_prefixlength 0`, which keeps
traffic to the VPC's own addresses (their /128s in the main table, net/ipv6.py) local. Each
table holds the VPC's /56 as a blackhole (the `local` route: an address no interface holds
goes nowhere), `::/0` as a blackhole unless a route says otherwise, and each IPv6 route:
an egress-only or an attached internet gateway → via the gateway link's internet end
(fe80::2 on `igw0`, net/gateways.py makes the link); a network interface → via its first
IPv6 address out of its port; anything else → blackhole.

IPv6 is not translated (as on AWS): the internet namespace routes each VPC /56 back over the
VPC's link (via fe80::1). The link is shared by both kinds of gateway; what differs is what
may come in, decided in table `ip6 lp<i>-gw6` of the VPC namespace: replies to flows that left
(ct state established,related) always; a new connection only to a subnet whose route table
sends its source to the internet gateway (security groups and ACLs then judge it at the
port); nothing else. So an egress-only gateway lets flows out and only their replies in."""
from __future__ import annotations

import hashlib
import json
import subprocess
from dataclasses import dataclass

from . import nft, ns
from .routing import MAIN_RULE_PRIORITY, SUBNET_RULE_PRIORITY, TABLE_BASE, run_ip
from .vpc import INTERNET_LINK

LINK = INTERNET_LINK
VPC_SIDE_LL = "fe80::1"  # the VPC end of the gateway link
INTERNET_SIDE_LL = "fe80::2"  # the internet end


@dataclass(frozen=True, order=True)
class Route6:
    dst: str  # "x::/n"
    kind: str  # "unicast" | "blackhole"
    via: str = ""
    dev: str = ""

    def ip_args(self) -> list[str]:
        if self.kind == "blackhole":
            return ["blackhole", self.dst]
        return [self.dst, "via", self.via, "dev", self.dev]


@dataclass(frozen=True)
class Ipv6GatewaySpec:
    vpc_id: str
    netns: str
    internet_netns: str  # "" when the VPC has no gateway link here
    peer: str  # the link's name in the internet namespace
    blocks: tuple[str, ...]  # the VPC's /56s
    tables: dict[int, tuple[Route6, ...]]
    rules: tuple[tuple[str, int], ...]  # (port ifname, table)
    # (subnet block, source block): new connections from the internet the IGW lets in
    open_in: tuple[tuple[str, str], ...]
    nft_table: str

    def nft_script(self) -> str:
        opened = [f'    iifname "{LINK}" ip6 daddr {dst} ip6 saddr {src} accept'
                  for dst, src in self.open_in]
        body = "\n".join([
            "  chain forward { type filter hook forward priority filter - 5; policy accept;",
            f'    iifname "{LINK}" ct state established,related accept', *opened,
            f'    iifname "{LINK}" drop', "  }"])
        digest = hashlib.sha256(body.encode()).hexdigest()[:24]
        t = self.nft_table
        return (f"add table ip6 {t}\ndelete table ip6 {t}\n"
                f'table ip6 {t} {{\n  comment "{digest}"\n{body}\n}}\n')


def _ip(netns: str, *args: str, check: bool = True) -> str:
    """`ip -n NETNS -6 ARGS…` (net/routing.py's, for IPv6): a route table's IPv4 and IPv6
    tables share a number."""
    return run_ip(netns, "-6", *args, check=check)


def _json(netns: str, *args: str) -> list[dict]:  # type: ignore[type-arg]
    text = _ip(netns, "-j", *args)
    return json.loads(text) if text.strip() else []


def _dst(entry: dict) -> str:  # type: ignore[type-arg]
    dst = str(entry.get("dst", ""))
    if dst == "default":
        return "::/0"
    return dst if "/" in dst else f"{dst}/128"


def _tables(netns: str) -> dict[int, set[Route6]]:
    out: dict[int, set[Route6]] = {}
    for e in _json(netns, "route", "show", "table", "all"):
        try:
            table = int(e.get("table", ""))
        except ValueError:
            continue
        if not TABLE_BASE <= table < TABLE_BASE + 100000:
            continue
        route = Route6(_dst(e), "blackhole") if e.get("type") == "blackhole" else \
            Route6(_dst(e), "unicast", str(e.get("gateway", "")), str(e.get("dev", "")))
        out.setdefault(table, set()).add(route)
    return out


def _ensure_address(netns: str, dev: str, address: str, changes: list[str]) -> None:
    have = {a.get("local") for i in _json(netns, "addr", "show", "dev", dev)
            for a in i.get("addr_info", [])}
    if address not in have:
        _ip(netns, "addr", "replace", f"{address}/64", "dev", dev, "nodad")
        changes.append(f"set {address} on {dev} in {netns}")


def _reconcile_link(spec: Ipv6GatewaySpec, changes: list[str]) -> None:
    """The link's IPv6 ends and the internet side's routes back to the VPC's blocks."""
    if not spec.internet_netns or not ns.exists(spec.internet_netns):
        return
    _ensure_address(spec.netns, LINK, VPC_SIDE_LL, changes)
    _ensure_address(spec.internet_netns, spec.peer, INTERNET_SIDE_LL, changes)
    have = {_dst(e) for e in _json(spec.internet_netns, "route", "show", "dev", spec.peer)
            if e.get("gateway") == VPC_SIDE_LL}
    for block in spec.blocks:
        if block not in have:
            _ip(spec.internet_netns, "route", "replace", block, "via", VPC_SIDE_LL, "dev",
                spec.peer)
            changes.append(f"routed {block} to {spec.vpc_id} in {spec.internet_netns}")
    for stale in sorted(have - set(spec.blocks)):
        _ip(spec.internet_netns, "route", "del", stale, "dev", spec.peer, check=False)
        changes.append(f"unrouted {stale} in {spec.internet_netns}")


def _reconcile_routing(spec: Ipv6GatewaySpec, changes: list[str]) -> None:
    have = _tables(spec.netns)
    for n in sorted(set(have) - set(spec.tables)):
        _ip(spec.netns, "route", "flush", "table", str(n), check=False)
        changes.append(f"flushed IPv6 route table {n} in {spec.netns}")
    for n, routes in sorted(spec.tables.items()):
        if have.get(n, set()) == set(routes):
            continue
        _ip(spec.netns, "route", "flush", "table", str(n), check=False)
        for r in routes:
            _ip(spec.netns, "route", "replace", *r.ip_args(), "table", str(n))
        changes.append(f"set IPv6 route table {n} in {spec.netns}: "
                       + ", ".join(" ".join(r.ip_args()) for r in routes))
    rules = _json(spec.netns, "rule", "show")
    if spec.rules and not any(r.get("priority") == MAIN_RULE_PRIORITY for r in rules):
        _ip(spec.netns, "rule", "add", "priority", str(MAIN_RULE_PRIORITY), "lookup", "main",
            "suppress_prefixlength", "0")
        changes.append(f"added IPv6 rule main first in {spec.netns}")
    have_rules = {(str(r.get("iif", "")), int(r.get("table", 0))) for r in rules
                  if r.get("priority") == SUBNET_RULE_PRIORITY}
    for iif, table in sorted(have_rules - set(spec.rules)):
        _ip(spec.netns, "rule", "del", "priority", str(SUBNET_RULE_PRIORITY), "iif", iif,
            "lookup", str(table), check=False)
        changes.append(f"removed IPv6 rule iif {iif} lookup {table} in {spec.netns}")
    for iif, table in sorted(set(spec.rules) - have_rules):
        _ip(spec.netns, "rule", "add", "priority", str(SUBNET_RULE_PRIORITY), "iif", iif,
            "lookup", str(table))
        changes.append(f"added IPv6 rule iif {iif} lookup {table} in {spec.netns}")


def _reconcile_nft(spec: Ipv6GatewaySpec, changes: list[str]) -> None:
    current = nft.list_text(f"table ip6 {spec.nft_table}", spec.netns)
    if not spec.internet_netns:
        if current is not None:
            nft.delete_table("ip6", spec.nft_table, spec.netns)
            changes.append(f"removed the IPv6 gateway rule in {spec.netns}")
        return
    script = spec.nft_script()
    marker = script[script.index('comment "'):].split("\n", 1)[0]
    if current is not None and marker in current:
        return
    nft.apply(script, spec.netns)
    changes.append(f"applied the IPv6 gateway rule in {spec.netns}")


# What the last run made in each VPC namespace, and the identities (inodes) of that namespace
# and of the internet namespace: a VPC whose spec is the one last made there is left alone
# unless its namespace may have changed underneath (as net/gateways.py does); a namespace that
# is no longer wanted (its VPC lost its IPv6 blocks) is emptied of what this module made.
_MADE: dict[str, tuple[Ipv6GatewaySpec, tuple[int, int]]] = {}


def _identity(spec: Ipv6GatewaySpec) -> tuple[int, int]:
    return ns.identity(spec.netns), ns.identity(spec.internet_netns)


def emptied(spec: Ipv6GatewaySpec) -> Ipv6GatewaySpec:
    """The spec that removes what `spec` made: no tables, rules, routes back or rule."""
    return Ipv6GatewaySpec(spec.vpc_id, spec.netns, "", spec.peer, (), {}, (), (),
                           spec.nft_table)


def reconcile(specs: list[Ipv6GatewaySpec], recheck: set[str] | None = None) -> list[str]:
    """Make each IPv6 VPC's routing, link addresses and gateway rule match its spec (after
    net/gateways.py made the links). `recheck` None: read every IPv6 VPC back; a set: VPC
    namespaces that may have changed underneath — the others are skipped when their spec is
    the one last made there."""
    changes: list[str] = []
    wanted = {spec.netns for spec in specs}
    for netns in sorted(set(_MADE) - wanted):
        old, _identity_then = _MADE.pop(netns)
        if ns.exists(netns):
            _unroute_internet(old, changes)
            _reconcile_routing(emptied(old), changes)
            _reconcile_nft(emptied(old), changes)
    for spec in specs:
        if not ns.exists(spec.netns):
            _MADE.pop(spec.netns, None)
            continue
        identity = _identity(spec)
        if recheck is not None and spec.netns not in recheck \
                and _MADE.get(spec.netns) == (spec, identity):
            continue
        _MADE.pop(spec.netns, None)  # until this VPC is made again in full
        _reconcile_link(spec, changes)
        _reconcile_routing(spec, changes)
        _reconcile_nft(spec, changes)
        _MADE[spec.netns] = (spec, identity)
    return changes


def _unroute_internet(old: Ipv6GatewaySpec, changes: list[str]) -> None:
    """The internet side's routes back to a VPC that has no IPv6 left (a link that goes takes
    its routes with it)."""
    if not old.internet_netns or not ns.exists(old.internet_netns):
        return
    for block in old.blocks:
        out = subprocess.run(["ip", "-n", old.internet_netns, "-6", "route", "del", block,
                              "via", VPC_SIDE_LL, "dev", old.peer], capture_output=True)
        if out.returncode == 0:
            changes.append(f"unrouted {block} in {old.internet_netns}")
