"""The one typed desired state: everything that should exist in the kernel, as a tree of frozen
dataclasses built from the store in one read (`build_desired_state`), which the one reconciler
(service/reconciler.py) applies in its fixed order. Nothing here touches the kernel.

The tree:
- `vpcs`: the EC2 snapshot (VPCs, subnets, security groups and rules, interfaces with their
  far ends — a far end on another host dropped, `far_ends_here`) that net/vpc.py derives the
  VPC namespaces, ports, addresses, routes and security group tables from;
- `gateways`: per VPC its IPv4 gateway state — gateway link, 1:1 NAT, NAT gateways, per-subnet
  policy routing (net/gateways.py), derived from the same snapshot;
- `gateways6`: per IPv6 VPC its IPv6 routing and egress-only gateway rule (net/gateways6.py);
- `worker`: the worker namespace's own state (net/worker.py: sysctls, `lo`, the isolation
  table, and with `uplink` the uplink veth and the root namespace's table);
- `hyperplane`: the Hyperplane planes, ENIs and (when given) steering attachments
  (net/hyperplane/), present only when the Hyperplane service asks for a run (start, drift
  repair): its rows and attachments are its live state, under its lock."""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..model.ec2 import Snapshot
from ..net.gateways import GatewayNetSpec
from ..net.gateways6 import Ipv6GatewaySpec
from ..net.hyperplane.model import HyperplaneEni
from ..net.names import Names


@dataclass(frozen=True)
class WorkerDesired:
    """The worker namespace (made by the execution environments' start); `host_record`: where
    the host's sysctls the server changes are recorded (the data dir's, net/host_sysctls.py),
    for the uplink's forwarding put back when it was turned off."""
    netns: str
    uplink: bool
    runtime_api_port: int
    host_record: Path | None = None


@dataclass(frozen=True)
class HyperplaneDesired:
    """The Hyperplane data path: a plane per VPC with ENIs, each ENI whose interface is stored,
    and the steering attachments (None: leave steering alone, it is the event loop's)."""
    vpc_ids: tuple[str, ...]
    enis: tuple[HyperplaneEni, ...]
    stored: tuple[tuple[int, str], ...]  # every stored ENI n → its VPC: port guards kept
    attachments: tuple[tuple[str, int], ...] | None
    idle_timeout_s: int
    # ENI n → its SNAT range "lo-hi" where not the whole range (an agent's port block)
    ports: tuple[tuple[int, str], ...] = ()


@dataclass(frozen=True)
class DesiredState:
    vpcs: Snapshot
    gateways: tuple[GatewayNetSpec, ...]
    gateways6: tuple[Ipv6GatewaySpec, ...]
    worker: WorkerDesired | None
    hyperplane: HyperplaneDesired | None


# what a run is asked to add: the Hyperplane part, from the snapshot read for the run
HyperplaneSource = Callable[[Snapshot], HyperplaneDesired]


def far_ends_here(snap: Snapshot, names: Names) -> Snapshot:
    """The snapshot as this host builds it: an interface whose far end is another host's
    (an agent's `lambdaplane run` resource, named with that agent's prefix) gets no port here;
    through the EVPN fabric it is one ARP away."""
    enis = [e if e.far_end is None or names.owns(e.far_end.netns)
            else dataclasses.replace(e, far_end=None) for e in snap.enis]
    return dataclasses.replace(snap, enis=enis)


def build_desired_state(snapshot: Callable[[], Snapshot],
                        gateways: Callable[[Snapshot], list[GatewayNetSpec]],
                        gateways6: Callable[[Snapshot], list[Ipv6GatewaySpec]],
                        worker: WorkerDesired | None,
                        hyperplane: HyperplaneSource | None = None) -> DesiredState:
    """Read the store once (`snapshot`) and derive every part from that one read."""
    snap = snapshot()
    return DesiredState(snap, tuple(gateways(snap)), tuple(gateways6(snap)), worker,
                        hyperplane(snap) if hyperplane is not None else None)
