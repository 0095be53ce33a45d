"""The Hyperplane data path: how a sandbox in the worker reaches its VPC through a shared ENI.

A Hyperplane ENI n is a veth between the worker and the VPC namespace: its VPC end is the
ENI's port (made by net/reconcile.py like every interface's port, named by net/vpc.py, with
the security groups of the ENI), its worker end is the transit `lp<i>t<n>`. The ENI's address
is on no link: it is the address the VPC namespace SNATs the ENI's flows to. So each flow is
tracked once, by the conntrack that enforces the security groups anyway, and its packets pass
the worker without its IP stack (docs/design.md: where the 0.9 goes).

Owns, per VPC, the plane table `lp<i>-hp` in the VPC namespace (per-ENI filter, counters,
SNAT, reply routing by connection mark, the idle timeout of the ENI's flows) and the port guard
table; per ENI the routes and rules on both sides of its transit; and in the worker the
steering: the map `sandbox address → mark n` of an nft table and the same pairing in the
fast path (net/fastpath.py) — one element each is all a cold start touches. Not owned: the VPC
namespace, the ENI's port and the transit link themselves (net/reconcile.py), security groups
(net/security_groups.py), the worker namespace and its table (net/worker.py).

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

import contextlib
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from . import bpf, fastpath, nft, ns
from .names import Names
from .netlink import Netlink
from .nft_elements import MapElements
from .worker import GATEWAY, SANDBOX_NET, sandbox_slot

log = logging.getLogger(__name__)

# The worker end of every transit holds this /32 (like 169.254.1.1 on every sandbox veth); the
# VPC routes replies to sandboxes via it. Outside the gateway /24 (169.254.1.x), the uplink
# /30s (169.254.2.0–169.254.167.255) and 169.254.169.254.
TRANSIT_WORKER_ADDR = "169.254.200.1"
RULE_PRIORITY = 1000
OUT_TABLE_BASE = 1000  # worker: table of ENI n's outbound path
BACK_TABLE_BASE = 100000  # VPC: table of ENI n's replies towards the worker
MAX_ENI = 99999
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
    port: str  # the ENI's port in the VPC namespace: the transit's peer (net/vpc.py's name)

    def __post_init__(self) -> None:
        if not 1 <= self.n <= MAX_ENI:
            raise ValueError(f"ENI id {self.n} out of range 1..{MAX_ENI}")


@dataclass(frozen=True)
class EniCounters:
    tx_packets: int  # sandbox → VPC, as arriving from the transit
    tx_bytes: int
    rx_packets: int  # VPC → sandbox, as leaving into the transit
    rx_bytes: int
    dropped_packets: int  # refused: new flows from the VPC, non-TCP/UDP, stray packets


def eni_mark(n: int) -> int:
    return n


def out_table(n: int) -> int:
    return OUT_TABLE_BASE + n


def back_table(n: int) -> int:
    return BACK_TABLE_BASE + n


def transit_number(names: Names, netns: str, ifname: str) -> int | None:
    """n of the Hyperplane ENI whose port's far end is `ifname` in `netns`, else None."""
    prefix = names.transit_veth(0)[:-1]
    tail = ifname[len(prefix):]
    if netns != names.worker_netns or not ifname.startswith(prefix) or not tail.isdigit():
        return None
    return int(tail)


# Until 2026-12-06 an ENI's port led to `e<n>` in a namespace per VPC, `lp<i>-h-<vpc>`, where
# the SNAT was; stores of that time are moved to the transits at start (service/hyperplane.py).
def old_layout_number(names: Names, netns: str, ifname: str) -> int | None:
    """n of an ENI whose port's far end is in the old layout, else None."""
    if netns.startswith(f"{names.prefix}-h-") and ifname[:1] == "e" and ifname[1:].isdigit():
        return int(ifname[1:])
    return None


def remove_old_planes(names: Names) -> list[str]:
    """The old layout's namespaces (their veths go with them)."""
    gone = ns.list_named(f"{names.prefix}-h-")
    for netns in gone:
        ns.delete(netns)
    return gone


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
    """The steering table and the fast path's entries (its program stays on links until they
    go, passing everything once its map is empty)."""
    if ns.exists(names.worker_netns):
        nft.delete_table("ip", steer_table(names), names.worker_netns)
    fast = fastpath.loaded(names)
    if fast is not None:
        for addr in fast.entries():
            fast.delete(addr)
        fastpath.drop(names)


class Steering:
    """attach/detach on sockets kept open in the worker: the cold-start path pays one
    map-element transaction (~0.01 ms, net/nft_elements.py), two link lookups and one BPF map
    update, and no setns. The nft element is the record (reconcile reads it); the fast path
    entry (net/fastpath.py) lets the sandbox's packets skip the worker's routing, and without
    it they take the marked route to the same transit. Used from one thread at a time (the
    service calls it on the event loop); close() before the worker netns goes."""

    def __init__(self, names: Names) -> None:
        self.names = names
        self._elements = MapElements(names.worker_netns, steer_table(names), "steer")
        self._fast = fastpath.shared(names)
        self._links = fastpath.LinkIndexes(names.worker_netns) if self._fast else None

    def attach(self, sandbox_addr: str, n: int) -> None:
        """Steer a sandbox into ENI n: one map element, one transaction."""
        try:
            self._elements.add(sandbox_addr, eni_mark(n))
        except FileExistsError:  # steered to another ENI: move it, in one transaction
            self._elements.replace(sandbox_addr, eni_mark(n))
        if self._fast is None or self._links is None:
            return
        links = _fast_path_links(self.names, self._links, sandbox_addr, n)
        try:
            if links is not None:
                self._fast.set(sandbox_addr, *links)
                return
        except OSError:  # e.g. a full map: the routed path serves this sandbox
            log.warning("fast path: no entry for %s", sandbox_addr, exc_info=True)
        self._fast.delete(sandbox_addr)  # an entry for another ENI must not outlive the move

    def detach(self, sandbox_addr: str) -> None:
        """Stop steering a sandbox (idempotent): its next packets find no path to any VPC."""
        if self._fast is not None:
            self._fast.delete(sandbox_addr)
        with contextlib.suppress(FileNotFoundError):
            self._elements.delete(sandbox_addr)

    def close(self) -> None:
        self._elements.close()
        if self._links is not None:
            self._links.close()


def _fast_path_links(names: Names, links: fastpath.LinkIndexes, sandbox_addr: str,
                     n: int) -> tuple[int, int] | None:
    """(sandbox veth, transit) ifindexes for a fast-path entry; None if either is missing."""
    slot = sandbox_slot(sandbox_addr)
    sandbox = links.get(names.sandbox_veth(slot)) if slot is not None else None
    transit = links.get(names.transit_veth(n))
    return None if sandbox is None or transit is None else (sandbox, transit)


def _runs_fast_path(names: Names, wl: Netlink, link: str) -> bool:
    """Whether `link` runs this process's fast-path program (True when there is none): one
    left by an earlier server would redirect by that server's map."""
    fast = fastpath.shared(names)
    return fast is None or bpf.prog_id(fast.prog_fd) in wl.ingress_bpf_ids(link)


def _reconcile_fast_path(names: Names, attachments: Mapping[str, int]) -> list[str]:
    """Make the fast path's map hold exactly the attachments whose links exist."""
    fast = fastpath.shared(names)
    if fast is None or not ns.exists(names.worker_netns):
        return []
    indexes = fastpath.LinkIndexes(names.worker_netns)
    try:
        wanted = {addr: links for addr, n in attachments.items()
                  if (links := _fast_path_links(names, indexes, addr, n)) is not None}
    finally:
        indexes.close()
    done: list[str] = []
    actual = fast.entries()
    for addr in sorted(set(actual) - set(wanted)):
        fast.delete(addr)
        done.append(f"fast path: removed {addr}")
    for addr, links in sorted(wanted.items()):
        if actual.get(addr) != links:
            fast.set(addr, *links)
            done.append(f"fast path: {addr}")
    return done


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
# Reply routing: a new flow from a transit gets ct mark n; its replies (after de-NAT) take mark
# n from it and so ENI n's back table. Unmarked packets never find a route to a sandbox.
# The idle timeout: a ct timeout object (named after its value, so a change is a new object)
# that out<n> gives each new flow it admits (conntrack has made the entry and not yet confirmed
# it) in chain `new_flow`; the VPC's own flows keep conntrack's defaults.
PLANE_VERSION = "plane-2"


def plane_ruleset(names: Names) -> str:
    table = hp_table(names)
    return (
        f"table ip {table} {{\n"
        f'    comment "{PLANE_VERSION}"\n'
        f"    map from_port {{ type ifname : verdict; }}\n"
        f"    map to_port {{ type ifname : verdict; }}\n"
        f"    map snat_port {{ type ifname : verdict; }}\n"
        f"    chain new_flow {{\n"
        f"    }}\n"
        f"    chain replies {{\n"
        f"        type filter hook prerouting priority mangle; policy accept;\n"
        f"        ct direction reply ct mark != 0 meta mark set ct mark\n"
        f"    }}\n"
        # before the security groups' forward chain (priority filter): a drop here is final,
        # an accept lets the groups decide
        f"    chain forward {{\n"
        f"        type filter hook forward priority filter - 10; policy accept;\n"
        f"        iifname vmap @from_port\n"
        f"        oifname vmap @to_port\n"
        f"    }}\n"
        f"    chain postrouting {{\n"
        f"        type nat hook postrouting priority srcnat; policy accept;\n"
        f"        iifname vmap @snat_port\n"
        f"    }}\n"
        f"}}\n")


def _idle_object(idle_timeout_s: int) -> str:
    return f"idle{int(idle_timeout_s)}"


def list_vpc_planes(names: Names) -> list[str]:
    """The VPCs whose namespace holds this instance's plane table."""
    prefix = names.vpc_netns("")
    return [netns[len(prefix):] for netns in ns.list_named(prefix)
            if netns[len(prefix):].startswith("vpc-")
            and nft.tables(hp_table(names), netns) != []]


def ensure_vpc_plane(names: Names, vpc_id: str,
                     idle_timeout_s: int = FLOW_IDLE_TIMEOUT_S) -> bool:
    """The plane table in a VPC's namespace (made here if the VPC code has not yet), ready for
    ENIs. Returns whether it changed. `idle_timeout_s`: how long an established TCP flow of an
    ENI may stay silent before its NAT binding (and so its port) is released."""
    netns = names.vpc_netns(vpc_id)
    ns.create(netns)
    changed = False
    table = hp_table(names)
    current = nft.list_text(f"table ip {table}", netns)
    if current is None or f'comment "{PLANE_VERSION}"' not in current:
        # a plane of another version is rebuilt; its ENIs are repaired by reconcile
        nft.apply((f"delete table ip {table}\n" if current is not None else "")
                  + plane_ruleset(names), netns)
        changed = True
    idle = _idle_object(idle_timeout_s)
    objects = _hp_objects(names, netns)
    timeouts = {item["ct timeout"]["name"] for item in objects if "ct timeout" in item}
    in_use = {stmt["ct timeout"] for item in objects if "rule" in item
              and item["rule"]["chain"] == "new_flow" for stmt in item["rule"]["expr"]
              if "ct timeout" in stmt}
    if in_use != {idle}:
        t = f"ip {table}"
        nft.apply("\n".join(
            [f"add ct timeout {t} {idle} {{ protocol tcp; l3proto ip; "
             f"policy = {{ established: {int(idle_timeout_s)} }}; }}",
             f"flush chain {t} new_flow",
             f'add rule {t} new_flow ct timeout set "{idle}" accept']
            + [f"delete ct timeout {t} {old}" for old in sorted(timeouts - {idle})]), netns)
        changed = True
    with ns.entered(netns):
        # replies to sandboxes leave by the port they came from, which no plain lookup knows
        for key, value in (("net.ipv4.conf.all.rp_filter", "0"),
                           ("net.ipv4.fwmark_reflect", "1")):  # the port guard's resets
            if _read_sysctl(key) != value:
                ns.set_sysctl(key, value)
                changed = True
    return changed


def remove_vpc_plane(names: Names, vpc_id: str) -> None:
    """Remove a VPC's plane and every ENI in it (idempotent); the VPC namespace stays."""
    for n in _plane_enis(names, vpc_id):
        remove_eni(names, vpc_id, n)
    netns = names.vpc_netns(vpc_id)
    if ns.exists(netns):
        nft.delete_table("ip", hp_table(names), netns)
        nft.delete_table("ip", port_guard_table(names), netns)
    for key in [k for k in _IDLE if k[0] == netns]:
        del _IDLE[key]


# ENIs -------------------------------------------------------------------------------------
def ensure_eni(names: Names, eni: HyperplaneEni, ports: str = SNAT_PORTS) -> None:
    """Make ENI `eni` carry traffic: routes and rules on both sides of its transit, SNAT,
    filter. The plane must exist and the ENI's port with its transit must already be there
    (net/reconcile.py). `ports`: the SNAT source-port range "lo-hi" (narrowed only by tests
    and benchmarks)."""
    n, vpc, transit = eni.n, names.vpc_netns(eni.vpc_id), names.transit_veth(eni.n)
    if not ns.exists(vpc):
        raise HyperplaneError(f"no namespace for {eni.vpc_id}")
    with Netlink(vpc) as vl, Netlink(names.worker_netns) as wl:
        if vl.index(eni.port) is None or wl.index(transit) is None:
            raise HyperplaneError(f"ENI {n}: port {eni.port} or transit {transit} missing")
        # worker side: the gateway answers ARP on the port (the VPC holds it on lo)
        with ns.entered(names.worker_netns):
            ns.set_sysctl(f"net.ipv4.conf.{transit}.rp_filter", "0")
        wl.add_address(transit, TRANSIT_WORKER_ADDR, 32)
        wl.set_up(transit)
        _replace_table(wl, out_table(n), [(f"{eni.gateway}/32", transit, None),
                                          ("0.0.0.0/0", transit, eni.gateway)])
        wl.add_rule(eni_mark(n), out_table(n), RULE_PRIORITY)
        fast = fastpath.shared(names)
        if fast is not None:  # replies into sandboxes (net/fastpath.py)
            fast.attach(wl, transit)
        # VPC side
        with ns.entered(vpc):
            ns.set_sysctl(f"net.ipv4.conf.{eni.port}.rp_filter", "0")
        _replace_table(vl, back_table(n), [(f"{TRANSIT_WORKER_ADDR}/32", eni.port, None),
                                           (str(SANDBOX_NET), eni.port, TRANSIT_WORKER_ADDR)])
        vl.add_rule(eni_mark(n), back_table(n), RULE_PRIORITY)
    # dispatch under another port name goes (adding an element whose key is mapped to another
    # chain fails); chains and counters stay, rewritten in place
    stale = _dispatch_removal(names, n, _hp_objects(names, vpc))
    nft.apply("\n".join(stale + [_eni_nft_script(names, eni, ports)]), vpc)
    _allow_worker_egress(names, transit)


def remove_eni(names: Names, vpc_id: str, n: int) -> None:
    """Take ENI n out of service (idempotent): sandboxes steered to it lose their path, its
    routes, rules, SNAT and counters go. The port and transit (net/reconcile.py's) stay:
    without dispatch, routes or rules they carry nothing."""
    vpc, transit = names.vpc_netns(vpc_id), names.transit_veth(n)
    if ns.exists(names.worker_netns):
        steered = [a for a, m in list_attachments(names).items() if m == eni_mark(n)]
        script = [f"delete element ip {steer_table(names)} steer {{ {', '.join(steered)} }}"] \
            if steered else []
        if _worker_egress_has(names, transit):
            script.append(f'delete element inet {names.nft_table} egress_ifnames '
                          f'{{ "{transit}" }}')
        if script:
            nft.apply("\n".join(script), names.worker_netns)
        with Netlink(names.worker_netns) as wl:
            fast, index = fastpath.loaded(names), wl.index(transit)
            if fast is not None:
                for addr, (_sandbox, to) in fast.entries().items():
                    if addr in steered or to == index:
                        fast.delete(addr)
            wl.detach_ingress_bpf(transit)
            wl.delete_rule(eni_mark(n), out_table(n), RULE_PRIORITY)
            _replace_table(wl, out_table(n), [])
    if ns.exists(vpc):
        script = _eni_nft_removal(names, n, vpc)
        if script:
            nft.apply(script, vpc)
        with Netlink(vpc) as vl:
            vl.delete_rule(eni_mark(n), back_table(n), RULE_PRIORITY)
            _replace_table(vl, back_table(n), [])


def list_enis(names: Names) -> dict[int, str | None]:
    """ENI id → the VPC whose plane dispatches it (None: worker rules of an ENI whose plane
    is gone). eni_state() tells whether each is complete."""
    out: dict[int, str | None] = {}
    for vpc_id in list_vpc_planes(names):
        for n in _plane_enis(names, vpc_id):
            out[n] = vpc_id
    if ns.exists(names.worker_netns):
        with Netlink(names.worker_netns) as wl:
            for rule in wl.rules():
                n = rule.fwmark
                if n and rule.table == out_table(n) and n not in out:
                    out[n] = None
    return out


def eni_state(names: Names, vpc_id: str, n: int) -> HyperplaneEni | None:
    """Read ENI n of `vpc_id` back from the kernel; None unless every piece is in place."""
    vpc, transit = names.vpc_netns(vpc_id), names.transit_veth(n)
    if not ns.exists(vpc) or not ns.exists(names.worker_netns):
        return None
    dispatch = _nft_dispatch(names, n, vpc)
    if dispatch is None:
        return None
    port, address = dispatch
    with Netlink(vpc) as vl, Netlink(names.worker_netns) as wl:
        if None in (vl.index(port), wl.index(transit)):
            return None
        gateways = [r.gateway for r in wl.table_routes(out_table(n)) if r.dst_len == 0]
        back = {(r.dst, r.dst_len, r.gateway) for r in vl.table_routes(back_table(n))}
        if (len(gateways) != 1
                or (eni_mark(n), out_table(n)) not in {(r.fwmark, r.table) for r in wl.rules()}
                or (eni_mark(n), back_table(n)) not in {(r.fwmark, r.table) for r in vl.rules()}
                or (TRANSIT_WORKER_ADDR, 32) not in wl.addresses(transit)
                or not _runs_fast_path(names, wl, transit)
                or (str(SANDBOX_NET.network_address), SANDBOX_NET.prefixlen,
                    TRANSIT_WORKER_ADDR) not in back):
            return None
    if _worker_egress_has(names, transit) is False:
        return None
    return HyperplaneEni(n, vpc_id, address, gateways[0], port)


# metrics ---------------------------------------------------------------------------------
def eni_counters(names: Names, vpc_id: str, n: int) -> EniCounters:
    values: dict[str, tuple[int, int]] = {}
    for item in nft.list_json(f"counters table ip {hp_table(names)}",
                              names.vpc_netns(vpc_id)):
        counter = item.get("counter")
        if counter:
            values[counter["name"]] = (counter["packets"], counter["bytes"])
    tx, rx, drop = (values.get(f"{k}{n}", (0, 0)) for k in ("tx", "rx", "drop"))
    return EniCounters(tx[0], tx[1], rx[0], rx[1], drop[0])


def flow_counts(names: Names, vpc_id: str) -> dict[str, int]:
    """Tracked flows per SNAT address in one plane (the 65,000-flows rule): a NATed flow's
    reply tuple is addressed to the ENI. Each read also feeds the idle-expiry watch."""
    netns = names.vpc_netns(vpc_id)
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
    netns = names.vpc_netns(vpc_id)
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
        srcs = [f[4:] for f in fields if f.startswith("src=")]
        dsts = [f[4:] for f in fields if f.startswith("dst=")]
        # the VPC's own flows (not NATed: replies go back to the source) are not the plane's
        if len(dsts) < 2 or len(fields) < 6 or dsts[1] == srcs[0]:
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
        with Netlink(names.worker_netns) as wl:
            if wl.index(names.transit_veth(n)) is None:
                done.append(f"waiting for the port of eni {n}")
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
    return done + _reconcile_fast_path(names, attachments)


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
    """The ENIs that have chains in a VPC's plane."""
    netns = names.vpc_netns(vpc_id)
    if not ns.exists(netns):
        return []
    return sorted(int(item["chain"]["name"][3:]) for item in _hp_objects(names, netns)
                  if "chain" in item and item["chain"]["name"].startswith("out")
                  and item["chain"]["name"][3:].isdigit())


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
    table, n, port = hp_table(names), eni.n, eni.port
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
        # AWS: TCP and UDP only; from sandbox addresses only
        # new<n>: flows opened (SYN retries of a flow that found no port count again)
        f"add rule {t} out{n} ct state new ip saddr {SANDBOX_NET} meta l4proto {{ tcp, udp }} "
        f'ct mark set {eni_mark(n)} counter name "new{n}" goto new_flow',
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
        f'add element {t} from_port {{ "{port}" : jump out{n} }}',
        f'add element {t} to_port {{ "{port}" : jump in{n} }}',
        f'add element {t} snat_port {{ "{port}" : jump snat{n} }}',
    ])


def _hp_objects(names: Names, netns: str) -> list[dict[str, Any]]:
    try:
        return nft.list_json(f"table ip {hp_table(names)}", netns)
    except nft.NftError:
        return []


def _eni_chains(n: int) -> set[str]:
    return {f"out{n}", f"in{n}", f"snat{n}"}


def _dispatch_removal(names: Names, n: int, objects: list[dict[str, Any]]) -> list[str]:
    """Commands deleting the map elements that dispatch to ENI n's chains."""
    t, ours = f"ip {hp_table(names)}", _eni_chains(n)
    lines: list[str] = []
    for item in objects:
        m = item.get("map")
        if m:
            keys = [k for k, v in m.get("elem", []) if v.get("jump", {}).get("target") in ours]
            if keys:
                lines.append(f"delete element {t} {m['name']} {{ "
                             + ", ".join(f'"{k}"' for k in keys) + " }")
    return lines


def _eni_nft_removal(names: Names, n: int, netns: str) -> str:
    t = f"ip {hp_table(names)}"
    objects = _hp_objects(names, netns)
    lines = _dispatch_removal(names, n, objects)
    chains = {item["chain"]["name"] for item in objects if "chain" in item}
    lines += [f"delete chain {t} {c}" for c in sorted(_eni_chains(n) & chains)]
    counters = {item["counter"]["name"] for item in objects if "counter" in item}
    lines += [f"delete counter {t} {c}" for c in sorted(
        {f"tx{n}", f"rx{n}", f"drop{n}", f"new{n}"} & counters)]
    return "\n".join(lines)


def _nft_dispatch(names: Names, n: int, netns: str) -> tuple[str, str] | None:
    """(port, SNAT address) of ENI n if its chains and dispatch are complete."""
    targets: dict[str, set[str]] = {}
    address: str | None = None
    for item in _hp_objects(names, netns):
        m = item.get("map")
        if m:
            for key, verdict in m.get("elem", []):
                targets.setdefault(verdict.get("jump", {}).get("target"), set()).add(key)
        rule = item.get("rule")
        if rule and rule["chain"] == f"snat{n}":
            for expr in rule["expr"]:
                if "snat" in expr:
                    address = expr["snat"].get("addr")
    found = [targets.get(c, set()) for c in sorted(_eni_chains(n))]
    if address is None or len(found[0]) != 1 or not all(f == found[0] for f in found):
        return None
    return next(iter(found[0])), address


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
    netns = names.vpc_netns(vpc_id)
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
    guarded. Idempotent: a guard of the same range is left alone (its counts are live state).
    ENI n must be in place (ensure_eni)."""
    size = port_range_size(ports)
    if size > PORT_GUARD_MAX_PORTS:
        remove_port_guard(names, vpc_id, n)
        return False
    netns = names.vpc_netns(vpc_id)
    if port_guards(names, vpc_id).get(n) == size:
        return True
    dispatch = _nft_dispatch(names, n, netns)
    if dispatch is None:
        raise HyperplaneError(f"ENI {n} is not in the plane of {vpc_id}")
    remove_port_guard(names, vpc_id, n)
    t = f"ip {port_guard_table(names)}"
    # The rejected packet carries mark n and fwmark_reflect (ensure_vpc_plane) gives the reply
    # the same mark, so the reset/ICMP made here takes ENI n's table back to the worker.
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
        f'add element {t} guard_link {{ "{dispatch[0]}" : jump guard{n} }}',
    ]), netns)
    return True


def port_guards(names: Names, vpc_id: str) -> dict[int, int]:
    """ENI n → the range size its port guard allows, as the kernel has it."""
    netns = names.vpc_netns(vpc_id)
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
    netns = names.vpc_netns(vpc_id)
    if not ns.exists(netns):
        return
    t = f"ip {port_guard_table(names)}"
    objects: list[dict[str, Any]] = []
    with contextlib.suppress(nft.NftError):
        objects = nft.list_json(f"table ip {port_guard_table(names)}", netns)
    lines: list[str] = []
    for item in objects:
        m = item.get("map")
        for key, verdict in (m.get("elem", []) if m else []):
            if verdict.get("jump", {}).get("target") == f"guard{n}":
                lines.append(f'delete element {t} guard_link {{ "{key}" }}')
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
