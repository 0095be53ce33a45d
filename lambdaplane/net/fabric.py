"""The EVPN fabric of one host: how a VPC spans hosts (docs/fabric.md).

Per host one fabric namespace (Names.fabric_netns) holds:
  - the underlay address (/32) on `under0`, a veth whose other end (Names.fabric_underlay_link)
    is in the host's namespace, which routes the address to it and answers ARP for the other
    hosts' underlay addresses (proxy ARP): the fabric namespace reaches the peers through the
    host's own routing;
  - per VPC segment (one VNI per VPC) a bridge `br<vni>` holding a VXLAN device `vx<vni>`
    (local = the underlay address, no learning: FRR programs the remote entries) and a veth
    `vp<vni>` whose other end is the VPC namespace's EVPN port (net/vpc.py's EVPN_LINK). The
    VPC namespace routes the VPC's subnet prefixes out of that port and answers ARP on it for
    its own interfaces (proxy ARP, proxy_delay 0): an interface on another host is one ARP away,
    exactly like one on the same host;
  - zebra and bgpd (net/frr.py), which learn the local MACs from the bridges and exchange them
    and the flood lists with the peers (BGP EVPN), installing the remote ones into the kernel.

ensure(spec) makes the kernel and the daemons match a FabricSpec, by difference, idempotent
(a second run changes nothing; a run after a crash or a killed daemon repairs it); remove()
takes it all away. The VPC namespaces themselves are net/reconcile.py's: a VPC whose namespace
does not exist yet is left for the next run. Runs on the net thread."""
from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from . import frr, host_sysctls, ns
from .fabric_mss import ensure_mss_clamp
from .names import (
    FABRIC_UNDERLAY_IFNAME,
    Names,
    fabric_bridge_ifname,
    fabric_port_ifname,
    fabric_vxlan_ifname,
    vni_of_fabric_link,
)
from .vpc import EVPN_LINK

VXLAN_PORT = 4789
IP_FORWARD = "net.ipv4.ip_forward"
UNDERLAY_MTU = 1500
VXLAN_OVERHEAD = 50  # outer Ethernet 14 + IPv4 20 + UDP 8 + VXLAN 8
SEGMENT_MTU = UNDERLAY_MTU - VXLAN_OVERHEAD


def vni_of_vpc(vpc_id: str) -> int:
    """The VPC's VNI derived from its id alone: 24 bits of its SHA-256, never 0. Only a
    fallback for a VPC the store gave no VNI: two VPCs collide with probability about n²/2²⁵
    (3 % at 1,000 VPCs), so VNIs come from the store (store/vnis.py; HostFabric.set_vpcs
    passes them to `with_store_vnis`)."""
    return int.from_bytes(hashlib.sha256(vpc_id.encode()).digest()[:3], "big") or 1


def with_store_vnis(spec: FabricSpec, vnis: Mapping[str, int]) -> FabricSpec:
    """`spec` with every VPC's segment on the VNI the store allocated it (store/vnis.py,
    `VniStore.all()`, unique per VPC); a VPC the store gave none keeps `vni_of_vpc`'s."""
    segments = (replace(v, vni=vnis.get(v.vpc_id) or v.vni) for v in spec.vpcs)
    return replace(spec, vpcs=tuple(sorted(segments, key=lambda v: v.vni)))


@dataclass(frozen=True)
class FabricVpc:
    """One VPC's segment on this host: its VNI, its namespace, the prefixes (its subnets'
    CIDRs) that lead to the other hosts."""
    vpc_id: str
    vni: int
    vpc_netns: str
    prefixes: tuple[str, ...]


@dataclass(frozen=True)
class FabricSpec:
    netns: str
    underlay_link: str  # the underlay veth's end in host_netns
    underlay_address: str
    peers: tuple[str, ...]  # the other hosts' underlay addresses
    state_dir: Path  # FRR's files (net/frr.py)
    vpcs: tuple[FabricVpc, ...] = ()
    host_netns: str | None = None  # the host's namespace; None: the caller's own
    asn: int = frr.DEFAULT_ASN
    segment_mtu: int = SEGMENT_MTU
    # where the host namespace's ip_forward is recorded before we switch it on, so remove()
    # (or `clean`) puts it back (net/host_sysctls.py); None: switched on, never put back
    host_record: Path | None = None

    @property
    def daemons(self) -> frr.Daemons:
        return frr.Daemons(self.state_dir, self.netns)

    def configs(self) -> dict[str, str]:
        cfg = frr.BgpConfig(self.netns, self.underlay_address, self.peers, self.asn)
        return {"zebra": frr.render_zebra(self.netns), "bgpd": frr.render_bgpd(cfg)}


def desired_fabric(names: Names, data_dir: Path, underlay_address: str, peers: Iterable[str],
                   vpcs: Iterable[tuple[str, Iterable[str]]],
                   host_netns: str | None = None,
                   host_record: Path | None = None) -> FabricSpec:
    """The fabric of this server: `vpcs` are (VPC id, its subnets' CIDRs); peers other than
    our own underlay address."""
    ipaddress.IPv4Address(underlay_address)
    segments = tuple(sorted((FabricVpc(vpc_id, vni_of_vpc(vpc_id), names.vpc_netns(vpc_id),
                                       tuple(sorted(set(cidrs))))
                             for vpc_id, cidrs in vpcs), key=lambda v: v.vni))
    return FabricSpec(names.fabric_netns, names.fabric_underlay_link, underlay_address,
                      tuple(sorted({p for p in peers if p != underlay_address})),
                      data_dir / "fabric", segments, host_netns,
                      host_record=host_record)


# --- the kernel, through `ip` (JSON) -----------------------------------------------------------

def _ip(netns: str | None, *args: str, check: bool = True) -> str:
    cmd = ["ip", *(["-n", netns] if netns else []), *args]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    if check and out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {out.stderr.strip()}")
    return out.stdout


def _bridge(netns: str, *args: str) -> None:
    out = subprocess.run(["bridge", "-n", netns, *args], capture_output=True, text=True,
                         timeout=30)
    if out.returncode != 0:
        raise RuntimeError(f"bridge {' '.join(args)} in {netns}: {out.stderr.strip()}")


@dataclass(frozen=True)
class _Link:
    name: str
    index: int
    kind: str
    up: bool
    mtu: int
    master: str
    peer_index: int  # a veth's peer ifindex (in its own namespace), else 0
    data: dict[str, Any] = field(default_factory=dict)  # e.g. a vxlan's id, local, port
    port_data: dict[str, Any] = field(default_factory=dict)  # as a bridge port: learning…


def _links(netns: str | None) -> dict[str, _Link]:
    out: dict[str, _Link] = {}
    for raw in json.loads(_ip(netns, "-j", "-d", "link", "show") or "[]"):
        info = raw.get("linkinfo", {})
        out[raw["ifname"]] = _Link(raw["ifname"], raw["ifindex"], info.get("info_kind", ""),
                                   "UP" in raw.get("flags", []), raw.get("mtu", 0),
                                   raw.get("master", ""), raw.get("link_index", 0),
                                   info.get("info_data", {}), info.get("info_slave_data", {}))
    return out


def _routes(netns: str | None, dev: str) -> set[str]:
    rows = json.loads(_ip(netns, "-j", "route", "show", "dev", dev) or "[]")
    return {r["dst"] if "/" in r["dst"] or r["dst"] == "default" else f"{r['dst']}/32"
            for r in rows}


def _sysctl(netns: str | None, key: str, value: str, changes: list[str]) -> None:
    path = Path("/proc/sys", key.replace(".", "/"))
    with ns.entered(netns):
        if path.read_text().strip() != value:
            ns.set_sysctl(key, value)
            changes.append(f"set {key}={value} in {netns or 'host'}")


def _up(netns: str | None, link: _Link, changes: list[str], mtu: int | None = None,
        master: str | None = None) -> None:
    args: list[str] = []
    if mtu is not None and link.mtu != mtu:
        args += ["mtu", str(mtu)]
    if master is not None and link.master != master:
        args += ["master", master]
    if not link.up:
        args.append("up")
    if args:
        _ip(netns, "link", "set", "dev", link.name, *args)
        changes.append(f"set {link.name} {' '.join(args)} in {netns or 'host'}")


# --- ensure / remove ---------------------------------------------------------------------------

def ensure(spec: FabricSpec) -> list[str]:
    """Make this host's fabric match `spec`; a line per change made."""
    changes: list[str] = []
    if not ns.exists(spec.netns):
        ns.create(spec.netns)
        changes.append(f"created netns {spec.netns}")
    links = _links(spec.netns)
    if not links["lo"].up:
        _ip(spec.netns, "link", "set", "lo", "up")
    _ensure_underlay(spec, links, changes)
    wanted = {v.vni for v in spec.vpcs}
    for name, link in sorted(links.items(), key=lambda kv: not kv[0].startswith("vp")):
        vni = vni_of_fabric_link(name)
        if vni is not None and vni not in wanted:
            _ip(spec.netns, "link", "del", name, check=False)  # vp first: its VPC end goes too
            changes.append(f"removed {name} from {spec.netns}")
    for vpc in spec.vpcs:
        if ns.exists(vpc.vpc_netns):
            _ensure_segment(spec, vpc, _links(spec.netns), changes)
    changes += frr.ensure(spec.daemons, spec.configs())
    return changes


def remove(spec: FabricSpec) -> list[str]:
    """Stop FRR, delete the fabric namespace, the underlay link's host end and FRR's state
    directory. The VPCs' EVPN ports are deleted first, one by one: the kernel dismantles a
    deleted namespace's devices later, in the background, so a VPC namespace would still show
    its `evpn0` for a moment after the namespace went."""
    changes = frr.stop_all(spec.daemons)
    if ns.exists(spec.netns):
        for port in [name for name in _links(spec.netns)
                     if (vni := vni_of_fabric_link(name)) and name == fabric_port_ifname(vni)]:
            _ip(spec.netns, "link", "del", port, check=False)
        ns.delete(spec.netns)
        changes.append(f"removed netns {spec.netns}")
    host_gone = spec.host_netns is not None and not ns.exists(spec.host_netns)
    if not host_gone and spec.underlay_link in _links(spec.host_netns):
        _ip(spec.host_netns, "link", "del", spec.underlay_link, check=False)
        changes.append(f"removed {spec.underlay_link}")
    if not host_gone and spec.host_record is not None:
        changes += restore_host_sysctls(spec.host_record, spec.host_netns)
    return changes


def restore_host_sysctls(record: Path, host_netns: str | None) -> list[str]:
    """Put back what the fabric changed in the host's namespace (its ip_forward)."""
    with ns.entered(host_netns):
        return [f"restored {done} in {host_netns or 'host'}"
                for done in host_sysctls.restore(record)]


def processes_in(netns: str) -> list[int]:
    """The processes living in network namespace `netns` (its FRR daemons): what `clean` kills
    when there is no data dir to stop them by (they are in none of our cgroups)."""
    try:
        target = os.stat(ns.netns_path(netns))
    except FileNotFoundError:
        return []
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                st = os.stat(entry / "ns" / "net")
            except (FileNotFoundError, PermissionError, ProcessLookupError):
                continue
            if (st.st_ino, st.st_dev) == (target.st_ino, target.st_dev):
                pids.append(int(entry.name))
    return sorted(pids)


def _ensure_underlay(spec: FabricSpec, links: dict[str, _Link], changes: list[str]) -> None:
    host_links = _links(spec.host_netns)
    host_end, fabric_end = host_links.get(spec.underlay_link), links.get(FABRIC_UNDERLAY_IFNAME)
    if host_end is None or fabric_end is None or fabric_end.peer_index != host_end.index:
        for netns, name, have in ((spec.host_netns, spec.underlay_link, host_end),
                                  (spec.netns, FABRIC_UNDERLAY_IFNAME, fabric_end)):
            if have is not None:
                _ip(netns, "link", "del", name, check=False)
        _ip(spec.host_netns, "link", "add", spec.underlay_link, "type", "veth", "peer", "name",
            FABRIC_UNDERLAY_IFNAME, "netns", spec.netns)
        changes.append(f"created underlay link {spec.underlay_link} ↔ "
                       f"{spec.netns}/{FABRIC_UNDERLAY_IFNAME}")
        host_links = _links(spec.host_netns)
        links.update(_links(spec.netns))
    _up(spec.host_netns, host_links[spec.underlay_link], changes)
    _up(spec.netns, links[FABRIC_UNDERLAY_IFNAME], changes)
    address = f"{spec.underlay_address}/32"
    have = json.loads(_ip(spec.netns, "-j", "addr", "show", "dev", FABRIC_UNDERLAY_IFNAME))
    addrs = {f"{a['local']}/{a['prefixlen']}" for row in have for a in row.get("addr_info", [])
             if a.get("family") == "inet"}
    for extra in sorted(addrs - {address}):
        _ip(spec.netns, "addr", "del", extra, "dev", FABRIC_UNDERLAY_IFNAME)
    if address not in addrs:
        _ip(spec.netns, "addr", "add", address, "dev", FABRIC_UNDERLAY_IFNAME)
        changes.append(f"added {address} to {FABRIC_UNDERLAY_IFNAME} in {spec.netns}")
    if "default" not in _routes(spec.netns, FABRIC_UNDERLAY_IFNAME):
        _ip(spec.netns, "route", "replace", "default", "dev", FABRIC_UNDERLAY_IFNAME)
        changes.append(f"routed default to {FABRIC_UNDERLAY_IFNAME} in {spec.netns}")
    if address not in _routes(spec.host_netns, spec.underlay_link):
        _ip(spec.host_netns, "route", "replace", address, "dev", spec.underlay_link)
        changes.append(f"routed {address} to {spec.underlay_link}")
    if spec.host_record is not None:
        with ns.entered(spec.host_netns):
            if host_sysctls.ensure(spec.host_record, IP_FORWARD, "1"):
                changes.append(f"set {IP_FORWARD}=1 in {spec.host_netns or 'host'} (recorded)")
    else:
        _sysctl(spec.host_netns, IP_FORWARD, "1", changes)
    _sysctl(spec.host_netns, f"net.ipv4.conf.{spec.underlay_link}.proxy_arp", "1", changes)
    _sysctl(spec.host_netns, f"net.ipv4.neigh.{spec.underlay_link}.proxy_delay", "0", changes)


def _ensure_segment(spec: FabricSpec, vpc: FabricVpc, links: dict[str, _Link],
                    changes: list[str]) -> None:
    bridge, vxlan, port = (fabric_bridge_ifname(vpc.vni), fabric_vxlan_ifname(vpc.vni),
                           fabric_port_ifname(vpc.vni))
    if bridge in links and links[bridge].kind != "bridge":
        _ip(spec.netns, "link", "del", bridge)
    if bridge not in links or links[bridge].kind != "bridge":
        _ip(spec.netns, "link", "add", bridge, "type", "bridge")
        changes.append(f"created bridge {bridge} in {spec.netns}")
    have = links.get(vxlan)
    if have is not None and (have.kind != "vxlan" or have.data.get("id") != vpc.vni
                             or have.data.get("local") != spec.underlay_address):
        _ip(spec.netns, "link", "del", vxlan)
        changes.append(f"removed {vxlan} (not this segment's) from {spec.netns}")
        have = None
    if have is None:
        _ip(spec.netns, "link", "add", vxlan, "type", "vxlan", "id", str(vpc.vni), "local",
            spec.underlay_address, "dstport", str(VXLAN_PORT), "nolearning")
        changes.append(f"created {vxlan} (VNI {vpc.vni}) in {spec.netns}")
    vpc_links = _links(vpc.vpc_netns)
    ours, theirs = links.get(port), vpc_links.get(EVPN_LINK)
    if ours is None or theirs is None or theirs.peer_index != ours.index:
        if ours is not None:
            _ip(spec.netns, "link", "del", port, check=False)
        if theirs is not None:
            _ip(vpc.vpc_netns, "link", "del", EVPN_LINK, check=False)
        _ip(spec.netns, "link", "add", port, "type", "veth", "peer", "name", EVPN_LINK,
            "netns", vpc.vpc_netns)
        changes.append(f"created EVPN port {port} ↔ {vpc.vpc_netns}/{EVPN_LINK}")
        vpc_links = _links(vpc.vpc_netns)
    links = _links(spec.netns)
    _up(spec.netns, links[bridge], changes)
    _up(spec.netns, links[vxlan], changes, mtu=spec.segment_mtu, master=bridge)
    if _links(spec.netns)[vxlan].port_data.get("learning", True):
        _bridge(spec.netns, "link", "set", "dev", vxlan, "learning", "off")  # FRR installs
        changes.append(f"set {vxlan} learning off in {spec.netns}")
    _up(spec.netns, links[port], changes, mtu=spec.segment_mtu, master=bridge)
    _ensure_vpc_side(spec, vpc, vpc_links[EVPN_LINK], changes)


def _ensure_vpc_side(spec: FabricSpec, vpc: FabricVpc, link: _Link,
                     changes: list[str]) -> None:
    """The VPC end of the EVPN port: the subnet prefixes routed out of it; ARP answered on it
    for the VPC's own interfaces (proxy ARP at once). The VPC namespace asks for remote
    addresses from its subnet routers' addresses, which the other host's VPC namespace holds
    too: accept_local lets those requests in."""
    _up(vpc.vpc_netns, link, changes, mtu=spec.segment_mtu)
    for key, value in ((f"net.ipv4.conf.{EVPN_LINK}.proxy_arp", "1"),
                       (f"net.ipv4.neigh.{EVPN_LINK}.proxy_delay", "0"),
                       (f"net.ipv4.conf.{EVPN_LINK}.accept_local", "1"),
                       (f"net.ipv4.conf.{EVPN_LINK}.rp_filter", "0")):
        _sysctl(vpc.vpc_netns, key, value, changes)
    ensure_mss_clamp(vpc.vpc_netns, EVPN_LINK, changes)
    have = _routes(vpc.vpc_netns, EVPN_LINK)
    for extra in sorted(have - set(vpc.prefixes)):
        _ip(vpc.vpc_netns, "route", "del", extra, "dev", EVPN_LINK, check=False)
        changes.append(f"removed route {extra} via {EVPN_LINK} in {vpc.vpc_netns}")
    for prefix in vpc.prefixes:
        if prefix not in have:
            _ip(vpc.vpc_netns, "route", "replace", prefix, "dev", EVPN_LINK)
            changes.append(f"routed {prefix} to {EVPN_LINK} in {vpc.vpc_netns}")
