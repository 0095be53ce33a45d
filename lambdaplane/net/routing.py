"""Route tables in the kernel, per subnet: the desired policy routing of each VPC namespace
(pure) and the code that makes a namespace match it (net thread).

Each route table of a VPC is a kernel routing table (TABLE_BASE + its rank among the VPC's
tables). Every port of a subnet (a `lambdaplane run` resource, a legacy ENI, a Hyperplane ENI —
whose flows enter with the sandbox's address and are SNATed to the ENI's on the way out) gets
`iif <port> lookup <its subnet's table>`; a subnet without an association uses the main
table's. One rule ahead of them, `lookup main suppress_prefixlength 0`, keeps traffic to the
VPC's own interfaces (their /32s in the main table) on the `local` route. The routes:
  local (a VPC CIDR) → blackhole (an address of the VPC that no interface holds goes nowhere)
  an internet gateway attached, with --internet-netns → via the gateway link (net/gateways.py)
  a network interface of the VPC → via its address, out of its port
  anything else (a deleted target; a gateway with no internet here) → blackhole."""
from __future__ import annotations

import subprocess
from dataclasses import dataclass

from .netlink import Netlink

TABLE_BASE = 300000  # VPC namespace: ranks 0… of its route tables (Hyperplane uses 100000+n)
MAIN_RULE_PRIORITY = 1500  # after the Hyperplane's fwmark rules (1000)
SUBNET_RULE_PRIORITY = 2000
_RTN_BLACKHOLE = 6


@dataclass(frozen=True, order=True)
class KernelRoute:
    dst: str  # "a.b.c.d/n"
    kind: str  # "unicast" | "blackhole"
    via: str = ""
    dev: str = ""
    realm: int = 0  # marks the route to NAT gateway `realm` (net/gateways.py translates)

    def ip_args(self) -> list[str]:
        if self.kind == "blackhole":
            return ["blackhole", self.dst]
        realm = ["realm", str(self.realm)] if self.realm else []
        return [self.dst, "via", self.via, "dev", self.dev, "onlink", *realm]


@dataclass(frozen=True)
class RoutingSpec:
    netns: str
    tables: dict[int, tuple[KernelRoute, ...]]
    rules: tuple[tuple[str, int], ...]  # (port ifname, table)


def run_ip(netns: str, *args: str, check: bool = True) -> str:
    """`ip -n NETNS ARGS…`: its output; a failure raises unless `check` is false."""
    out = subprocess.run(["ip", "-n", netns, *args], capture_output=True, text=True)
    if check and out.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} in {netns}: {out.stderr.strip()}")
    return out.stdout


def kernel_tables(nl: Netlink) -> dict[int, set[KernelRoute]]:
    """This module's tables in a namespace, as they are (one netlink dump)."""
    out: dict[int, set[KernelRoute]] = {}
    names: dict[int, str] = {}
    for table, dst, kind, gateway, oif, realm in nl.routes_in_tables(
            TABLE_BASE, TABLE_BASE + 100000):
        if kind == _RTN_BLACKHOLE:
            route = KernelRoute(dst, "blackhole")
        else:
            if oif and oif not in names:
                names = {link.index: link.name for link in nl.links()}
            route = KernelRoute(dst, "unicast", gateway or "", names.get(oif or 0, ""), realm)
        out.setdefault(table, set()).add(route)
    return out


def reconcile(spec: RoutingSpec, nl: Netlink) -> list[str]:
    """Make the namespace's tables and rules match (`nl`: a handle in spec.netns)."""
    have = kernel_tables(nl)
    rules = nl.rules()
    changes: list[str] = []
    for n in sorted(set(have) - set(spec.tables)):
        run_ip(spec.netns, "route", "flush", "table", str(n))
        changes.append(f"flushed route table {n} in {spec.netns}")
    for n, routes in sorted(spec.tables.items()):
        if have.get(n, set()) == set(routes):
            continue
        run_ip(spec.netns, "route", "flush", "table", str(n), check=False)
        for r in routes:
            run_ip(spec.netns, "route", "replace", *r.ip_args(), "table", str(n))
        changes.append(f"set route table {n} in {spec.netns}: "
                       + ", ".join(" ".join(r.ip_args()) for r in routes))
    has_main = any(r.priority == MAIN_RULE_PRIORITY for r in rules)
    if spec.rules and not has_main:
        run_ip(spec.netns, "rule", "add", "priority", str(MAIN_RULE_PRIORITY), "lookup", "main",
            "suppress_prefixlength", "0")
        changes.append(f"added rule main first in {spec.netns}")
    have_rules = {(r.iifname or "", r.table) for r in rules
                  if r.priority == SUBNET_RULE_PRIORITY}
    wanted = set(spec.rules)
    for iif, table in sorted(have_rules - wanted):
        run_ip(spec.netns, "rule", "del", "priority", str(SUBNET_RULE_PRIORITY), "iif", iif,
            "lookup", str(table), check=False)
        changes.append(f"removed rule iif {iif} lookup {table} in {spec.netns}")
    for iif, table in sorted(wanted - have_rules):
        run_ip(spec.netns, "rule", "add", "priority", str(SUBNET_RULE_PRIORITY), "iif", iif,
            "lookup", str(table))
        changes.append(f"added rule iif {iif} lookup {table} in {spec.netns}")
    return changes
