"""The Hyperplane data path's shared vocabulary: the desired state of one ENI, its counters,
the constants every part agrees on, and two small kernel helpers (sysctl read, routing-table
replacement) the plane and the ENIs both use. No kernel state of its own."""
from __future__ import annotations

from dataclasses import dataclass

from ..names import ENI_FIRST, ENI_LAST
from ..netlink import Netlink

# The worker end of every transit holds this /32 (like 169.254.1.1 on every sandbox veth); the
# VPC routes replies to sandboxes via it. Outside the gateway /24 (169.254.1.x), the uplink
# /30s (169.254.2.0–169.254.167.255) and 169.254.169.254.
TRANSIT_WORKER_ADDR = "169.254.200.1"
RULE_PRIORITY = 1000
MAX_ENI = ENI_LAST
SNAT_PORTS = "1024-65535"  # as AWS's NAT platform: 64,512 ports per destination
FLOW_IDLE_TIMEOUT_S = 350  # AWS's NAT idle timeout for established TCP flows


class HyperplaneError(RuntimeError):
    pass


@dataclass(frozen=True)
class HyperplaneEni:
    """One Hyperplane ENI as the data path needs it (desired state, from the store)."""
    n: int  # small integer id: mark, routing tables, transit name
    vpc_id: str
    address: str  # the ENI's address in its subnet; every flow is SNATed to it
    gateway: str  # the subnet's router (.1), reached on-link through the transit
    port: str  # the ENI's port in the VPC namespace: the transit's peer (net/names.py's name)

    def __post_init__(self) -> None:
        if not ENI_FIRST <= self.n <= ENI_LAST:
            raise ValueError(f"ENI id {self.n} out of range {ENI_FIRST}..{ENI_LAST}")


@dataclass(frozen=True)
class EniCounters:
    tx_packets: int  # sandbox → VPC, as arriving from the transit
    tx_bytes: int
    rx_packets: int  # VPC → sandbox, as leaving into the transit
    rx_bytes: int
    dropped_packets: int  # refused: new flows from the VPC, non-TCP/UDP, stray packets


def port_range_size(ports: str) -> int:
    """Ports in a range "lo-hi"."""
    lo, hi = (int(p) for p in ports.split("-"))
    return hi - lo + 1


def read_sysctl(key: str) -> str:
    with open("/proc/sys/" + key.replace(".", "/")) as f:
        return f.read().strip()


def replace_table(nl: Netlink, table: int, routes: list[tuple[str, str, str | None]]) -> None:
    """Make routing table `table` hold exactly `routes` (dst, link, gateway); scope-link routes
    first, so the gateways they make reachable are on-link when the rest are added."""
    wanted = {dst if "/" in dst else f"{dst}/32" for dst, _l, _g in routes}
    for route in nl.table_routes(table):
        if f"{route.dst}/{route.dst_len}" not in wanted:
            nl.delete_route(f"{route.dst}/{route.dst_len}", table=table)
    for dst, link, gateway in routes:
        nl.add_route(dst, link, gateway=gateway, table=table, scope_link=gateway is None)
