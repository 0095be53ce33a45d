"""Internet gateways in the kernel: the desired state of every VPC's way out (pure, from the
store) and the code that makes the kernel match it (net thread).

With `serve --internet-netns NAME`, a VPC with an attached internet gateway has a veth between
its namespace (`igw0`, net/vpc.py's INTERNET_LINK) and the internet namespace
(`lp<i>g<vpc hex>`); both ends use fixed link-local addresses (each VPC namespace is its own
world, and each peer is its own link). The internet namespace routes each of the VPC's public
addresses back over that link. At the gateway, an Elastic IP is 1:1 NAT (table `lp<i>-gw` in
the VPC namespace): DNAT public→private inbound, SNAT private→public outbound. Nothing else
crosses: an interface without a public address neither leaves nor is reached (a Hyperplane
ENI never has one, as on AWS), and only flows made through a public address come in.
Without --internet-netns the internet namespace is the server's own, out of the host's
uplink (net/host_internet.py); with --no-uplink as well, gateways lead nowhere (their routes
drop). Removing a VPC namespace removes its link with both ends, so stop and `clean` need
nothing more.
A NAT gateway's flows are marked by a routing realm on the routes to it and translated here:
to its public address on the way out of the link (public), or to its private address wherever
its subnet's routes send them (private; net/gateway_routes.py resolves those routes). Routes
(which subnet goes where) are net/routing.py's, made from net/gateway_routes.py's kernel
routes."""
from __future__ import annotations

import hashlib
import subprocess
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from . import gateway_routes, nft, ns, routing
from .gateway_routes import kernel_route, routed_to_gateway, through_private_nat
from .names import Names, port_ifname
from .netlink import Netlink
from .routing import TABLE_BASE, KernelRoute, RoutingSpec
from .vpc import INTERNET_LINK

VPC_SIDE_ADDR = "169.254.253.1"  # the VPC end of its gateway link
INTERNET_SIDE_ADDR = gateway_routes.INTERNET_SIDE_ADDR  # the internet end
# AWS's NAT gateway: simultaneous connections to one destination (address, port, protocol)
# before new ones fail (ErrorPortAllocation), and the idle timeout of its established flows.
NAT_CONNECTIONS_PER_DESTINATION = 55000
NAT_IDLE_TIMEOUT_S = 350


@dataclass(frozen=True)
class GatewayNetSpec:
    vpc_id: str
    netns: str
    internet_netns: str  # "" when this VPC has no way to the internet here
    peer: str  # the link's name in the internet namespace
    nat: tuple[tuple[str, str], ...]  # (public, private) Elastic IPs mapped in this VPC
    nft_table: str
    routing: RoutingSpec
    # (realm, public address) of each NAT gateway that translates here
    nat_gateways: tuple[tuple[int, str], ...] = ()
    connection_limit: int = NAT_CONNECTIONS_PER_DESTINATION  # per NAT gateway and destination
    # (realm, private address) of each private NAT gateway: flows routed to it leave with its
    # private address, by its own subnet's routes (no internet gateway involved)
    private_nat_gateways: tuple[tuple[int, str], ...] = ()
    idle_timeout_s: int = NAT_IDLE_TIMEOUT_S  # established TCP flows through a NAT gateway

    @property
    def translates(self) -> bool:
        """Whether this VPC needs the gateway table at all (no per-packet cost otherwise)."""
        return bool(self.internet_netns or self.private_nat_gateways)

    @property
    def nat_addresses(self) -> tuple[tuple[int, str], ...]:
        """(realm, address it translates to) of every NAT gateway, public and private."""
        return tuple(sorted(self.nat_gateways + self.private_nat_gateways))

    @property
    def public_addresses(self) -> set[str]:
        return {pub for pub, _ in self.nat} | {pub for _, pub in self.nat_gateways}

    def nft_script(self) -> str:
        privates = ", ".join(sorted(p for _, p in self.nat))
        inbound = ", ".join(f"{pub} : {priv}" for pub, priv in sorted(self.nat))
        outbound = ", ".join(f"{priv} : {pub}" for pub, priv in sorted(self.nat))
        link = INTERNET_LINK
        nat_out: list[str] = []
        nat_forward: list[str] = []
        nat_in: list[str] = []  # no connection comes in through a NAT gateway
        nat_established: list[str] = []  # handshakes answered: ConnectionEstablishedCount
        private = set(self.private_nat_gateways)
        for realm, pub in self.nat_addresses:
            # a public NAT gateway's flows leave by the internet gateway; a private one's by
            # whatever its subnet routes them to (the realm's routes, net/gateways.py)
            out = "" if (realm, pub) in private else f'oifname "{link}" '
            # its flows: its address, ports 1024-65535 (conntrack picks them)
            nat_out += [f'    {out}meta rtclassid {realm} meta l4proto {{ tcp, udp }}'
                        f" snat to {pub}:1024-65535",
                        f'    {out}meta rtclassid {realm} snat to {pub}']
            new = f'    {out}meta rtclassid {realm} ct state new'
            per_destination = (f"add @nat{realm}_dst {{ ip daddr . meta l4proto . th dport "
                               f"ct count over {self.connection_limit} }}")
            nat_forward += [f'{new} meta l4proto {{ tcp, udp }} {per_destination}'
                            f' counter name "nat{realm}_refused" drop',
                            f'{new} counter name "nat{realm}_new" ct timeout set "idle"',
                            f'    {out}meta rtclassid {realm} counter name "nat{realm}_out"'
                            + (" accept" if out else "")]
            # the destination's SYN-ACK: a connection established through this NAT gateway
            nat_established.append(f"    tcp flags & (syn | ack) == syn | ack ct direction reply"
                                   f' ct reply ip daddr {pub} counter name "nat{realm}_est"')
            if out:
                nat_in.append(f'    iifname "{link}" ip daddr {pub} ct state new'
                              f' counter name "nat{realm}_drop" drop')
        objects = [f"  counter nat{realm}_{what} {{ }}" for realm, _ in self.nat_addresses
                   for what in ("new", "out", "drop", "refused", "est")]
        objects += [f"  set nat{realm}_dst {{ type ipv4_addr . inet_proto . inet_service; "
                    "size 65535; flags dynamic; }" for realm, _ in self.nat_addresses]
        objects.append(f"  ct timeout idle {{ protocol tcp; l3proto ip; "
                       f"policy = {{ established: {self.idle_timeout_s} }}; }}")
        body = "\n".join(objects + [
            "  set eip_private { type ipv4_addr;"
            + (f" elements = {{ {privates} }};" if privates else "") + " }",
            "  map eip_in { type ipv4_addr : ipv4_addr;"
            + (f" elements = {{ {inbound} }};" if inbound else "") + " }",
            "  map eip_out { type ipv4_addr : ipv4_addr;"
            + (f" elements = {{ {outbound} }};" if outbound else "") + " }",
            "  chain prerouting { type nat hook prerouting priority dstnat; policy accept;",
            f'    iifname "{link}" dnat to ip daddr map @eip_in\n  }}',
            "  chain inbound { type filter hook prerouting priority filter; policy accept;",
            *nat_in, "  }",
            # ahead of the Hyperplane's SNAT (srcnat): the first translation of a flow holds
            "  chain postrouting { type nat hook postrouting priority srcnat - 10; "
            "policy accept;", *nat_out,
            f'    oifname "{link}" snat to ip saddr map @eip_out\n  }}',
            "  chain forward { type filter hook forward priority filter - 5; policy accept;",
            *nat_established, *nat_forward,
            f'    oifname "{link}" ip saddr != @eip_private drop',
            f'    iifname "{link}" ct state established,related accept',
            f'    iifname "{link}" ct status dnat accept',
            f'    iifname "{link}" drop\n  }}'])
        digest = hashlib.sha256(body.encode()).hexdigest()[:24]
        t = self.nft_table
        return (f"add table ip {t}\ndelete table ip {t}\n"
                f'table ip {t} {{\n  comment "{digest}"\n{body}\n}}\n')


def gateway_table(names: Names) -> str:
    return f"{names.prefix}-gw"


def desired_state(names: Names, internet_netns: str, vpcs: Sequence[Any], subnets: Sequence[Any],
                  enis: Sequence[Any], route_tables: Sequence[Any], routes: Sequence[Any],
                  associations: Sequence[Any], gateways: Sequence[Any],
                  addresses: Sequence[Any], nat_gateways: Sequence[Any] = (),
                  connection_limit: int = NAT_CONNECTIONS_PER_DESTINATION,
                  idle_timeout_s: int = NAT_IDLE_TIMEOUT_S,
                  egress_only_vpcs: frozenset[str] = frozenset()) -> list[GatewayNetSpec]:
    """Every VPC's gateway link, 1:1 NAT, NAT gateways and policy routing (store dataclasses
    in). `egress_only_vpcs`: VPCs with an egress-only internet gateway, which need the link
    for IPv6 (net/gateways6.py) even without an internet gateway."""
    attached = {g.vpc_id: g.id for g in gateways if g.vpc_id}
    eni_by_id = {e.id: e for e in enis}
    tables_of: dict[str, list[str]] = defaultdict(list)
    for t in sorted(route_tables, key=lambda t: t.id):
        tables_of[t.vpc_id].append(t.id)
    explicit = {a.subnet_id: a.route_table_id for a in associations if a.subnet_id}
    main = {a.route_table_id for a in associations if a.main}
    routes_of: dict[str, list[Any]] = defaultdict(list)
    for r in routes:
        routes_of[r.route_table_id].append(r)
    out = []
    for vpc in vpcs:
        has_internet = bool(internet_netns) and vpc.id in attached
        rank = {tid: i for i, tid in enumerate(tables_of[vpc.id])}
        main_table = next((tid for tid in tables_of[vpc.id] if tid in main), None)
        def table_of(subnet_id: str) -> str:
            return explicit.get(subnet_id) or main_table or ""

        live = [n for n in nat_gateways if n.vpc_id == vpc.id and n.state == "available"]
        realms = {n.id: (i + 1, n.public_ip) for i, n in enumerate(
            n for n in live if n.connectivity != "private" and n.public_ip and has_internet
            and routed_to_gateway(routes_of.get(table_of(n.subnet_id), []),
                                   attached[vpc.id]))}
        # private NAT gateways: realms after the public ones', each with its subnet's routes
        private_realms = {n.id: (len(realms) + i + 1, n.private_ip, table_of(n.subnet_id))
                          for i, n in enumerate(x for x in live if x.connectivity == "private")}
        kernel: dict[int, tuple[KernelRoute, ...]] = {}
        for table_id, i in rank.items():
            table = [kernel_route(r, vpc.id, attached, has_internet, eni_by_id, realms)
                     for r in routes_of[table_id]]
            table = through_private_nat(table, routes_of[table_id], private_realms, routes_of,
                                         vpc.id, attached, has_internet, eni_by_id)
            if not any(r.dst == "0.0.0.0/0" for r in table):  # no route: dropped, as on AWS
                table.append(KernelRoute("0.0.0.0/0", "blackhole"))
            kernel[TABLE_BASE + i] = tuple(sorted(table))
        rules = []
        for e in enis:
            if e.vpc_id != vpc.id or e.far_end is None:
                continue
            tid = explicit.get(e.subnet_id) or main_table
            if tid is not None and tid in rank:
                rules.append((port_ifname(e.id), TABLE_BASE + rank[tid]))
        nat = tuple(sorted((a.public_ip, a.private_ip) for a in addresses
                           if a.eni_id in eni_by_id and eni_by_id[a.eni_id].vpc_id == vpc.id
                           and eni_by_id[a.eni_id].far_end is not None
                           and a.private_ip)) if has_internet else ()
        netns = names.vpc_netns(vpc.id)
        linked = has_internet or (bool(internet_netns) and vpc.id in egress_only_vpcs)
        out.append(GatewayNetSpec(vpc.id, netns, internet_netns if linked else "",
                                  names.gateway_veth(vpc.id), nat, gateway_table(names),
                                  RoutingSpec(netns, kernel, tuple(sorted(rules))),
                                  tuple(sorted(realms.values())), connection_limit,
                                  tuple(sorted((realm, ip) for realm, ip, _t
                                               in private_realms.values())),
                                  idle_timeout_s))
    return out


# --- kernel -------------------------------------------------------------------------------

# What the last run made (and read back) in each VPC namespace: the spec, and the identities of
# the namespaces it was made in. A run told which VPCs may have changed underneath skips the
# others when their spec is the same (reading a VPC's link, nft table, routes and rules back
# costs ~10 ms; legacy mode reconciles on every cold start).
_MADE: dict[str, tuple[GatewayNetSpec, tuple[int, int]]] = {}


def _identity(spec: GatewayNetSpec) -> tuple[int, int]:
    """The inodes of the VPC's namespace and of the internet namespace (0: none): a namespace
    made anew (drift repaired by net/reconcile.py, a restart) is another one."""
    return ns.identity(spec.netns), ns.identity(spec.internet_netns)


def reconcile(specs: list[GatewayNetSpec], recheck: set[str] | None = None) -> list[str]:
    """Make each VPC's gateway state match its spec. `recheck` None: read every VPC back and
    repair what differs (start, drift repair); a set: VPC namespaces that may have changed
    underneath (what net/reconcile.py changed in this run) — every other VPC whose spec is the
    one last made there, in the same namespaces, is left alone."""
    changes: list[str] = []
    for name in set(_MADE) - {spec.netns for spec in specs}:
        del _MADE[name]
    for spec in specs:
        if not ns.exists(spec.netns):
            _MADE.pop(spec.netns, None)
            continue  # net/reconcile.py makes it first
        identity = _identity(spec)
        if recheck is not None and spec.netns not in recheck \
                and _MADE.get(spec.netns) == (spec, identity):
            continue
        _MADE.pop(spec.netns, None)  # until this VPC is made again in full
        with Netlink(spec.netns) as nl:  # one handle for the link and the routing
            _reconcile_link(nl, spec, changes)
            _reconcile_nft(spec, changes)
            changes += routing.reconcile(spec.routing, nl)
        _MADE[spec.netns] = (spec, identity)
    return changes


def _reconcile_link(nl: Netlink, spec: GatewayNetSpec, changes: list[str]) -> None:
    """The VPC's link into the internet namespace, each end read once and changed only where
    it differs (this runs for every VPC on every reconcile)."""
    link = nl.link(INTERNET_LINK)
    if not spec.internet_netns:
        if link is not None:
            nl.delete_link(INTERNET_LINK)
            changes.append(f"removed the internet link of {spec.netns}")
        return
    if not ns.exists(spec.internet_netns):
        raise RuntimeError(f"internet namespace {spec.internet_netns} does not exist")
    with Netlink(spec.internet_netns) as il:
        peer = il.link(spec.peer)
        if link is not None and peer is None:
            nl.delete_link(INTERNET_LINK)
            link = None
        if link is None:
            nl.add_veth(INTERNET_LINK, spec.peer, peer_netns=spec.internet_netns)
            changes.append(f"linked {spec.netns} to {spec.internet_netns}/{spec.peer}")
            _sysctl_once(spec.netns, f"net.ipv4.conf.{INTERNET_LINK}.rp_filter", "0")
            _sysctl_once(spec.internet_netns, f"net.ipv4.conf.{spec.peer}.rp_filter", "0")
            link, peer = nl.link(INTERNET_LINK), il.link(spec.peer)
        assert link is not None and peer is not None
        _ensure_only_address(nl, link.index, VPC_SIDE_ADDR, changes)
        if not link.up:
            nl.set_up(link.index)
        _ensure_only_address(il, peer.index, INTERNET_SIDE_ADDR, changes)
        if not peer.up:
            il.set_up(peer.index)
        _reconcile_public_routes(il, peer.index, spec, changes)


def _sysctl_once(netns: str, key: str, value: str) -> None:
    with ns.entered(netns):
        ns.set_sysctl(key, value)


def _ensure_only_address(nl: Netlink, index: int, address: str, changes: list[str]) -> None:
    have = nl.addresses(index)
    if have == {(address, 32)}:
        return
    for addr, plen in have:
        nl.delete_address(index, addr, plen)
    nl.add_address(index, address, 32)
    changes.append(f"set {address} on link {index} in {nl.netns}")


def _reconcile_public_routes(il: Netlink, index: int, spec: GatewayNetSpec,
                             changes: list[str]) -> None:
    """The internet namespace routes each public address of the VPC back over its link."""
    have = {dst for dst, plen, oif, _gw in il.routes() if plen == 32 and oif == index}
    wanted = spec.public_addresses
    for dst in sorted(have - wanted):
        il.delete_route(f"{dst}/32")
        changes.append(f"unrouted {dst} in {spec.internet_netns}")
    for dst in sorted(wanted - have):
        subprocess.run(["ip", "-n", spec.internet_netns, "route", "replace", f"{dst}/32",
                        "via", VPC_SIDE_ADDR, "dev", spec.peer, "onlink"], check=True,
                       capture_output=True)
        changes.append(f"routed {dst} to {spec.vpc_id} in {spec.internet_netns}")


def _reconcile_nft(spec: GatewayNetSpec, changes: list[str]) -> None:
    current = nft.list_text(f"table ip {spec.nft_table}", spec.netns)
    if not spec.translates:  # nothing to translate or guard: no table, no per-packet cost
        if current is not None:
            nft.delete_table("ip", spec.nft_table, spec.netns)
            changes.append(f"removed gateway NAT in {spec.netns}")
        return
    current = current or ""
    script = spec.nft_script()
    marker = script[script.index('comment "'):].split("\n", 1)[0]
    if marker in current:
        return
    nft.apply(script, spec.netns)
    changes.append(f"applied gateway NAT in {spec.netns}")


def nat_levels(names: Names, spec: GatewayNetSpec) -> dict[str, dict[str, int]]:
    """Per NAT gateway public address translating in this VPC: its CloudWatch metrics, read
    from the kernel (its nft counters; its tracked flows from conntrack)."""
    from . import hyperplane as hp  # the conntrack reader of the Hyperplane's flow rule
    from .hyperplane.counters import idle_expired

    if not spec.nat_addresses or not ns.exists(spec.netns):
        return {}
    counters: dict[str, dict[str, int]] = {}
    for item in nft.list_json(f"counters table ip {spec.nft_table}", spec.netns):
        c = item.get("counter")
        if c:
            counters[c["name"]] = c
    flows = hp.flow_counts(names, spec.vpc_id)  # also feeds the idle-expiry watch
    out = {}
    for realm, pub in spec.nat_addresses:
        def get(what: str, key: str = "packets") -> int:
            return int(counters.get(f"nat{realm}_{what}", {}).get(key, 0))
        out[pub] = {"ActiveConnectionCount": flows.get(pub, 0),
                    "ConnectionAttemptCount": get("new") + get("refused"),
                    "ConnectionEstablishedCount": get("est"),
                    "IdleTimeoutCount": idle_expired(spec.netns, pub),
                    "ErrorPortAllocation": get("refused"),
                    "BytesOutToDestination": get("out", "bytes"),
                    "PacketsOutToDestination": get("out"),
                    "PacketsDropCount": get("drop") + get("refused")}
    return out
