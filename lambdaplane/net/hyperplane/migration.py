"""Migration shims for stores and kernels of the Hyperplane layout before 2026-12-06 (a
namespace per VPC, `lp<i>-h-<vpc>`, holding the SNAT; docs/design.md, "History"): recognising
an ENI whose port leads there, and removing those namespaces. service/hyperplane.py moves such
ENIs to the transits at start."""
from __future__ import annotations

from .. import ns
from ..names import Names


def old_layout_number(names: Names, netns: str, ifname: str) -> int | None:
    """n of an ENI whose port's far end is in the old layout, else None."""
    return names.old_layout_number(netns, ifname)


def remove_old_planes(names: Names) -> list[str]:
    """The old layout's namespaces (their veths go with them)."""
    gone = ns.list_named(names.old_plane_netns_prefix)
    for netns in gone:
        ns.delete(netns)
    return gone
