"""The Hyperplane data path: how a sandbox in the worker reaches its VPC through a shared ENI.

A Hyperplane ENI n is a veth between the worker and the VPC namespace: its VPC end is the
ENI's port (made by net/reconcile.py like every interface's port, named by net/vpc.py, with
the security groups of the ENI), its worker end is the transit `lp<i>t<n>`. The ENI's address
is on no link: it is the address the VPC namespace SNATs the ENI's flows to. So each flow is
tracked once, by the conntrack that enforces the security groups anyway, and its packets pass
the worker without its IP stack (docs/design.md: where the 0.9 goes).

The package, one module per responsibility:
  model.py       the desired state of an ENI (HyperplaneEni), counters, constants
  rules.py       every nft script of the data path, and parsing them back
  steering.py    the worker's steering table and the fast path's entries (cold-start path)
  plane.py       per VPC the plane table `lp<i>-hp` (dispatch, reply marks, SNAT hook, idle
                 timeout) and its namespace sysctls
  eni.py         per ENI routes and rules on both sides of its transit, its chains, counters
  port_guard.py  the table `lp<i>-ports` refusing flows an ENI has no port for
  counters.py    nft counters, flow counts (conntrack, net/conntrack.py), the idle watch
  reconciler.py  desired state → kernel, and removal of everything
  migration.py   shims for the layout before 2026-12-06
  port_blocks.py across hosts: replies routed by the port block of their destination port to
                 the host that owns it (issue 20; imported as a module, not re-exported)
This module re-exports their public names. Not owned: the VPC namespace, the ENI's port and the
transit link themselves (net/reconcile.py), security groups (net/security_groups.py), the
worker namespace and its table (net/worker.py).

Packet path of a steered sandbox (mark n):
  sandbox eth0 → worker `lp<i>s<slot>`, whose tc ingress program moves the packet straight
  into the transit's peer, the VPC port (bpf_redirect_peer: no routing, no second backlog);
  without a fast-path entry: [steer: mark n, untracked] → rule fwmark n → table 1000+n:
  default via <subnet gateway> dev lp<i>t<n> → VPC port. In the VPC: [plane out<n>: counters,
  TCP/UDP from sandboxes only, ct mark n; security groups; SNAT to ENI:1024-65535] → the
  resource's port.
Replies: → VPC [de-NAT; ct mark n → mark n] → rule fwmark n → table 100000+n:
  100.64.0.0/10 via 169.254.200.1 dev <port> → [plane in<n>: established/related only]
  → worker lp<i>t<n>, whose program moves it into the sandbox's eth0 (else: /32 route).
Nothing from the VPC may open a flow to a sandbox (in<n>), and nothing reaches one unmarked.

Every function is synchronous kernel work for the NetThread. Everything is idempotent, and
`reconcile` changes the kernel only where it differs from the desired state."""
from __future__ import annotations

from ..names import ENI_LAST as MAX_ENI
from ..names import back_table, eni_mark, out_table
from .counters import PlanePorts, eni_counters, eni_stats, flow_count, flow_counts, plane_ports
from .eni import eni_state, ensure_eni, remove_eni
from .migration import old_layout_number, remove_old_planes
from .model import (
                       FLOW_IDLE_TIMEOUT_S,
                       RULE_PRIORITY,
                       SNAT_PORTS,
                       TRANSIT_WORKER_ADDR,
                       EniCounters,
                       HyperplaneEni,
                       HyperplaneError,
                       port_range_size,
)
from .plane import ensure_vpc_plane, list_vpc_planes, remove_vpc_plane
from .port_guard import PORT_GUARD_MAX_PORTS, ensure_port_guard, port_guards, remove_port_guard
from .reconciler import list_enis, reconcile, remove_all
from .rules import PLANE_VERSION, STEERING_VERSION, plane_ruleset, steering_ruleset
from .steering import Steering, attach, detach, ensure_steering, list_attachments, remove_steering

__all__ = [
    "FLOW_IDLE_TIMEOUT_S", "MAX_ENI", "PLANE_VERSION", "PORT_GUARD_MAX_PORTS", "RULE_PRIORITY",
    "SNAT_PORTS", "STEERING_VERSION", "TRANSIT_WORKER_ADDR", "EniCounters", "HyperplaneEni",
    "HyperplaneError", "PlanePorts", "Steering", "attach", "back_table", "detach",
    "eni_counters", "eni_mark", "eni_state", "eni_stats", "ensure_eni", "ensure_port_guard",
    "ensure_steering", "ensure_vpc_plane", "flow_count", "flow_counts", "list_attachments",
    "list_enis", "list_vpc_planes", "old_layout_number", "out_table", "plane_ports",
    "plane_ruleset", "port_guards", "port_range_size", "reconcile", "remove_all",
    "remove_eni", "remove_old_planes", "remove_port_guard", "remove_steering",
    "remove_vpc_plane", "steering_ruleset",
]
