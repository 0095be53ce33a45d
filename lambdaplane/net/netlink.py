"""The only pyroute2 user: a small typed layer over netlink for links, addresses and routes.

A Netlink object is opened *inside* one network namespace and keeps operating there after the
thread leaves it (a netlink socket belongs to the namespace it was created in), so the worker
and VPC namespaces each keep one open handle. Deletes ignore only "already gone" errors."""
from __future__ import annotations

import errno
import os
from dataclasses import dataclass

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from . import ns

_GONE = {errno.ENODEV, errno.ENOENT, errno.ESRCH, errno.EADDRNOTAVAIL}
SCOPE_LINK = 253


@dataclass(frozen=True)
class LinkInfo:
    name: str
    index: int
    kind: str | None
    up: bool


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
        out = []
        for msg in self._ipr.get_links():
            name = msg.get_attr("IFLA_IFNAME")
            if not name.startswith(prefix):
                continue
            linkinfo = msg.get_attr("IFLA_LINKINFO")
            kind = linkinfo.get_attr("IFLA_INFO_KIND") if linkinfo else None
            out.append(LinkInfo(name, msg["index"], kind, bool(msg["flags"] & 1)))
        return out

    def add_veth(self, name: str, peer_name: str, peer_netns: str | None = None,
                 peer_index: int | None = None) -> int:
        """Create a veth pair; the peer is created directly in `peer_netns` (never moved)."""
        peer: dict[str, object] = {"ifname": peer_name}
        fd = None
        if peer_netns is not None:
            fd = os.open(ns.netns_path(peer_netns), os.O_RDONLY)
            peer["net_ns_fd"] = fd
        try:
            self._ipr.link("add", ifname=name, kind="veth", peer=peer)
        finally:
            if fd is not None:
                os.close(fd)
        index = self.index(name)
        assert index is not None
        return index

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
        kwargs: dict[str, object] = {"dst": dst}
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

    def _idx(self, name_or_index: str | int) -> int:
        if isinstance(name_or_index, int):
            return name_or_index
        index = self.index(name_or_index)
        if index is None:
            raise OSError(errno.ENODEV, f"no link {name_or_index} in netns {self.netns}")
        return index
