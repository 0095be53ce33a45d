"""The Hyperplane data path: how a sandbox in the worker reaches its VPC through a shared ENI.

Owns, per VPC, the hyperplane namespace `lp<i>-h-<vpc>` (its own routing and conntrack, so
VPCs with the same CIDR never meet); per Hyperplane ENI `n` the transit veth worker `lp<i>t<n>`
↔ hp `t<n>`, the policy routes on both sides, the ENI's address on the ENI link `e<n>`, SNAT to
that address and the per-ENI filter and counters; and in the worker the steering table, whose
map `sandbox address → mark n` is the *only* thing a cold start touches (one element).

Not owned: the ENI link `e<n>` itself (its peer is a port of the VPC namespace, made by
net/vpc.py with `e<n>` created directly in the hp namespace), security groups (enforced in the
VPC namespace on that port), the worker namespace and its table (net/worker.py).

Packet path of a steered sandbox (mark n, table 1000+n):
  sandbox eth0 → worker `lp<i>s<slot>` → [steer: mark n, untracked in the worker: the plane
  tracks the flow] → rule fwmark n → table 1000+n:
  default via 169.254.200.2 dev lp<i>t<n> → hp `t<n>` → rule iif t<n> → table 1000+n: default
  via <subnet gateway> dev e<n> → [filter out<n>, SNAT to ENI:1024-65535] → VPC port.
Replies: VPC → e<n> → [de-NAT] → rule iif e<n> → table 100000+n: 100.64.0.0/10 via
  169.254.200.1 dev t<n> → worker → /32 route to the sandbox.
Nothing from e<n> may open a flow (in<n> accepts only established/related).

Every function is synchronous kernel work for the NetThread. Everything is idempotent, and
`reconcile` changes the kernel only where it differs from the desired state."""
from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from . import nft, ns
from .names import Names
from .netlink import Netlink
from .nft_elements import MapElements
from .worker import GATEWAY, SANDBOX_NET

# Transit link addresses: the same /32 pair on every transit (like 169.254.1.1 on every sandbox
# veth). Outside the gateway /24 (169.254.1.x), the uplink /30s (169.254.2.0–169.254.167.255)
# and 169.254.169.254.
TRANSIT_WORKER_ADDR = "169.254.200.1"
TRANSIT_HP_ADDR = "169.254.200.2"
RULE_PRIORITY = 1000
OUT_TABLE_BASE = 1000  # worker and hp: table of ENI n's outbound path
BACK_TABLE_BASE = 100000  # hp only: table of ENI n's replies towards the worker
MAX_ENI = 99999
SNAT_PORTS = "1024-65535"  # as AWS's NAT platform: 64,512 ports per destination
FLOW_IDLE_TIMEOUT_S = 350  # AWS's NAT idle timeout for established TCP flows


class HyperplaneError(RuntimeError):
    pass


@dataclass(frozen=True)
class HyperplaneEni:
    """One Hyperplane ENI as the data path needs it (desired state, from the store)."""
    n: int  # small integer id: mark, routing tables, link names
    vpc_id: str
    address: str  # the ENI's address in its subnet; every flow is SNATed to it
    gateway: str  # the subnet's router (.1), reached on-link through the ENI link
    # Prefix of the address on the ENI link. net/vpc.py configures the far end of its ports as
    # address/subnet-prefix; pass the same here so the two reconcilers agree. Routing in the
    # plane never uses the resulting connected route (per-ENI tables decide).
    prefixlen: int = 32

    def __post_init__(self) -> None:
        if not 1 <= self.n <= MAX_ENI:
            raise ValueError(f"ENI id {self.n} out of range 1..{MAX_ENI}")


@dataclass(frozen=True)
class EniCounters:
    tx_packets: int  # sandbox → VPC, as arriving from the transit
    tx_bytes: int
    rx_packets: int  # VPC → sandbox, as arriving on the ENI link
    rx_bytes: int
    dropped_packets: int  # refused: new flows from the VPC, non-TCP/UDP, stray packets


def eni_mark(n: int) -> int:
    return n


def out_table(n: int) -> int:
    return OUT_TABLE_BASE + n


def back_table(n: int) -> int:
    return BACK_TABLE_BASE + n


def hp_transit_link(n: int) -> str:
    return f"t{n}"


def hp_table(names: Names) -> str:
    return f"{names.nft_table}-hp"


def steer_table(names: Names) -> str:
    return f"{names.nft_table}-steer"


def _sandbox_glob(names: Names) -> str:
    return f'"{names.sandbox_veth(0)[:-1]}*"'


def _transit_glob(names: Names) -> str:
    return f'"{names.transit_veth(0)[:-1]}*"'


# worker steering ---------------------------------------------------------------------------
# Bumped whenever steering_ruleset changes: an older table (a worker namespace that outlived its
# server) is then replaced, its map elements carried over in the same transaction.
STEERING_VERSION = "steer-3"


def steering_ruleset(names: Names) -> str:
    table = steer_table(names)
    sandboxes, transits = _sandbox_glob(names), _transit_glob(names)
    return (
        f"table ip {table} {{\n"
        f'    comment "{STEERING_VERSION}"\n'
        f"    map steer {{ type ipv4_addr : mark; }}\n"
        f"    chain prerouting {{\n"
        # raw + 1: after the worker's raw-priority anti-spoofing (fib saddr . iif), so a
        # sandbox can only steer its own address, and before conntrack (-200), so that
        # steered flows are not tracked here.
        f"        type filter hook prerouting priority raw + 1; policy accept;\n"
        # the Runtime API (the gateway) is local to the worker for every sandbox: its
        # packets are not steered
        f"        iifname {sandboxes} ip daddr != {GATEWAY} meta mark set ip saddr map @steer\n"
        # The hyperplane plane tracks these flows (NAT, filter, flow counts); a second entry
        # here cost a conntrack pass per packet and put every VPC flow of every sandbox, of
        # every VPC, in the worker's one table (nf_conntrack_max counts per namespace), next
        # to the uplink's flows. Both directions skip it; the worker's forward chain admits
        # untracked packets from a transit to a sandbox only.
        f"        meta mark != 0 notrack\n"
        f"        iifname {transits} notrack\n"
        f"    }}\n"
        f"    chain forward {{\n"
        f"        type filter hook forward priority -10; policy accept;\n"
        # a steered packet leaves by a transit or not at all: if its ENI's table has lost its
        # route (ENI being removed), the lookup falls through to main, i.e. to the uplink
        f"        meta mark != 0 oifname != {transits} drop\n"
        # a transit carries replies to sandboxes and nothing else: what may come back at all
        # (established/related flows only) is decided statefully by the plane's in<n> chain
        f"        iifname {transits} oifname != {sandboxes} drop\n"
        f"    }}\n"
        f"}}\n")


def ensure_steering(names: Names) -> bool:
    """The worker's steering table. Made once and left alone (its map is live state) unless
    it is of an older STEERING_VERSION: then it is replaced with its elements in one
    transaction. Returns whether anything changed."""
    netns, table = names.worker_netns, steer_table(names)
    if ("ip", table) not in nft.tables(table, netns):
        nft.apply(steering_ruleset(names), netns)
        return True
    current = nft.list_text(f"table ip {table}", netns) or ""
    if f'comment "{STEERING_VERSION}"' in current:
        return False
    kept = list_attachments(names)
    elements = ", ".join(f"{addr} : {eni_mark(n)}" for addr, n in sorted(kept.items()))
    nft.apply(f"delete table ip {table}\n" + steering_ruleset(names)
              + (f"add element ip {table} steer {{ {elements} }}\n" if elements else ""), netns)
    return True


def remove_steering(names: Names) -> None:
    if ns.exists(names.worker_netns):
        nft.delete_table("ip", steer_table(names), names.worker_netns)


class Steering:
    """attach/detach on a netlink socket kept open in the worker: the cold-start path pays
    one map-element transaction (~0.01 ms, net/nft_elements.py) and no setns. Used from one
    thread at a time (the service calls it on the event loop); close() before the worker
    netns goes."""

    def __init__(self, names: Names) -> None:
        self.names = names
        self._elements = MapElements(names.worker_netns, steer_table(names), "steer")

    def attach(self, sandbox_addr: str, n: int) -> None:
        """Steer a sandbox into ENI n: one map element, one transaction."""
        try:
            self._elements.add(sandbox_addr, eni_mark(n))
        except FileExistsError:  # steered to another ENI: move it, in one transaction
            self._elements.replace(sandbox_addr, eni_mark(n))

    def detach(self, sandbox_addr: str) -> None:
        """Stop steering a sandbox (idempotent): its next packets find no path to any VPC."""
        with contextlib.suppress(FileNotFoundError):
            self._elements.delete(sandbox_addr)

    def close(self) -> None:
        self._elements.close()


def attach(names: Names, sandbox_addr: str, n: int) -> None:
    """One-shot Steering.attach (reconcile, tools); hot paths keep a Steering."""
    steering = Steering(names)
    try:
        steering.attach(sandbox_addr, n)
    finally:
        steering.close()


def detach(names: Names, sandbox_addr: str) -> None:
    steering = Steering(names)
    try:
        steering.detach(sandbox_addr)
    finally:
        steering.close()


def list_attachments(names: Names) -> dict[str, int]:
    """sandbox address → ENI id, as the kernel has it."""
    if not ns.exists(names.worker_netns):
        return {}
    try:
        items = nft.list_json(f"map ip {steer_table(names)} steer", names.worker_netns)
    except nft.NftError:
        return {}
    out: dict[str, int] = {}
    for item in items:
        for addr, mark in item.get("map", {}).get("elem", []):
            out[addr] = int(mark)
    return out


# VPC planes -----------------------------------------------------------------------------------
def hp_ruleset(names: Names) -> str:
    table = hp_table(names)
    return (
        f"table ip {table} {{\n"
        f"    map from_link {{ type ifname : verdict; }}\n"
        f"    map snat_link {{ type ifname : verdict; }}\n"
        f"    chain forward {{\n"
        f"        type filter hook forward priority filter; policy drop;\n"
        f"        iifname vmap @from_link\n"
        f"    }}\n"
        f"    chain postrouting {{\n"
        f"        type nat hook postrouting priority srcnat; policy accept;\n"
        f"        oifname vmap @snat_link\n"
        f"    }}\n"
        # the hyperplane namespace itself serves nothing (ARP is not IP, so it still works)
        f"    chain input {{\n"
        f"        type filter hook input priority filter; policy drop;\n"
        f"    }}\n"
        f"}}\n")


def list_vpc_planes(names: Names) -> list[str]:
    prefix = names.hyperplane_netns("")
    return [name[len(prefix):] for name in ns.list_named(prefix)]


def ensure_vpc_plane(names: Names, vpc_id: str,
                     idle_timeout_s: int = FLOW_IDLE_TIMEOUT_S) -> bool:
    """The hyperplane namespace of one VPC, ready for ENI links. Returns whether it changed.
    `idle_timeout_s`: how long an established TCP flow may stay silent before its NAT
    binding (and so its port) is released."""
    netns = names.hyperplane_netns(vpc_id)
    changed = not ns.exists(netns)
    ns.create(netns)
    if ("ip", hp_table(names)) not in nft.tables(hp_table(names), netns):
        # first: the nat chains make conntrack (and its per-netns sysctls) exist here
        nft.apply(hp_ruleset(names), netns)
        changed = True
    with ns.entered(netns):
        for key, value in (("net.ipv4.ip_forward", "1"),
                           # policy routing by ingress link: no reverse path fits a plain lookup
                           ("net.ipv4.conf.all.rp_filter", "0"),
                           ("net.ipv4.conf.default.rp_filter", "0"),
                           ("net.ipv6.conf.all.disable_ipv6", "1"),
                           ("net.ipv6.conf.default.disable_ipv6", "1"),
                           ("net.netfilter.nf_conntrack_tcp_timeout_established",
                            str(int(idle_timeout_s)))):
            if _read_sysctl(key) != value:
                ns.set_sysctl(key, value)
                changed = True
    return changed


def remove_vpc_plane(names: Names, vpc_id: str) -> None:
    """Remove a VPC's plane and every ENI in it (idempotent)."""
    for n in _plane_enis(names, vpc_id):
        remove_eni(names, vpc_id, n)
    netns = names.hyperplane_netns(vpc_id)
    ns.delete(netns)
    for key in [k for k in _IDLE if k[0] == netns]:
        del _IDLE[key]


# ENIs -------------------------------------------------------------------------------------
def ensure_eni(names: Names, eni: HyperplaneEni, ports: str = SNAT_PORTS) -> None:
    """Make ENI `eni` carry traffic: transit, routes and rules on both sides, SNAT, filter.
    The plane must exist and the ENI link `e<n>` must already be in it (net/vpc.py).
    `ports`: the SNAT source-port range "lo-hi" (narrowed only by tests and benchmarks)."""
    n, hp = eni.n, names.hyperplane_netns(eni.vpc_id)
    eni_link, hp_transit, worker_transit = names.hyperplane_eni_link(n), hp_transit_link(n), \
        names.transit_veth(n)
    if not ns.exists(hp):
        raise HyperplaneError(f"no hyperplane namespace for {eni.vpc_id}")
    with Netlink(hp) as hpl, Netlink(names.worker_netns) as wl:
        if hpl.index(eni_link) is None:
            raise HyperplaneError(f"ENI link {eni_link} missing in {hp}")
        if hpl.index(hp_transit) is None:
            wl.delete_link(worker_transit)  # a stale end whose peer lives in another plane
            wl.add_veth(worker_transit, hp_transit, peer_netns=hp)
        # worker side
        with ns.entered(names.worker_netns):
            ns.set_sysctl(f"net.ipv4.conf.{worker_transit}.rp_filter", "0")
        wl.add_address(worker_transit, TRANSIT_WORKER_ADDR, 32)
        wl.set_up(worker_transit)
        wl.add_route(f"{TRANSIT_HP_ADDR}/32", worker_transit, table=out_table(n), scope_link=True)
        wl.add_route("0.0.0.0/0", worker_transit, gateway=TRANSIT_HP_ADDR, table=out_table(n))
        wl.add_rule(eni_mark(n), out_table(n), RULE_PRIORITY)
        # hyperplane side
        for addr, plen in hpl.addresses(eni_link) - {(eni.address, eni.prefixlen)}:
            hpl.delete_address(eni_link, addr, plen)
        hpl.add_address(eni_link, eni.address, eni.prefixlen)
        hpl.set_up(eni_link)
        hpl.add_address(hp_transit, TRANSIT_HP_ADDR, 32)
        hpl.set_up(hp_transit)
        _replace_table(hpl, out_table(n), [(f"{eni.gateway}/32", eni_link, None),
                                           ("0.0.0.0/0", eni_link, eni.gateway)])
        _replace_table(hpl, back_table(n), [(f"{TRANSIT_WORKER_ADDR}/32", hp_transit, None),
                                            (str(SANDBOX_NET), hp_transit, TRANSIT_WORKER_ADDR)])
        hpl.add_iif_rule(hp_transit, out_table(n), RULE_PRIORITY)
        hpl.add_iif_rule(eni_link, back_table(n), RULE_PRIORITY)
    nft.apply(_eni_nft_script(names, eni, ports), hp)
    _allow_worker_egress(names, worker_transit)


def remove_eni(names: Names, vpc_id: str, n: int) -> None:
    """Take ENI n out of service (idempotent): sandboxes steered to it lose their path, its
    transit, routes, rules, SNAT and counters go. The ENI link itself, with its address, stays
    (net/vpc.py's): without dispatch, routes or rules it carries nothing."""
    hp = names.hyperplane_netns(vpc_id)
    worker_transit = names.transit_veth(n)
    if ns.exists(names.worker_netns):
        steered = [a for a, m in list_attachments(names).items() if m == eni_mark(n)]
        script = [f"delete element ip {steer_table(names)} steer {{ {', '.join(steered)} }}"] \
            if steered else []
        if _worker_egress_has(names, worker_transit):
            script.append(f'delete element inet {names.nft_table} egress_ifnames '
                          f'{{ "{worker_transit}" }}')
        if script:
            nft.apply("\n".join(script), names.worker_netns)
        with Netlink(names.worker_netns) as wl:
            wl.delete_rule(eni_mark(n), out_table(n), RULE_PRIORITY)
            wl.delete_link(worker_transit)  # its peer t<n> and their routes go with it
            _replace_table(wl, out_table(n), [])
    if ns.exists(hp):
        script = _eni_nft_removal(names, n, hp)
        if script:
            nft.apply(script, hp)
        with Netlink(hp) as hpl:
            hpl.delete_iif_rule(hp_transit_link(n), out_table(n), RULE_PRIORITY)
            hpl.delete_iif_rule(names.hyperplane_eni_link(n), back_table(n), RULE_PRIORITY)
            hpl.delete_link(hp_transit_link(n))
            _replace_table(hpl, out_table(n), [])
            _replace_table(hpl, back_table(n), [])


def list_enis(names: Names) -> dict[int, str | None]:
    """ENI id → the VPC whose plane holds its transit (None: a worker transit whose plane is
    gone). eni_state() tells whether each is complete."""
    out: dict[int, str | None] = {}
    for vpc_id in list_vpc_planes(names):
        for n in _plane_enis(names, vpc_id):
            out[n] = vpc_id
    if ns.exists(names.worker_netns):
        with Netlink(names.worker_netns) as wl:
            prefix = names.transit_veth(0)[:-1]
            for link in wl.links(prefix):
                tail = link.name[len(prefix):]
                if tail.isdigit() and int(tail) not in out:
                    out[int(tail)] = None
    return out


def eni_state(names: Names, vpc_id: str, n: int) -> HyperplaneEni | None:
    """Read ENI n of `vpc_id` back from the kernel; None unless every piece is in place."""
    hp = names.hyperplane_netns(vpc_id)
    eni_link, hp_transit, worker_transit = names.hyperplane_eni_link(n), hp_transit_link(n), \
        names.transit_veth(n)
    if not ns.exists(hp) or not ns.exists(names.worker_netns):
        return None
    with Netlink(hp) as hpl, Netlink(names.worker_netns) as wl:
        if None in (hpl.index(eni_link), hpl.index(hp_transit), wl.index(worker_transit)):
            return None
        addrs = hpl.addresses(eni_link)
        if len(addrs) != 1:
            return None
        address, prefixlen = next(iter(addrs))
        gateways = [r.gateway for r in hpl.table_routes(out_table(n)) if r.dst_len == 0]
        back = {(r.dst, r.dst_len, r.gateway) for r in hpl.table_routes(back_table(n))}
        hp_rules = {(r.iifname, r.table) for r in hpl.rules()}
        worker_ok = (
            (eni_mark(n), out_table(n)) in {(r.fwmark, r.table) for r in wl.rules()}
            and any(r.dst_len == 0 and r.gateway == TRANSIT_HP_ADDR
                    for r in wl.table_routes(out_table(n)))
            and (TRANSIT_WORKER_ADDR, 32) in wl.addresses(worker_transit)
            and (TRANSIT_HP_ADDR, 32) in hpl.addresses(hp_transit))
        if (len(gateways) != 1 or not worker_ok
                or (str(SANDBOX_NET.network_address), SANDBOX_NET.prefixlen,
                    TRANSIT_WORKER_ADDR) not in back
                or not {(hp_transit, out_table(n)), (eni_link, back_table(n))} <= hp_rules):
            return None
    if _nft_snat_address(names, n, hp) != address:
        return None
    if _worker_egress_has(names, worker_transit) is False:
        return None
    return HyperplaneEni(n, vpc_id, address, gateways[0], prefixlen)


# metrics ---------------------------------------------------------------------------------
def eni_counters(names: Names, vpc_id: str, n: int) -> EniCounters:
    values: dict[str, tuple[int, int]] = {}
    for item in nft.list_json(f"counters table ip {hp_table(names)}",
                              names.hyperplane_netns(vpc_id)):
        counter = item.get("counter")
        if counter:
            values[counter["name"]] = (counter["packets"], counter["bytes"])
    tx, rx, drop = (values.get(f"{k}{n}", (0, 0)) for k in ("tx", "rx", "drop"))
    return EniCounters(tx[0], tx[1], rx[0], rx[1], drop[0])


def flow_counts(names: Names, vpc_id: str) -> dict[str, int]:
    """Tracked flows per SNAT address in one plane (the 65,000-flows rule): a NATed flow's
    reply tuple is addressed to the ENI. Each read also feeds the idle-expiry watch."""
    netns = names.hyperplane_netns(vpc_id)
    flows = _read_flows(netns)
    _watch_idle(netns, flows)
    counts: dict[str, int] = {}
    for flow in flows:
        counts[flow.nat_address] = counts.get(flow.nat_address, 0) + 1
    return counts


def eni_stats(names: Names, vpc_id: str, n: int) -> dict[str, int]:
    """ENI n's counters beyond bytes/packets (monotonic, since the ENI or plane was made):

    new_connections: SYNs/first packets of new flows the ENI let out (nft counter new<n>;
      a retried SYN of a flow that found no port counts again).
    port_allocation_errors: the plane's conntrack `insert_failed` — first packets dropped
      because SNAT found no free source port (the clash is detected when the flow is
      confirmed). Conntrack keeps it per namespace, i.e. per VPC: every ENI of a VPC reports
      the VPC's number; with one ENI in the VPC it is exactly that ENI's.
    idle_timeouts: established TCP flows of this ENI that vanished once their idle timer had
      run out (seen by comparing successive conntrack reads: the flow-count sampling and
      this call), so flows born and expired between two reads are not seen."""
    netns = names.hyperplane_netns(vpc_id)
    new = 0
    address: str | None = None
    for item in _hp_objects(names, netns):
        counter = item.get("counter")
        if counter and counter["name"] == f"new{n}":
            new = counter["packets"]
        rule = item.get("rule")
        if rule and rule["chain"] == f"snat{n}":
            for expr in rule["expr"]:
                if "snat" in expr:
                    address = expr["snat"].get("addr")
    _watch_idle(netns, _read_flows(netns))
    watch = _IDLE.get((netns, address or ""))
    return {"new_connections": new,
            "port_allocation_errors": conntrack_stats(netns).get("insert_failed", 0),
            "idle_timeouts": watch.expired if watch else 0}


def conntrack_stats(netns: str) -> dict[str, int]:
    """The namespace's conntrack statistics (/proc/net/stat/nf_conntrack), summed over CPUs."""
    with ns.entered(netns):
        try:
            with open("/proc/thread-self/net/stat/nf_conntrack") as f:
                lines = f.read().split("\n")
        except FileNotFoundError:
            return {}
    keys, totals = lines[0].split(), {}
    for line in lines[1:]:
        for key, value in zip(keys, line.split()):
            totals[key] = totals.get(key, 0) + int(value, 16)
    totals.pop("entries", None)  # a level (and global), not a per-CPU event count
    return totals


@dataclass(frozen=True)
class _Flow:
    key: str  # the original tuple
    nat_address: str  # reply destination: the ENI's address for NATed flows
    established_tcp: bool
    timeout_s: int  # seconds left on its timer


@dataclass
class _IdleWatch:
    deadlines: dict[str, float] = field(default_factory=dict)  # flow → when its timer ends
    expired: int = 0


_IDLE: dict[tuple[str, str], _IdleWatch] = {}  # (plane netns, ENI address) → watch
_IDLE_SLACK_S = 1.0  # timer granularity and read time


def _read_flows(netns: str) -> list[_Flow]:
    with ns.entered(netns):
        try:
            with open("/proc/thread-self/net/nf_conntrack") as f:
                lines = f.readlines()
        except FileNotFoundError:  # conntrack not loaded here yet: no flows
            return []
    flows = []
    for line in lines:
        fields = line.split()
        dsts = [f[4:] for f in fields if f.startswith("dst=")]
        if len(dsts) < 2 or len(fields) < 6:
            continue
        tcp = fields[2] == "tcp"
        start = next((i for i, f in enumerate(fields) if f.startswith("src=")), 0)
        flows.append(_Flow(" ".join(fields[2:3] + fields[start:start + 4]),
                           dsts[1], tcp and fields[5] == "ESTABLISHED",
                           int(fields[4]) if fields[4].isdigit() else 0))
    return flows


def _watch_idle(netns: str, flows: list[_Flow]) -> None:
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


def flow_count(names: Names, vpc_id: str, address: str) -> int:
    return flow_counts(names, vpc_id).get(address, 0)


# reconcile ---------------------------------------------------------------------------------
def reconcile(names: Names, enis: Iterable[HyperplaneEni], attachments: Mapping[str, int],
              vpc_ids: Iterable[str] = (),
              idle_timeout_s: int = FLOW_IDLE_TIMEOUT_S) -> list[str]:
    """Make the kernel hold exactly these planes, ENIs and attachments; returns what it did
    (empty when nothing differed). ENIs whose link the VPC code has not made yet are skipped
    (listed as waiting) and picked up by the next run."""
    done: list[str] = []
    desired = {e.n: e for e in enis}
    planes = set(vpc_ids) | {e.vpc_id for e in desired.values()}
    if ensure_steering(names):
        done.append("steering table")
    for vpc_id in sorted(set(list_vpc_planes(names)) - planes):
        remove_vpc_plane(names, vpc_id)
        done.append(f"removed plane {vpc_id}")
    for n, where in sorted(list_enis(names).items()):
        want = desired.get(n)
        if want is None or where != want.vpc_id:
            remove_eni(names, where or "", n)
            done.append(f"removed eni {n}")
    for vpc_id in sorted(planes):
        if ensure_vpc_plane(names, vpc_id, idle_timeout_s):
            done.append(f"plane {vpc_id}")
    for n, want in sorted(desired.items()):
        if eni_state(names, want.vpc_id, n) == want:
            continue
        with Netlink(names.hyperplane_netns(want.vpc_id)) as hpl:
            if hpl.index(names.hyperplane_eni_link(n)) is None:
                done.append(f"waiting for link of eni {n}")
                continue
        ensure_eni(names, want)
        done.append(f"eni {n}")
    actual = list_attachments(names)
    for addr, n in sorted(actual.items()):
        if attachments.get(addr) != n:
            detach(names, addr)
            done.append(f"detached {addr}")
    for addr, n in sorted(attachments.items()):
        if actual.get(addr) != n:
            attach(names, addr, n)
            done.append(f"attached {addr} to {n}")
    return done


def remove_all(names: Names) -> None:
    """Every plane, ENI and the steering table of this instance (shutdown, tests)."""
    for vpc_id in list_vpc_planes(names):
        remove_vpc_plane(names, vpc_id)
    for n, where in list_enis(names).items():
        remove_eni(names, where or "", n)
    remove_steering(names)


# internals ---------------------------------------------------------------------------------
def _read_sysctl(key: str) -> str:
    with open("/proc/sys/" + key.replace(".", "/")) as f:
        return f.read().strip()


def _plane_enis(names: Names, vpc_id: str) -> list[int]:
    hp = names.hyperplane_netns(vpc_id)
    if not ns.exists(hp):
        return []
    with Netlink(hp) as hpl:
        return sorted(int(link.name[1:]) for link in hpl.links("t") if link.name[1:].isdigit())


def _replace_table(nl: Netlink, table: int, routes: list[tuple[str, str, str | None]]) -> None:
    """Make routing table `table` hold exactly `routes` (dst, link, gateway); scope-link routes
    first, so the gateways they make reachable are on-link when the rest are added."""
    wanted = {dst if "/" in dst else f"{dst}/32" for dst, _l, _g in routes}
    for route in nl.table_routes(table):
        if f"{route.dst}/{route.dst_len}" not in wanted:
            nl.delete_route(f"{route.dst}/{route.dst_len}", table=table)
    for dst, link, gateway in routes:
        nl.add_route(dst, link, gateway=gateway, table=table, scope_link=gateway is None)


def _eni_nft_script(names: Names, eni: HyperplaneEni, ports: str = SNAT_PORTS) -> str:
    """ENI n's chains, counters and dispatch elements: one transaction, safe to repeat."""
    table, n = hp_table(names), eni.n
    eni_link, hp_transit = names.hyperplane_eni_link(n), hp_transit_link(n)
    t = f"ip {table}"
    return "\n".join([
        f"add counter {t} tx{n}",
        f"add counter {t} rx{n}",
        f"add counter {t} drop{n}",
        f"add counter {t} new{n}",
        f"add chain {t} out{n}",
        f"flush chain {t} out{n}",
        f'add rule {t} out{n} counter name "tx{n}"',
        f"add rule {t} out{n} ct state established,related accept",
        # AWS: TCP and UDP only; from sandbox addresses only; out of this ENI only
        # new<n>: flows opened (SYN retries of a flow that found no port count again)
        f'add rule {t} out{n} ct state new oifname "{eni_link}" ip saddr {SANDBOX_NET} '
        f'meta l4proto {{ tcp, udp }} counter name "new{n}" accept',
        f'add rule {t} out{n} counter name "drop{n}" drop',
        f"add chain {t} in{n}",
        f"flush chain {t} in{n}",
        f'add rule {t} in{n} counter name "rx{n}"',
        f"add rule {t} in{n} ct state established,related accept",
        # nothing in the VPC may open a connection to a function
        f'add rule {t} in{n} counter name "drop{n}" drop',
        f"add chain {t} snat{n}",
        f"flush chain {t} snat{n}",
        # fully-random: every new flow gets a random port of the range, so sandbox ports are
        # neither kept nor guessable; `persistent` only matters for several addresses
        f"add rule {t} snat{n} meta l4proto {{ tcp, udp }} "
        f"snat to {eni.address}:{ports} fully-random",
        f'add element {t} from_link {{ "{hp_transit}" : jump out{n}, '
        f'"{eni_link}" : jump in{n} }}',
        f'add element {t} snat_link {{ "{eni_link}" : jump snat{n} }}',
    ])


def _hp_objects(names: Names, hp: str) -> list[dict[str, Any]]:
    try:
        return nft.list_json(f"table ip {hp_table(names)}", hp)
    except nft.NftError:
        return []


def _eni_nft_removal(names: Names, n: int, hp: str) -> str:
    t = f"ip {hp_table(names)}"
    objects = _hp_objects(names, hp)
    ours = {f"out{n}", f"in{n}", f"snat{n}"}
    lines: list[str] = []
    for item in objects:
        m = item.get("map")
        if m:
            keys = [k for k, v in m.get("elem", []) if v.get("jump", {}).get("target") in ours]
            if keys:
                lines.append(f"delete element {t} {m['name']} {{ "
                             + ", ".join(f'"{k}"' for k in keys) + " }")
    chains = {item["chain"]["name"] for item in objects if "chain" in item}
    lines += [f"delete chain {t} {c}" for c in sorted(ours & chains)]
    counters = {item["counter"]["name"] for item in objects if "counter" in item}
    lines += [f"delete counter {t} {c}" for c in sorted(
        {f"tx{n}", f"rx{n}", f"drop{n}", f"new{n}"} & counters)]
    return "\n".join(lines)


def _nft_snat_address(names: Names, n: int, hp: str) -> str | None:
    """The SNAT address of ENI n's chain if the chain and its dispatch are complete."""
    objects = _hp_objects(names, hp)
    dispatch: set[str] = set()
    address: str | None = None
    for item in objects:
        m = item.get("map")
        if m:
            dispatch |= {v.get("jump", {}).get("target") for _k, v in m.get("elem", [])}
        rule = item.get("rule")
        if rule and rule["chain"] == f"snat{n}":
            for expr in rule["expr"]:
                if "snat" in expr:
                    address = expr["snat"].get("addr")
    if not {f"out{n}", f"in{n}", f"snat{n}"} <= dispatch:
        return None
    return address


def _worker_egress_has(names: Names, ifname: str) -> bool | None:
    """Whether the worker table (net/worker.py) lets sandboxes forward out of `ifname`;
    None when there is no worker table (stand-alone use)."""
    netns = names.worker_netns
    if not ns.exists(netns):
        return None
    with contextlib.suppress(nft.NftError):
        for item in nft.list_json(f"set inet {names.nft_table} egress_ifnames", netns):
            return ifname in (item.get("set", {}).get("elem") or [])
    return None


def _allow_worker_egress(names: Names, ifname: str) -> None:
    if _worker_egress_has(names, ifname) is False:
        nft.apply(f'add element inet {names.nft_table} egress_ifnames {{ "{ifname}" }}',
                  names.worker_netns)



# port exhaustion (service/hyperplane.py's port rule) -----------------------------------------
# A NATed flow's reply tuple is (destination, ENI address, source port): an ENI has as many
# flows to one destination (protocol, address, port) as its SNAT range has ports. The port
# guard, a table of its own in the plane (the data path's chains are net/hyperplane.py's and
# rewritten by ensure_eni), refuses a new flow at once — TCP reset, ICMP port unreachable for
# UDP — when the ENI's open flows to that destination (conntrack's count, `ct count`, which
# leaves out TCP flows in TIME_WAIT/CLOSE) already fill the range, and counts it per ENI.
# Without it NAT finds no port, conntrack drops the SYN at confirmation (`insert_failed`, per
# plane) and the function waits for its connect timeout. Its cost: `ct count` walks the ENI's
# list of flows to that destination once per jiffy, so at the full range (64,512 ports) it
# tripled the CPU time of opening 19,000 connections to one destination (measured; 1.4x at
# 5,000): the guard is installed only on ranges up to PORT_GUARD_MAX_PORTS.
PORT_GUARD_MAX_PORTS = 4096
PORT_GUARD_RULE_PRIORITY = 990  # before the iif rules: the guard's replies find their way back


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


def port_range_size(ports: str) -> int:
    lo, hi = (int(p) for p in ports.split("-"))
    return hi - lo + 1


def port_guard_table(names: Names) -> str:
    return f"{names.nft_table}-ports"


def plane_ports(names: Names, vpc_id: str, destinations: bool = False) -> PlanePorts:
    """Read one plane for the port rule; also feeds the idle-expiry watch (as flow_counts).
    `destinations`: also each ENI's busiest destination and range (~6x the CPU per flow, so
    only when a plane's errors must be shared among its ENIs)."""
    netns = names.hyperplane_netns(vpc_id)
    flows = _read_flows(netns)
    _watch_idle(netns, flows)
    counts: dict[str, int] = {}
    for flow in flows:
        counts[flow.nat_address] = counts.get(flow.nat_address, 0) + 1
    refused: dict[int, int] = {}
    with contextlib.suppress(nft.NftError):
        for item in nft.list_json(f"counters table ip {port_guard_table(names)}", netns):
            counter = item.get("counter")
            if counter and counter["name"].startswith("refused") \
                    and counter["name"][7:].isdigit():
                refused[int(counter["name"][7:])] = counter["packets"]
    failed = conntrack_stats(netns).get("insert_failed", 0)
    if not destinations:
        return PlanePorts(counts, refused, failed)
    per_destination: dict[tuple[str, str], int] = {}
    for flow in flows:
        parts = flow.key.split()  # proto src= dst= sport= dport=
        if len(parts) == 5 and parts[0] in ("tcp", "udp"):
            where = (flow.nat_address, f"{parts[0]} {parts[2]} {parts[4]}")
            per_destination[where] = per_destination.get(where, 0) + 1
    busiest: dict[str, int] = {}
    for (address, _destination), count in per_destination.items():
        busiest[address] = max(busiest.get(address, 0), count)
    ranges: dict[int, int] = {}
    for item in _hp_objects(names, netns):
        rule = item.get("rule")
        if rule and rule["chain"].startswith("snat") and rule["chain"][4:].isdigit():
            for expr in rule["expr"]:
                if "snat" in expr:
                    ranges[int(rule["chain"][4:])] = _range_size(expr["snat"].get("port"))
    return PlanePorts(counts, refused, failed, busiest, ranges)


def _range_size(port: Any) -> int:
    if isinstance(port, dict) and "range" in port:
        lo, hi = port["range"]
        return int(hi) - int(lo) + 1
    if isinstance(port, int):
        return 1
    return port_range_size(SNAT_PORTS)


def ensure_port_guard(names: Names, vpc_id: str, n: int, ports: str) -> bool:
    """Guard ENI n (SNAT range `ports`) when its range is small enough; returns whether it is
    guarded. Idempotent: a guard of the same range is left alone (its counts are live state)."""
    size = port_range_size(ports)
    if size > PORT_GUARD_MAX_PORTS:
        remove_port_guard(names, vpc_id, n)
        return False
    netns = names.hyperplane_netns(vpc_id)
    if port_guards(names, vpc_id).get(n) == size:
        return True
    remove_port_guard(names, vpc_id, n)
    t = f"ip {port_guard_table(names)}"
    # The rejected packet carries mark n and fwmark_reflect gives the reply the same mark, so
    # the reset/ICMP made here (the plane routes nothing to sandboxes by destination) takes
    # ENI n's table back to the worker.
    count = f"{{ ip daddr . meta l4proto . th dport ct count over {size} }}"
    nft.apply("\n".join([
        f"add table {t}",
        f"add map {t} guard_link {{ type ifname : verdict; }}",
        (f"add chain {t} forward {{ type filter hook forward priority filter - 1; "
         f"policy accept; }}"),
        f"flush chain {t} forward",
        f"add rule {t} forward ct state new iifname vmap @guard_link",
        (f"add set {t} dst{n} {{ type ipv4_addr . inet_proto . inet_service; size 65535; "
         f"flags dynamic; }}"),
        f"add counter {t} refused{n}",
        f"add chain {t} guard{n}",
        (f"add rule {t} guard{n} meta l4proto tcp add @dst{n} {count} meta mark set {n} "
         f'counter name "refused{n}" reject with tcp reset'),
        (f"add rule {t} guard{n} meta l4proto udp add @dst{n} {count} meta mark set {n} "
         f'counter name "refused{n}" reject with icmp type port-unreachable'),
        f'add element {t} guard_link {{ "{hp_transit_link(n)}" : jump guard{n} }}',
    ]), netns)
    with ns.entered(netns):
        if _read_sysctl("net.ipv4.fwmark_reflect") != "1":
            ns.set_sysctl("net.ipv4.fwmark_reflect", "1")
    with Netlink(netns) as hpl:
        hpl.add_rule(n, back_table(n), PORT_GUARD_RULE_PRIORITY)
    return True


def port_guards(names: Names, vpc_id: str) -> dict[int, int]:
    """ENI n → the range size its port guard allows, as the kernel has it."""
    netns = names.hyperplane_netns(vpc_id)
    if not ns.exists(netns):
        return {}
    out: dict[int, int] = {}
    with contextlib.suppress(nft.NftError):
        for item in nft.list_json(f"table ip {port_guard_table(names)}", netns):
            rule = item.get("rule")
            if not (rule and rule["chain"].startswith("guard") and rule["chain"][5:].isdigit()):
                continue
            for expr in rule["expr"]:
                if "set" in expr:
                    for stmt in expr["set"].get("stmt", []):
                        if "ct count" in stmt:
                            out[int(rule["chain"][5:])] = int(stmt["ct count"]["val"])
    return out


def remove_port_guard(names: Names, vpc_id: str, n: int) -> None:
    """Remove ENI n's port guard (idempotent)."""
    netns = names.hyperplane_netns(vpc_id)
    if not ns.exists(netns):
        return
    t = f"ip {port_guard_table(names)}"
    objects: list[dict[str, Any]] = []
    with contextlib.suppress(nft.NftError):
        objects = nft.list_json(f"table ip {port_guard_table(names)}", netns)
    lines: list[str] = []
    for item in objects:
        m = item.get("map")
        if m and any(v.get("jump", {}).get("target") == f"guard{n}" for _k, v in m.get("elem", [])):
            lines.append(f'delete element {t} guard_link {{ "{hp_transit_link(n)}" }}')
    present = {kind: {item[kind]["name"] for item in objects if kind in item}
               for kind in ("chain", "set", "counter")}
    if f"guard{n}" in present["chain"]:
        lines += [f"flush chain {t} guard{n}", f"delete chain {t} guard{n}"]
    if f"dst{n}" in present["set"]:
        lines.append(f"delete set {t} dst{n}")
    if f"refused{n}" in present["counter"]:
        lines.append(f"delete counter {t} refused{n}")
    if lines:
        nft.apply("\n".join(lines), netns)
    with Netlink(netns) as hpl:
        hpl.delete_rule(n, back_table(n), PORT_GUARD_RULE_PRIORITY)
