"""The only pyroute2 user: a small typed layer over netlink for links, addresses, routes,
policy rules and the tc hook of an eBPF program (net/fastpath.py).

A Netlink object is opened *inside* one network namespace and keeps operating there after the
thread leaves it (a netlink socket belongs to the namespace it was created in), so the worker
and VPC namespaces each keep one open handle. Deletes ignore only "already gone" errors."""
from __future__ import annotations

import errno
import os
import struct
from dataclasses import dataclass

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from . import ns

_GONE = {errno.ENODEV, errno.ENOENT, errno.ESRCH, errno.EADDRNOTAVAIL}
SCOPE_LINK = 253
_SCOPE_NOWHERE = 255
_NUD_PERMANENT = 0x80
_AF_INET6 = 10
_IFA_F_NODAD = 0x02
_CLSACT_INGRESS = 0xFFFFFFF2  # TC_H_MAKE(TC_H_CLSACT, TC_H_MIN_INGRESS)
_BPF_PRIO, _BPF_HANDLE = 1, 1
_TCA_BPF_ID = 11


@dataclass(frozen=True)
class LinkInfo:
    name: str
    index: int
    kind: str | None
    up: bool
    mac: str


@dataclass(frozen=True)
class RuleInfo:
    priority: int
    table: int
    fwmark: int | None
    iifname: str | None


@dataclass(frozen=True)
class RouteInfo:
    dst: str  # "0.0.0.0" with dst_len 0: the default route
    dst_len: int
    oif: int | None
    gateway: str | None


def _link_info(msg: object) -> LinkInfo:
    linkinfo = msg.get_attr("IFLA_LINKINFO")  # type: ignore[attr-defined]
    kind = linkinfo.get_attr("IFLA_INFO_KIND") if linkinfo else None
    return LinkInfo(msg.get_attr("IFLA_IFNAME"), msg["index"], kind,  # type: ignore
                    bool(msg["flags"] & 1), msg.get_attr("IFLA_ADDRESS"))  # type: ignore


class Netlink:
    def __init__(self, netns: str | None = None) -> None:
        self.netns = netns
        with ns.entered(netns):
            self._ipr = IPRoute()

    def close(self) -> None:
        self._ipr.close()

    def __enter__(self) -> "Netlink":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # links -------------------------------------------------------------------------------
    def index(self, name: str) -> int | None:
        found = self._ipr.link_lookup(ifname=name)
        return found[0] if found else None

    def links(self, prefix: str = "") -> list[LinkInfo]:
        """Every link (a dump: ~0.3 ms of parsing per link; see link() for one)."""
        return [info for info in map(_link_info, self._ipr.get_links())
                if info.name.startswith(prefix)]

    def link(self, name: str) -> LinkInfo | None:
        """One link by name, without dumping the namespace's others (the worker has one per
        sandbox)."""
        try:
            return _link_info(self._ipr.link("get", ifname=name)[0])
        except NetlinkError as e:
            if e.code in _GONE:
                return None
            raise

    def add_veth(self, name: str, peer_name: str, peer_netns: str | None = None,
                 peer_index: int | None = None, mac: str | None = None,
                 peer_mac: str | None = None) -> int:
        """Create a veth pair; the peer is created directly in `peer_netns` (never moved)."""
        peer: dict[str, object] = {"ifname": peer_name}
        if peer_mac is not None:
            peer["address"] = peer_mac
        fd = None
        if peer_netns is not None:
            fd = os.open(ns.netns_path(peer_netns), os.O_RDONLY)
            peer["net_ns_fd"] = fd
        try:
            extra = {"address": mac} if mac is not None else {}
            self._ipr.link("add", ifname=name, kind="veth", peer=peer, **extra)
        finally:
            if fd is not None:
                os.close(fd)
        index = self.index(name)
        assert index is not None
        return index

    def set_mac(self, name_or_index: str | int, mac: str) -> None:
        self._ipr.link("set", index=self._idx(name_or_index), address=mac)

    def mac(self, name_or_index: str | int) -> str:
        return str(self._ipr.get_links(self._idx(name_or_index))[0].get_attr("IFLA_ADDRESS"))

    def addresses(self, name_or_index: str | int) -> set[tuple[str, int]]:
        """(address, prefixlen) of the link's IPv4 addresses."""
        return {(m.get_attr("IFA_ADDRESS"), m["prefixlen"])
                for m in self._ipr.get_addr(family=2, index=self._idx(name_or_index))}

    def addresses_by_link(self) -> dict[int, set[tuple[str, int]]]:
        """Every link's IPv4 addresses from one dump (a dump per link costs as much as one
        of all: the kernel does not filter it)."""
        out: dict[int, set[tuple[str, int]]] = {}
        for m in self._ipr.get_addr(family=2):
            out.setdefault(m["index"], set()).add((m.get_attr("IFA_ADDRESS"), m["prefixlen"]))
        return out

    def delete_address(self, name_or_index: str | int, address: str, prefixlen: int) -> None:
        try:
            self._ipr.addr("del", index=self._idx(name_or_index), address=address,
                           prefixlen=prefixlen)
        except NetlinkError as e:
            if e.code not in _GONE:
                raise

    def routes(self) -> list[tuple[str, int, int | None, str | None]]:
        """(dst, dst_len, oif, gateway) of the main table's IPv4 routes ("" dst: default)."""
        out = []
        for m in self._ipr.get_routes(family=2, table=254):
            out.append((m.get_attr("RTA_DST") or "", m["dst_len"], m.get_attr("RTA_OIF"),
                        m.get_attr("RTA_GATEWAY")))
        return out

    def add_default_route(self, gateway: str, name_or_index: str | int) -> None:
        """Default route via an on-link gateway (the subnet router)."""
        self._ipr.route("replace", dst="0.0.0.0/0", gateway=gateway,
                        oif=self._idx(name_or_index))

    def set_up(self, name_or_index: str | int) -> None:
        self._ipr.link("set", index=self._idx(name_or_index), state="up")

    def delete_link(self, name: str) -> None:
        index = self.index(name)
        if index is None:
            return
        try:
            self._ipr.link("del", index=index)
        except NetlinkError as e:
            if e.code not in _GONE:
                raise

    def add_permanent_neighbor(self, name_or_index: str | int, address: str, mac: str) -> None:
        """A static ARP entry. Permanent entries do not count against the kernel's neighbour
        table limit (gc_thresh3, one table for all namespaces: 1,024 entries by default),
        which dynamic entries of a thousand sandboxes would overflow ("No route to host")."""
        self._ipr.neigh("replace", dst=address, lladdr=mac, ifindex=self._idx(name_or_index),
                        state=_NUD_PERMANENT)

    # addresses and routes ----------------------------------------------------------------
    def add_address(self, name_or_index: str | int, address: str, prefixlen: int) -> None:
        try:
            self._ipr.addr("add", index=self._idx(name_or_index), address=address,
                           prefixlen=prefixlen)
        except NetlinkError as e:
            if e.code != errno.EEXIST:
                raise

    def add_route(self, dst: str, name_or_index: str | int, gateway: str | None = None,
                  table: int | None = None, scope_link: bool = False) -> None:
        kwargs: dict[str, object] = {"dst": dst, "oif": self._idx(name_or_index)}
        if gateway:
            kwargs["gateway"] = gateway
        if table is not None:
            kwargs["table"] = table
        if scope_link:
            kwargs["scope"] = SCOPE_LINK
        try:
            self._ipr.route("replace", **kwargs)
        except NetlinkError as e:
            if e.code != errno.EEXIST:
                raise

    def delete_route(self, dst: str, table: int | None = None) -> None:
        # scope "nowhere" matches a route of any scope (as `ip route del` does)
        kwargs: dict[str, object] = {"dst": dst, "scope": _SCOPE_NOWHERE}
        if table is not None:
            kwargs["table"] = table
        try:
            self._ipr.route("del", **kwargs)
        except NetlinkError as e:
            if e.code not in _GONE:
                raise

    def add_rule(self, fwmark: int, table: int, priority: int) -> None:
        try:
            self._ipr.rule("add", fwmark=fwmark, table=table, priority=priority)
        except NetlinkError as e:
            if e.code != errno.EEXIST:
                raise

    def delete_rule(self, fwmark: int, table: int, priority: int) -> None:
        try:
            self._ipr.rule("del", fwmark=fwmark, table=table, priority=priority)
        except NetlinkError as e:
            if e.code not in _GONE:
                raise

    def rules(self) -> list[RuleInfo]:
        """The IPv4 policy rules of this namespace."""
        return [RuleInfo(m.get_attr("FRA_PRIORITY") or 0, m.get_attr("FRA_TABLE") or m["table"],
                         m.get_attr("FRA_FWMARK"), m.get_attr("FRA_IIFNAME"))
                for m in self._ipr.get_rules(family=2)]

    def table_routes(self, table: int) -> list[RouteInfo]:
        """The IPv4 routes of one routing table."""
        return [RouteInfo(m.get_attr("RTA_DST") or "0.0.0.0", m["dst_len"], m.get_attr("RTA_OIF"),
                          m.get_attr("RTA_GATEWAY"))
                for m in self._ipr.get_routes(family=2, table=table)
                if (m.get_attr("RTA_TABLE") or m["table"]) == table]

    def routes_in_tables(self, lo: int, hi: int) -> list[tuple[int, str, int, str | None,
                                                               int | None, int]]:
        """(table, "dst/len", route type (1 unicast, 6 blackhole…), gateway, oif, realm) of
        every IPv4 route in tables lo..hi-1, in one dump (net/routing.py)."""
        out = []
        for m in self._ipr.route("dump", family=2):
            table = m.get_attr("RTA_TABLE") or m["table"]
            if lo <= table < hi:
                out.append((table, f"{m.get_attr('RTA_DST') or '0.0.0.0'}/{m['dst_len']}",
                            m["type"], m.get_attr("RTA_GATEWAY"), m.get_attr("RTA_OIF"),
                            (m.get_attr("RTA_FLOW") or 0) & 0xFFFF))
        return out

    # eBPF at tc ingress (net/fastpath.py) ---------------------------------------------------
    def attach_ingress_bpf(self, name_or_index: str | int, prog_fd: int, name: str) -> None:
        """Run BPF program `prog_fd` (direct action) at the link's ingress: a clsact qdisc and
        one bpf filter at a fixed priority and handle, so attaching again replaces it."""
        index = self._idx(name_or_index)
        try:
            self._ipr.tc("add", "clsact", index)
        except NetlinkError as e:
            if e.code != errno.EEXIST:
                raise
        self._ipr.tc("replace-filter", "bpf", index, handle=_BPF_HANDLE, parent=_CLSACT_INGRESS,
                     prio=_BPF_PRIO, fd=prog_fd, name=name, classid=1, direct_action=True)

    def ingress_bpf_ids(self, name_or_index: str | int) -> list[int]:
        """Kernel ids of the BPF programs at the link's ingress (compare bpf.prog_id)."""
        index = self._idx(name_or_index)
        try:
            filters = list(self._ipr.get_filters(index, parent=_CLSACT_INGRESS))
        except NetlinkError as e:
            if e.code in _GONE | {errno.EINVAL}:  # EINVAL: no clsact qdisc
                return []
            raise
        ids: list[int] = []
        for msg in filters:
            options = msg.get_attr("TCA_OPTIONS")
            for attr in options["attrs"] if options else []:
                if attr.name != "UNKNOWN":  # pyroute2 0.9 has no name for TCA_BPF_ID
                    continue
                raw = attr.nla
                length, kind = struct.unpack_from("<HH", raw.data, raw.offset)
                if kind == _TCA_BPF_ID and length == 8:
                    ids.append(struct.unpack_from("<I", raw.data, raw.offset + 4)[0])
        return ids

    def detach_ingress_bpf(self, name_or_index: str | int) -> None:
        """Remove the link's clsact qdisc and with it every filter on it (idempotent)."""
        index = self.index(name_or_index) if isinstance(name_or_index, str) else name_or_index
        if index is None:
            return
        try:
            self._ipr.tc("del", "clsact", index)
        except NetlinkError as e:
            if e.code not in _GONE | {errno.EINVAL}:  # EINVAL: there is no clsact qdisc
                raise

    # IPv6 (net/ipv6.py) -----------------------------------------------------------------
    def addresses6(self, name_or_index: str | int) -> set[tuple[str, int]]:
        """(address, prefixlen) of the link's IPv6 addresses, link-local ones included."""
        return {(m.get_attr("IFA_ADDRESS"), m["prefixlen"])
                for m in self._ipr.get_addr(family=_AF_INET6, index=self._idx(name_or_index))}

    def add_address6(self, name_or_index: str | int, address: str, prefixlen: int) -> None:
        """Without duplicate address detection: the address is usable at once (the store
        already made it unique)."""
        try:
            self._ipr.addr("add", index=self._idx(name_or_index), address=address,
                           prefixlen=prefixlen, flags=_IFA_F_NODAD)
        except NetlinkError as e:
            if e.code != errno.EEXIST:
                raise

    def routes6(self) -> list[tuple[str, int, int | None, str | None]]:
        """(dst, dst_len, oif, gateway) of the main table's IPv6 routes ("" dst: default)."""
        return [(m.get_attr("RTA_DST") or "", m["dst_len"], m.get_attr("RTA_OIF"),
                 m.get_attr("RTA_GATEWAY"))
                for m in self._ipr.get_routes(family=_AF_INET6, table=254)]

    def add_route6(self, dst: str, name_or_index: str | int, gateway: str | None = None) -> None:
        kwargs: dict[str, object] = {"dst": dst, "oif": self._idx(name_or_index),
                                     "family": _AF_INET6}
        if gateway:
            kwargs["gateway"] = gateway
        self._ipr.route("replace", **kwargs)

    def delete_route6(self, dst: str) -> None:
        try:
            self._ipr.route("del", dst=dst, family=_AF_INET6)
        except NetlinkError as e:
            if e.code not in _GONE:
                raise

    def _idx(self, name_or_index: str | int) -> int:
        if isinstance(name_or_index, int):
            return name_or_index
        index = self.index(name_or_index)
        if index is None:
            raise OSError(errno.ENODEV, f"no link {name_or_index} in netns {self.netns}")
        return index
