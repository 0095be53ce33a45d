"""Make the kernel match the desired VPC state (net/vpc.py), by difference: create what is
missing, fix what differs, remove what carries this server's VPC prefixes but is not desired.
Every step checks before it acts, so a second run with nothing to do changes nothing, and a run
after a crash at any point repairs it. Returns a line per change made. Runs on the net thread.

Owns the namespaces `<prefix>-vpc-*` (VPCs) and `<prefix>-r-*` (per-interface resources)."""
from __future__ import annotations

import re
from pathlib import Path

from ..model.ec2 import Snapshot
from . import ipv6, nft, ns
from .names import Names
from .netlink import LinkInfo, Netlink
from .processes import process_alive
from .security_groups import script_fingerprint
from .vpc import EVPN_LINK, GATEWAY_LINK, INTERNET_LINK, PortSpec, VpcNetSpec, desired_state

_COMMENT = re.compile(r'^\s*comment "([0-9a-f]+)"', re.M)


def reconcile_snapshot(names: Names, snapshot: Snapshot,
                       changed_vpcs: set[str] | None = None) -> list[str]:
    """`reconcile` with the desired state derived here, on the net thread: pure, but it took
    hundreds of ms of CPU on the event loop with many VPCs (the loop-blocking test mode)."""
    return reconcile(names, desired_state(names, snapshot), changed_vpcs)


def reconcile(names: Names, desired: list[VpcNetSpec],
              changed_vpcs: set[str] | None = None) -> list[str]:
    """`changed_vpcs`: filled with the namespaces of the VPCs this run changed anything of
    (net/gateways.py then re-reads those VPCs' gateway state)."""
    changes: list[str] = []
    wanted_vpcs = {spec.netns for spec in desired}
    wanted_far = {p.far.netns for spec in desired for p in spec.ports if p.far.owns_netns}
    for name in ns.list_named(names.vpc_netns_prefix):
        if name not in wanted_vpcs:
            ns.delete(name)
            changes.append(f"removed netns {name}")
    for name in ns.list_named(names.resource_netns_prefix):
        if name not in wanted_far:
            ns.delete(name)
            changes.append(f"removed netns {name}")
    for spec in desired:
        before = len(changes)
        _reconcile_vpc(spec, changes)
        if changed_vpcs is not None and len(changes) > before:
            changed_vpcs.add(spec.netns)
    return changes


def teardown(names: Names) -> list[str]:
    """Remove every VPC kernel object of this server (the store keeps the desired state)."""
    return reconcile(names, [])


# --- one VPC --------------------------------------------------------------------------------

def _sysctl(key: str, value: str, netns: str, changes: list[str]) -> None:
    path = Path("/proc/sys", key.replace(".", "/"))
    with ns.entered(netns):
        if path.read_text().strip() != value:
            ns.set_sysctl(key, value)
            changes.append(f"set {key}={value} in {netns}")


def _ensure_up(nl: Netlink, name: str, changes: list[str]) -> None:
    _set_up(nl, nl.link(name), changes)


def _set_up(nl: Netlink, link: LinkInfo | None, changes: list[str]) -> None:
    if link is not None and not link.up:
        nl.set_up(link.index)
        changes.append(f"set {link.name} up in {nl.netns}")


def _ensure_addresses(nl: Netlink, name: str, wanted: set[tuple[str, int]],
                      changes: list[str], have: set[tuple[str, int]] | None = None) -> None:
    have = nl.addresses(name) if have is None else have
    for addr, plen in sorted(have - wanted):
        nl.delete_address(name, addr, plen)
        changes.append(f"removed {addr}/{plen} from {name} in {nl.netns}")
    for addr, plen in sorted(wanted - have):
        nl.add_address(name, addr, plen)
        changes.append(f"added {addr}/{plen} to {name} in {nl.netns}")


def _reconcile_vpc(spec: VpcNetSpec, changes: list[str]) -> None:
    if not ns.exists(spec.netns):
        ns.create(spec.netns)
        changes.append(f"created netns {spec.netns}")
    # Proxy ARP on every port lets interfaces of one subnet reach each other only through
    # this namespace's forward chain; proxy_delay 0 (per port below) answers at once instead
    # of after up to 0.8 s.
    _sysctl("net.ipv4.ip_forward", "1", spec.netns, changes)
    _sysctl("net.ipv4.conf.all.proxy_arp", "1", spec.netns, changes)
    if spec.ipv6:
        ipv6.enable_forwarding(spec.netns, changes)
    with Netlink(spec.netns) as nl:
        _ensure_up(nl, GATEWAY_LINK, changes)
        _ensure_addresses(nl, GATEWAY_LINK,
                          {(g, 32) for g in spec.gateways} | {("127.0.0.1", 8)}
                          | ({(spec.resolver, 32)} if spec.resolver else set()), changes)
        wanted = {p.ifname: p for p in spec.ports}
        veths = {link.name for link in nl.links()
                 if link.kind == "veth" and link.name != INTERNET_LINK  # net/gateways.py's
                 and link.name != EVPN_LINK}  # net/fabric.py's
        for name in sorted(veths - set(wanted)):
            nl.delete_link(name)
            veths.discard(name)
            changes.append(f"removed port {name} from {spec.netns}")
        ready: list[PortSpec] = []
        far_ends = _FarEnds()
        try:
            for port in spec.ports:
                if _reconcile_port(nl, port, veths, far_ends, spec.netns, changes):
                    ready.append(port)
                    if spec.ipv6:
                        ipv6.configure_port(nl, far_ends.netlink(port.far.netns), port, changes)
        finally:
            far_ends.close()
        _reconcile_routes(nl, ready, changes)
        if spec.ipv6:
            ipv6.reconcile_routes(nl, ready, changes)
        ipv6.reconcile_resolver(nl, spec.resolver6, changes)  # AWS's fd00:ec2::253
    _reconcile_nft(spec, changes)


class _FarEnds:
    """One netlink handle and one address dump per far namespace, for one reconcile: a shared
    far namespace (the worker) has hundreds of links and addresses."""

    def __init__(self) -> None:
        self._links: dict[str, Netlink] = {}
        self._addresses: dict[str, dict[int, set[tuple[str, int]]]] = {}

    def netlink(self, netns: str) -> Netlink:
        if netns not in self._links:
            self._links[netns] = Netlink(netns)
        return self._links[netns]

    def addresses(self, netns: str, index: int) -> set[tuple[str, int]]:
        if netns not in self._addresses:
            self._addresses[netns] = self.netlink(netns).addresses_by_link()
        return self._addresses[netns].get(index, set())

    def close(self) -> None:
        for nl in self._links.values():
            nl.close()


def _reconcile_port(nl: Netlink, port: PortSpec, veths: set[str], far_ends: _FarEnds,
                    netns: str, changes: list[str]) -> bool:
    """One port of VPC namespace `netns` (handle `nl`) and its far end; False when the far
    end cannot exist yet."""
    if not _ensure_far_netns(port, changes):
        if port.ifname in veths:
            nl.delete_link(port.ifname)
            changes.append(f"removed port {port.ifname} (no far end) from {netns}")
        return False
    far = far_ends.netlink(port.far.netns)
    if port.ifname in veths and far.index(port.far.ifname) is None:
        nl.delete_link(port.ifname)
        veths.discard(port.ifname)
        changes.append(f"removed port {port.ifname} (far end lost) from {netns}")
    if port.ifname not in veths:
        if far.index(port.far.ifname) is not None:
            # the far end of a port whose VPC namespace was deleted while something still
            # held it (the namespace lives on, unnamed, with its end of the pair): drop the
            # pair, or the new one cannot take the name
            far.delete_link(port.far.ifname)
            changes.append(f"removed stale {port.far.netns}/{port.far.ifname}")
        nl.add_veth(port.ifname, port.far.ifname, peer_netns=port.far.netns)
        changes.append(f"created port {port.ifname} ↔ {port.far.netns}/{port.far.ifname}")
    _ensure_up(nl, port.ifname, changes)
    _sysctl(f"net.ipv4.conf.{port.ifname}.proxy_arp", "1", netns, changes)
    _sysctl(f"net.ipv4.neigh.{port.ifname}.proxy_delay", "0", netns, changes)
    _configure_far(port, far, far_ends, changes)
    return True


def _ensure_far_netns(port: PortSpec, changes: list[str]) -> bool:
    far = port.far
    if ns.exists(far.netns):
        return True
    if not far.owns_netns:
        return False  # a shared namespace (the worker) is made by its owner first
    if process_alive(port.process_pid, port.process_start):
        ns.adopt(far.netns, port.process_pid)  # type: ignore[arg-type]
        changes.append(f"adopted netns {far.netns} of pid {port.process_pid}")
    else:
        ns.create(far.netns)
        changes.append(f"created netns {far.netns}")
    return True


def _configure_far(port: PortSpec, far: Netlink, far_ends: _FarEnds,
                   changes: list[str]) -> None:
    if port.far.owns_netns:
        _ensure_up(far, "lo", changes)
    link = far.link(port.far.ifname)  # one read: a shared far namespace has hundreds
    assert link is not None
    if link.mac != port.mac:
        far.set_mac(link.index, port.mac)
        changes.append(f"set {port.far.ifname} mac {port.mac} in {port.far.netns}")
    _set_up(far, link, changes)
    _ensure_addresses(far, port.far.ifname, set(port.far_addresses), changes,
                      far_ends.addresses(port.far.netns, link.index))
    if port.far.owns_netns and port.gateway:  # no IPv4 router in an IPv6-only subnet
        default = [r for r in far.routes() if r[1] == 0]
        if default != [("", 0, link.index, port.gateway)]:
            far.add_default_route(port.gateway, port.far.ifname)
            changes.append(f"set default route via {port.gateway} in {port.far.netns}")


def _reconcile_routes(nl: Netlink, ports: list[PortSpec], changes: list[str]) -> None:
    wanted = {ip: nl.index(port.ifname) for port in ports
              for ip in (port.ip, *port.secondary_ips) if ip}
    have = {dst: oif for dst, plen, oif, _gw in nl.routes() if plen == 32}
    for dst in sorted(set(have) - set(wanted)):
        nl.delete_route(f"{dst}/32")
        changes.append(f"removed route {dst}/32 in {nl.netns}")
    for dst, oif in sorted(wanted.items()):
        if have.get(dst) != oif:
            nl.add_route(f"{dst}/32", oif, scope_link=True)  # type: ignore[arg-type]
            changes.append(f"routed {dst}/32 to {oif} in {nl.netns}")


def _reconcile_nft(spec: VpcNetSpec, changes: list[str]) -> None:
    current = nft.list_text(f"table inet {spec.nft_table}", spec.netns) or ""
    found = _COMMENT.search(current)
    if found and found.group(1) == script_fingerprint(spec.nft_script):
        return
    nft.apply(spec.nft_script, spec.netns)
    changes.append(f"applied security groups in {spec.netns}")
