"""The Hyperplane plane of each VPC: the table `lp<i>-hp` in the VPC namespace (dispatch maps
from ENI ports to ENI chains, reply marking, SNAT hook, the idle timeout of ENI flows) and the
namespace sysctls replies and port-guard resets need. Not owned: the VPC namespace itself
(net/reconcile.py; made here only if the VPC code has not yet), the ENIs' chains
(net/hyperplane/eni.py), the port guard table (net/hyperplane/port_guard.py, removed here with
the plane)."""
from __future__ import annotations

from .. import nft, ns
from ..names import Names
from . import counters
from .eni import remove_eni
from .model import FLOW_IDLE_TIMEOUT_S, read_sysctl
from .rules import (
    PLANE_VERSION,
    idle_object,
    idle_timeout_script,
    plane_enis,
    plane_objects,
    plane_ruleset,
)


def list_vpc_planes(names: Names) -> list[str]:
    """The VPCs whose namespace holds this instance's plane table."""
    out = []
    for netns in ns.list_named(names.vpc_netns_prefix):
        vpc_id = names.vpc_of_netns(netns)
        if vpc_id is not None and nft.tables(names.plane_table, netns) != []:
            out.append(vpc_id)
    return out


def vpc_plane_enis(names: Names, vpc_id: str) -> list[int]:
    """The ENIs that have chains in a VPC's plane."""
    netns = names.vpc_netns(vpc_id)
    if not ns.exists(netns):
        return []
    return plane_enis(plane_objects(names, netns))


def ensure_vpc_plane(names: Names, vpc_id: str,
                     idle_timeout_s: int = FLOW_IDLE_TIMEOUT_S) -> bool:
    """The plane table in a VPC's namespace (made here if the VPC code has not yet), ready for
    ENIs. Returns whether it changed. `idle_timeout_s`: how long an established TCP flow of an
    ENI may stay silent before its NAT binding (and so its port) is released."""
    netns = names.vpc_netns(vpc_id)
    ns.create(netns)
    changed = False
    table = names.plane_table
    current = nft.list_text(f"table ip {table}", netns)
    if current is None or f'comment "{PLANE_VERSION}"' not in current:
        # a plane of another version is rebuilt; its ENIs are repaired by reconcile
        nft.apply((f"delete table ip {table}\n" if current is not None else "")
                  + plane_ruleset(names), netns)
        changed = True
    idle = idle_object(idle_timeout_s)
    objects = plane_objects(names, netns)
    timeouts = {item["ct timeout"]["name"] for item in objects if "ct timeout" in item}
    in_use = {stmt["ct timeout"] for item in objects if "rule" in item
              and item["rule"]["chain"] == "new_flow" for stmt in item["rule"]["expr"]
              if "ct timeout" in stmt}
    if in_use != {idle}:
        nft.apply(idle_timeout_script(names, idle_timeout_s, timeouts), netns)
        changed = True
    with ns.entered(netns):
        # replies to sandboxes leave by the port they came from, which no plain lookup knows
        for key, value in (("net.ipv4.conf.all.rp_filter", "0"),
                           ("net.ipv4.fwmark_reflect", "1")):  # the port guard's resets
            if read_sysctl(key) != value:
                ns.set_sysctl(key, value)
                changed = True
    return changed


def remove_vpc_plane(names: Names, vpc_id: str) -> None:
    """Remove a VPC's plane and every ENI in it (idempotent); the VPC namespace stays."""
    for n in vpc_plane_enis(names, vpc_id):
        remove_eni(names, vpc_id, n)
    netns = names.vpc_netns(vpc_id)
    if ns.exists(netns):
        nft.delete_table("ip", names.plane_table, netns)
        nft.delete_table("ip", names.port_guard_table, netns)
    counters.forget_plane(netns)
