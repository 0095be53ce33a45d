"""TCP across the EVPN fabric: the MSS clamp in a VPC namespace (net/fabric.py calls it).

A VPC namespace's EVPN port carries the segment's MTU (1450: the underlay's 1500 less VXLAN's
50), while the interfaces of its sandboxes' ENIs and resources keep 1500. A full-size segment
routed into the port is too big; the ICMP "fragmentation needed" the namespace sends back does
not reach a sandbox behind the ENI's SNAT and fast path, so a TCP stream from a function on one
host to a resource on another stalled at its first full segment (found by `bench fabric`,
2026-12-07: the probe and small requests passed, a bulk send timed out). The clamp rewrites the
MSS of every SYN and SYN-ACK leaving through the port to the route's MTU (1410 = 1450 less 40),
so both ends send segments that fit. One table per VPC namespace, named after the instance's
prefix (so `clean` of the instance knows it); it goes with the namespace."""
from __future__ import annotations

from . import nft

MSS_TABLE_SUFFIX = "-mss"


def mss_table(vpc_netns: str) -> str:
    """The clamp's table in `vpc_netns` (lp<instance>-vpc-…): lp<instance>-mss."""
    return vpc_netns.split("-vpc-", 1)[0] + MSS_TABLE_SUFFIX


def mss_clamp_ruleset(table: str, port: str) -> str:
    return (f"table inet {table} {{\n"
            f"  chain forward {{\n"
            f"    type filter hook forward priority mangle; policy accept;\n"
            f"    oifname \"{port}\" tcp flags & (syn | rst) == syn "
            f"tcp option maxseg size set rt mtu\n"
            f"  }}\n"
            f"}}\n")


def ensure_mss_clamp(vpc_netns: str, port: str, changes: list[str]) -> None:
    """The clamp on `port` in `vpc_netns`, made once (idempotent)."""
    table = mss_table(vpc_netns)
    if ("inet", table) in nft.tables(table, vpc_netns):
        return
    nft.apply(mss_clamp_ruleset(table, port), vpc_netns)
    changes.append(f"clamped TCP MSS to the route MTU on {port} in {vpc_netns}")
