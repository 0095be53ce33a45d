"""The port guard (service/hyperplane.py's port rule): a table of its own, `lp<i>-ports`, in
each VPC namespace that refuses a new flow at once when its ENI has no source port left for
that destination.

A NATed flow's reply tuple is (destination, ENI address, source port): an ENI has as many
flows to one destination (protocol, address, port) as its SNAT range has ports. The guard
refuses a new flow at once — TCP reset, ICMP port unreachable for UDP — when the ENI's open
flows to that destination (conntrack's count, `ct count`, which leaves out TCP flows in
TIME_WAIT/CLOSE) already fill the range, and counts it per ENI (`refused<n>`). Without it NAT
finds no port, conntrack drops the SYN at confirmation (`insert_failed`, per plane) and the
function waits for its connect timeout. Its cost: `ct count` walks the ENI's list of flows to
that destination once per jiffy, so at the full range (64,512 ports) it tripled the CPU time of
opening 19,000 connections to one destination (measured; 1.4x at 5,000): the guard is
installed only on ranges up to PORT_GUARD_MAX_PORTS. The data path's chains are
net/hyperplane/eni.py's (rewritten by ensure_eni), hence a table of its own."""
from __future__ import annotations

import contextlib

from .. import nft, ns
from ..names import Names
from .model import HyperplaneError, port_range_size
from .rules import (
    NftObject,
    dispatch,
    numbered,
    plane_objects,
    port_guard_removal,
    port_guard_script,
)

PORT_GUARD_MAX_PORTS = 4096


def ensure_port_guard(names: Names, vpc_id: str, n: int, ports: str) -> bool:
    """Guard ENI n (SNAT range `ports`) when its range is small enough; returns whether it is
    guarded. Idempotent: a guard of the same range is left alone (its counts are live state).
    ENI n must be in place (ensure_eni)."""
    size = port_range_size(ports)
    if size > PORT_GUARD_MAX_PORTS:
        remove_port_guard(names, vpc_id, n)
        return False
    netns = names.vpc_netns(vpc_id)
    if port_guards(names, vpc_id).get(n) == size:
        return True
    found = dispatch(plane_objects(names, netns), n)
    if found is None:
        raise HyperplaneError(f"ENI {n} is not in the plane of {vpc_id}")
    remove_port_guard(names, vpc_id, n)
    nft.apply(port_guard_script(names, n, size, found[0]), netns)
    return True


def guard_objects(names: Names, netns: str) -> list[NftObject]:
    """The port guard table of `netns` as `nft -j` items (empty when there is none)."""
    with contextlib.suppress(nft.NftError):
        return nft.list_json(f"table ip {names.port_guard_table}", netns)
    return []


def port_guards(names: Names, vpc_id: str) -> dict[int, int]:
    """ENI n → the range size its port guard allows, as the kernel has it."""
    netns = names.vpc_netns(vpc_id)
    if not ns.exists(netns):
        return {}
    out: dict[int, int] = {}
    for item in guard_objects(names, netns):
        rule = item.get("rule")
        n = numbered(rule["chain"], "guard") if rule else None
        if rule is None or n is None:
            continue
        for expr in rule["expr"]:
            if "set" in expr:
                for stmt in expr["set"].get("stmt", []):
                    if "ct count" in stmt:
                        out[n] = int(stmt["ct count"]["val"])
    return out


def refused_counts(names: Names, netns: str) -> dict[int, int]:
    """ENI n → new flows its port guard refused (monotonic)."""
    refused: dict[int, int] = {}
    with contextlib.suppress(nft.NftError):
        for item in nft.list_json(f"counters table ip {names.port_guard_table}", netns):
            counter = item.get("counter")
            n = numbered(counter["name"], "refused") if counter else None
            if counter and n is not None:
                refused[n] = counter["packets"]
    return refused


def remove_port_guard(names: Names, vpc_id: str, n: int) -> None:
    """Remove ENI n's port guard (idempotent)."""
    netns = names.vpc_netns(vpc_id)
    if not ns.exists(netns):
        return
    script = port_guard_removal(names, n, guard_objects(names, netns))
    if script:
        nft.apply(script, netns)
