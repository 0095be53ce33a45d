"""The host's uplink as the internet of VPC gateways (serve without --internet-netns, uplink on).

Owns: the server's own internet namespace (`lp<i>-uplink`, Names.host_internet_netns), its link
to the root namespace (`lp<i>ug` there, `up0` inside), and the nft table `lp<i>-ug` on both
sides. The gateways code (net/gateways.py, net/gateways6.py) links every VPC with an internet
gateway into this namespace exactly as into a --internet-netns one; what differs is what lies
beyond: instead of a test's namespace, a /30 to the root namespace and, there, the host's own
routing table — the way non-VPC functions go out (net/worker.py's uplink).

What leaves: traffic from an Elastic IP, a public IP given at launch or a public NAT gateway's
address (the VPC side translated it already) goes out of `up0`, is masqueraded to this
namespace's end of the /30 and again, in the root namespace, to the host's address — the same
double NAT as the functions' uplink. Refused before it leaves, in both tables: the
destinations net/worker.py refuses to functions (private, CGNAT, link-local, loopback,
multicast, 0/8, 240/4), the networks the host is attached to and all IPv6 (the host uplink
carries none for VPCs); in this namespace's table also the public address pool itself (an
address of the pool no VPC holds must not go out; one a VPC holds is routed to it here and
never reaches `up0`). Like the
functions' uplink, documentation ranges are not refused: they are not routed on the internet
either. What comes in: only replies (conntrack). Nothing from the real network reaches an
Elastic IP in this mode: the pool's addresses exist only here. They are reachable from this
namespace (`ip netns exec lp<i>-uplink …`), i.e. from the host, and with --internet-netns
from whatever the caller puts there. The refused counters tell what was dropped.

Every function does kernel work and runs on the NetThread."""
from __future__ import annotations

import contextlib
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import host_sysctls, nft, ns
from .names import Names
from .netlink import Netlink
from .worker import (
    BLOCKED_DESTINATIONS,
    IP_FORWARD,
    UplinkPlan,
    host_attached_networks,
    host_ruleset,
)

UPLINK_IFNAME = "up0"  # inside the internet namespace
# The counters of the internet namespace's table (read by `net show` and the tests).
REFUSED_COUNTER = "refused"  # leaving for a refused destination, or IPv6
INBOUND_COUNTER = "inbound_refused"  # arriving from the uplink, not a reply
OUT_COUNTER = "out"  # let out of up0


def uplink_plan(names: Names) -> UplinkPlan:
    """The /30 between the root namespace (.1) and the internet namespace (.2); never the
    functions' uplink /30 of the same instance."""
    worker = UplinkPlan.for_instance(names.instance)
    for salt in ("/gateways", "/gateways/2"):
        plan = UplinkPlan.for_instance(names.instance + salt)
        if plan.network != worker.network:
            return plan
    raise RuntimeError("no uplink /30 for the VPC gateways")  # pragma: no cover


def refused_destinations(public_cidr: str, host_networks: tuple[str, ...]) -> tuple[str, ...]:
    """Every IPv4 destination that must not leave by the host's uplink, in a stable order."""
    extra = tuple(n for n in (str(ipaddress.IPv4Network(public_cidr, strict=False)),
                              *host_networks) if n not in BLOCKED_DESTINATIONS)
    return BLOCKED_DESTINATIONS + tuple(dict.fromkeys(extra))


def internet_ruleset(names: Names, refused: tuple[str, ...]) -> str:
    """The internet namespace's table: refuse before anything leaves, masquerade what does,
    let in replies only."""
    t = names.host_internet_table
    up = f'"{UPLINK_IFNAME}"'
    counters = "".join(f"    counter {c} {{ }}\n"
                       for c in (REFUSED_COUNTER, INBOUND_COUNTER, OUT_COUNTER))
    drop = f'counter name "{REFUSED_COUNTER}" drop'
    return (
        f"table inet {t}\n"
        f"delete table inet {t}\n"
        f"table inet {t} {{\n"
        f"{counters}"
        f"    set refused {{ type ipv4_addr; flags interval; auto-merge; "
        f"elements = {{ {', '.join(refused)} }}; }}\n"
        f"    chain forward {{\n"
        f"        type filter hook forward priority filter; policy accept;\n"
        f"        oifname {up} meta nfproto ipv6 {drop}\n"
        f"        oifname {up} ip daddr @refused {drop}\n"
        f'        oifname {up} counter name "{OUT_COUNTER}" accept\n'
        f"        iifname {up} ct state established,related accept\n"
        f'        iifname {up} counter name "{INBOUND_COUNTER}" drop\n'
        f"    }}\n"
        # this namespace's own sockets (the VPC resolvers' upstream queries)
        f"    chain output {{\n"
        f"        type filter hook output priority filter; policy accept;\n"
        f"        oifname {up} meta nfproto ipv6 {drop}\n"
        f"        oifname {up} ip daddr @refused {drop}\n"
        f"    }}\n"
        f"    chain input {{\n"
        f"        type filter hook input priority filter; policy accept;\n"
        f"        iifname {up} ct state established,related accept\n"
        f'        iifname {up} counter name "{INBOUND_COUNTER}" drop\n'
        f"    }}\n"
        f"    chain postrouting {{\n"
        f"        type nat hook postrouting priority srcnat; policy accept;\n"
        f"        oifname {up} masquerade\n"
        f"    }}\n"
        f"}}\n")


def root_ruleset(names: Names, plan: UplinkPlan, host_networks: tuple[str, ...]) -> str:
    """The root namespace's table for this link: the functions' uplink rules (net/worker.py)."""
    return host_ruleset(names, plan, host_networks, table=names.host_internet_table,
                        host_link=names.host_internet_link)


@dataclass(frozen=True)
class HostInternetState:
    """What setup() found and did: whether it switched the host's forwarding on (recorded in
    `host_record` first, net/host_sysctls.py, so a SIGKILLed server's change is put back too)."""
    enabled_host_forwarding: bool
    host_record: Path


def setup(names: Names, public_cidr: str, host_record: Path) -> HostInternetState:
    """Make (or repair) the internet namespace, its link to the root namespace and both
    tables. Idempotent: safe on a half-built or complete one."""
    netns = names.host_internet_netns
    plan = uplink_plan(names)
    ns.create(netns)
    with ns.entered(netns):
        ns.set_sysctl("net.ipv4.ip_forward", "1")
    with Netlink(netns) as nl:
        nl.set_up("lo")
    with Netlink() as root:
        if root.index(names.host_internet_link) is None:
            root.add_veth(names.host_internet_link, UPLINK_IFNAME, peer_netns=netns)
        root.add_address(names.host_internet_link, plan.host_address, 30)
        root.set_up(names.host_internet_link)
    host_networks = host_attached_networks(names)
    # the refusals first: nothing may be routed out before they are in place
    nft.apply(internet_ruleset(names, refused_destinations(public_cidr, host_networks)), netns)
    nft.apply(root_ruleset(names, plan, host_networks), None)
    with Netlink(netns) as nl:
        nl.add_address(UPLINK_IFNAME, plan.worker_address, 30)
        nl.set_up(UPLINK_IFNAME)
        nl.add_route("0.0.0.0/0", UPLINK_IFNAME, gateway=plan.host_address)
    return HostInternetState(host_sysctls.change(host_record, IP_FORWARD, "1"), host_record)


def is_intact(names: Names) -> bool:
    """Whether the namespace, its link and both tables are all there (drift check)."""
    netns = names.host_internet_netns
    if not ns.exists(netns):
        return False
    with Netlink() as root:
        if root.index(names.host_internet_link) is None:
            return False
    table = ("inet", names.host_internet_table)
    return table in nft.tables(names.host_internet_table, netns) \
        and table in nft.tables(names.host_internet_table, None)


def teardown(names: Names, state: HostInternetState | None) -> None:
    """Remove everything setup() made (the VPCs' links into the namespace die with it)."""
    nft.delete_table("inet", names.host_internet_table, None)
    with Netlink() as root:
        root.delete_link(names.host_internet_link)
    with contextlib.suppress(FileNotFoundError):
        ns.delete(names.host_internet_netns)
    if state is not None and state.enabled_host_forwarding:
        host_sysctls.restore(state.host_record, (IP_FORWARD,))


@dataclass(frozen=True)
class CounterReading:
    """One named counter of the internet namespace's table."""
    packets: int
    bytes: int


def parse_counters(listing: list[dict[str, Any]]) -> dict[str, CounterReading]:
    """`nft -j list counters table …` items → the named counters (anything else ignored)."""
    out = {}
    for item in listing:
        c = item.get("counter")
        if isinstance(c, dict) and "name" in c:
            out[str(c["name"])] = CounterReading(int(c.get("packets", 0)), int(c.get("bytes", 0)))
    return out


def readings(names: Names) -> dict[str, CounterReading]:
    """The table's counters (refused, inbound_refused, out); empty when the namespace or the
    table is not there (uplink not in use, or mid-rebuild)."""
    netns = names.host_internet_netns
    if not ns.exists(netns):
        return {}
    try:
        listing = nft.list_json(f"counters table inet {names.host_internet_table}", netns)
    except nft.NftError:
        return {}
    return parse_counters(listing)


def counters(names: Names) -> dict[str, int]:
    """Packets counted in the internet namespace's table: refused, inbound_refused, out."""
    return {name: r.packets for name, r in readings(names).items()}
