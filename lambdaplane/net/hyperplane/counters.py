"""What the Hyperplane data path has counted, per ENI and per plane: nft counters (bytes,
packets, drops, new flows, port-guard refusals), tracked flows per ENI address and the
conntrack statistics of a plane (through net/conntrack.py), and the idle-expiry watch that
turns successive flow reads into a count of flows expired idle (the one piece of state kept
here, per plane namespace and ENI address).

A conntrack dump walks the kernel's whole hash table (~40 ms at 262,144 buckets, mostly in the
kernel with the GIL released), so callers may take it off the NetThread: `read_conntrack` runs
on any thread, and its `ConntrackReading` is passed to the readers below, which then only read
nft counters and feed the idle watch (NetThread)."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from .. import conntrack, nft
from ..conntrack import Flow
from ..names import Names
from .model import SNAT_PORTS, EniCounters, port_range_size
from .port_guard import refused_counts
from .rules import numbered, plane_objects, snat_address


@dataclass(frozen=True)
class PlanePorts:
    """One read of a VPC plane for the port rule (one conntrack read, like flow_counts)."""
    flows: dict[str, int]  # tracked flows per SNAT address (ENI address)
    refused: dict[int, int]  # ENI n → new flows its port guard refused (monotonic)
    insert_failed: int  # the plane's conntrack insert_failed: flows NAT found no port for
    # Only with destinations=True (attribution of insert_failed among several ENIs):
    busiest: dict[str, int] = field(default_factory=dict)  # per SNAT address: its flows to
    # its busiest destination (protocol, address, port)
    ranges: dict[int, int] = field(default_factory=dict)  # ENI n → ports in its SNAT range


@dataclass(frozen=True)
class ConntrackReading:
    """One read of a plane's conntrack: its NATed flows and its statistics."""
    flows: list[Flow]
    stats: dict[str, int]


def read_conntrack(names: Names, vpc_id: str) -> ConntrackReading:
    """Dump a plane's conntrack (any thread; raises conntrack.ConntrackUnavailable)."""
    netns = names.vpc_netns(vpc_id)
    return ConntrackReading(conntrack.nat_flows(netns), conntrack.stats(netns))


@dataclass
class _IdleWatch:
    deadlines: dict[str, float] = field(default_factory=dict)  # flow → when its timer ends
    expired: int = 0


_IDLE: dict[tuple[str, str], _IdleWatch] = {}  # (plane netns, ENI address) → watch
_IDLE_SLACK_S = 1.0  # timer granularity and read time


def eni_counters(names: Names, vpc_id: str, n: int) -> EniCounters:
    values: dict[str, tuple[int, int]] = {}
    for item in nft.list_json(f"counters table ip {names.plane_table}",
                              names.vpc_netns(vpc_id)):
        counter = item.get("counter")
        if counter:
            values[counter["name"]] = (counter["packets"], counter["bytes"])
    tx, rx, drop = (values.get(f"{k}{n}", (0, 0)) for k in ("tx", "rx", "drop"))
    return EniCounters(tx[0], tx[1], rx[0], rx[1], drop[0])


def busiest_per_address(flows: list[Flow]) -> dict[str, int]:
    """Per SNAT address: its flows to its busiest destination (protocol, address, port), the
    destination whose source ports run out first."""
    per_destination: dict[tuple[str, tuple[str, str, int]], int] = {}
    for flow in flows:
        if (destination := flow.destination) is not None:
            where = (flow.nat_address, destination)
            per_destination[where] = per_destination.get(where, 0) + 1
    busiest: dict[str, int] = {}
    for (address, _destination), count in per_destination.items():
        busiest[address] = max(busiest.get(address, 0), count)
    return busiest


def per_address(flows: list[Flow]) -> dict[str, int]:
    """Tracked flows per SNAT address."""
    counts: dict[str, int] = {}
    for flow in flows:
        counts[flow.nat_address] = counts.get(flow.nat_address, 0) + 1
    return counts


def flow_counts(names: Names, vpc_id: str) -> dict[str, int]:
    """Tracked flows per SNAT address in one plane (the 65,000-flows rule): a NATed flow's
    reply tuple is addressed to the ENI. Each read also feeds the idle-expiry watch."""
    netns = names.vpc_netns(vpc_id)
    flows = conntrack.nat_flows(netns)
    _watch_idle(netns, flows)
    return per_address(flows)


def flow_count(names: Names, vpc_id: str, address: str) -> int:
    return flow_counts(names, vpc_id).get(address, 0)


def plane_ports(names: Names, vpc_id: str, destinations: bool = False,
                reading: ConntrackReading | None = None) -> PlanePorts:
    """Read one plane for the port rule; also feeds the idle-expiry watch (as flow_counts).
    `destinations`: also each ENI's busiest destination and range (~6x the CPU per flow, so
    only when a plane's errors must be shared among its ENIs). `reading`: the plane's
    conntrack, read already (else read here)."""
    netns = names.vpc_netns(vpc_id)
    reading = reading or read_conntrack(names, vpc_id)
    flows = reading.flows
    _watch_idle(netns, flows)
    counts = per_address(flows)
    refused = refused_counts(names, netns)
    failed = reading.stats.get("insert_failed", 0)
    if not destinations:
        return PlanePorts(counts, refused, failed)
    busiest = busiest_per_address(flows)
    ranges: dict[int, int] = {}
    for item in plane_objects(names, netns):
        rule = item.get("rule")
        n = numbered(rule["chain"], "snat") if rule else None
        if rule and n is not None:
            for expr in rule["expr"]:
                if "snat" in expr:
                    ranges[n] = _range_size(expr["snat"].get("port"))
    return PlanePorts(counts, refused, failed, busiest, ranges)


def _range_size(port: Any) -> int:
    if isinstance(port, dict) and "range" in port:
        lo, hi = port["range"]
        return int(hi) - int(lo) + 1
    if isinstance(port, int):
        return 1
    return port_range_size(SNAT_PORTS)


def eni_stats(names: Names, vpc_id: str, n: int,
              reading: ConntrackReading | None = None) -> dict[str, int]:
    """ENI n's counters beyond bytes/packets (monotonic, since the ENI or plane was made):

    new_connections: SYNs/first packets of new flows the ENI let out (nft counter new<n>;
      a retried SYN of a flow that found no port counts again).
    port_allocation_errors: the plane's conntrack `insert_failed` — first packets dropped
      because SNAT found no free source port (the clash is detected when the flow is
      confirmed). Conntrack keeps it per namespace, i.e. per VPC: every ENI of a VPC reports
      the VPC's number; with one ENI in the VPC it is exactly that ENI's.
    idle_timeouts: established TCP flows of this ENI that vanished once their idle timer had
      run out (seen by comparing successive conntrack reads: the flow-count sampling and
      this call), so flows born and expired between two reads are not seen.
    `reading`: the plane's conntrack, read already (else read here)."""
    netns = names.vpc_netns(vpc_id)
    objects = plane_objects(names, netns)
    new = 0
    for item in objects:
        counter = item.get("counter")
        if counter and counter["name"] == f"new{n}":
            new = counter["packets"]
    address = snat_address(objects, n)
    reading = reading or read_conntrack(names, vpc_id)
    _watch_idle(netns, reading.flows)
    watch = _IDLE.get((netns, address or ""))
    return {"new_connections": new,
            "port_allocation_errors": reading.stats.get("insert_failed", 0),
            "idle_timeouts": watch.expired if watch else 0}


def idle_expired(netns: str, address: str) -> int:
    """Established TCP flows translated to `address` in `netns` seen expiring idle so far (the
    idle watch above; a NAT gateway's IdleTimeoutCount)."""
    watch = _IDLE.get((netns, address))
    return watch.expired if watch else 0


def forget_plane(netns: str) -> None:
    """Drop the idle watch of a plane that is gone."""
    for key in [k for k in _IDLE if k[0] == netns]:
        del _IDLE[key]


def _watch_idle(netns: str, flows: list[Flow]) -> None:
    """A flow last seen established whose timer has since run out, and which is gone now,
    expired idle (a flow closed by FIN/RST leaves through TIME_WAIT/CLOSE instead, or closed
    before its timer ran out)."""
    now = time.monotonic()
    present: set[tuple[str, str]] = set()
    established: dict[str, dict[str, float]] = {}
    for flow in flows:
        present.add((flow.nat_address, flow.key))
        if flow.established_tcp:
            established.setdefault(flow.nat_address, {})[flow.key] = now + flow.timeout_s
    for address in {a for (space, a) in _IDLE if space == netns} | set(established):
        watch = _IDLE.setdefault((netns, address), _IdleWatch())
        watch.expired += sum(1 for key, deadline in watch.deadlines.items()
                             if (address, key) not in present
                             and deadline <= now + _IDLE_SLACK_S)
        watch.deadlines = established.get(address, {})
