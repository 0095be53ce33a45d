"""Reading a network namespace's connection tracking through ctnetlink (NETLINK_NETFILTER,
subsystem CTNETLINK): its NATed flows and its per-CPU statistics.

A dump is one request on a netlink socket made inside the namespace; the answer is parsed here
(`parse_messages`, `parse_entry`, `parse_stats`: pure functions over bytes, unit-tested without
a kernel) into `CtEntry`s and then `Flow`s. Only what the Hyperplane counters use is decoded:
both tuples (IPv4 or IPv6 addresses, protocol, ports), the TCP state and the timeout.
(pyroute2's Conntrack reads the same but waited ~50 ms per dump even for an empty table; this
is one request, one read loop.)

Where ctnetlink cannot be read (no nf_conntrack_netlink, no conntrack in the kernel) every read
raises ConntrackUnavailable: a count is never reported as zero because it could not be read.
Synchronous: callers run it on the NetThread."""
from __future__ import annotations

import errno
import os
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from . import ns

NETLINK_NETFILTER = 12
NFNL_SUBSYS_CTNETLINK = 1
IPCTNL_MSG_CT_GET = 1
IPCTNL_MSG_CT_GET_STATS_CPU = 4
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
_NLA_TYPE_MASK = 0x3FFF  # without NLA_F_NESTED / NLA_F_NET_BYTEORDER
# attribute types (linux/netfilter/nfnetlink_conntrack.h)
CTA_TUPLE_ORIG, CTA_TUPLE_REPLY, CTA_PROTOINFO, CTA_TIMEOUT = 1, 2, 4, 7
CTA_TUPLE_IP, CTA_TUPLE_PROTO = 1, 2
CTA_IP_V4_SRC, CTA_IP_V4_DST = 1, 2
CTA_IP_V6_SRC, CTA_IP_V6_DST = 3, 4
CTA_PROTO_NUM, CTA_PROTO_SRC_PORT, CTA_PROTO_DST_PORT = 1, 2, 3
CTA_PROTOINFO_TCP, CTA_PROTOINFO_TCP_STATE = 1, 1
STATS = {2: "found", 4: "invalid", 8: "insert", 9: "insert_failed", 10: "drop",
         11: "early_drop", 12: "error", 13: "search_restart", 14: "clash_resolve",
         15: "chain_toolong"}  # CTA_STATS_* (per CPU)
TCP_ESTABLISHED = 3  # TCP_CONNTRACK_ESTABLISHED (linux/netfilter/nf_conntrack_tcp.h)
_PROTOCOLS = {socket.IPPROTO_TCP: "tcp", socket.IPPROTO_UDP: "udp",
              socket.IPPROTO_ICMP: "icmp", socket.IPPROTO_ICMPV6: "icmpv6"}
_HEADER = struct.Struct("=IHHII")  # nlmsghdr
_NFGEN = struct.Struct("!BBH")  # nfgenmsg: family, version, res_id (big endian)


class ConntrackUnavailable(RuntimeError):
    """Conntrack of a namespace cannot be read (ctnetlink missing or refused)."""


@dataclass(frozen=True)
class CtTuple:
    saddr: str | None = None
    daddr: str | None = None
    proto: int | None = None
    sport: int | None = None
    dport: int | None = None


@dataclass(frozen=True)
class CtEntry:
    """What the Hyperplane reads of one conntrack entry."""
    orig: CtTuple
    reply: CtTuple
    tcp_state: int | None
    timeout: int | None  # seconds left on its timer


@dataclass(frozen=True)
class Flow:
    """One tracked flow that the namespace NATs."""
    proto: str  # "tcp", "udp", "icmp" or the protocol number
    src: str  # original tuple
    dst: str
    sport: int | None
    dport: int | None
    nat_address: str  # reply destination: the ENI's address for NATed flows
    established_tcp: bool
    timeout_s: int  # seconds left on its timer

    @property
    def key(self) -> str:
        """The original tuple, as conntrack prints it."""
        return f"{self.proto} src={self.src} dst={self.dst} sport={self.sport} dport={self.dport}"

    @property
    def destination(self) -> tuple[str, str, int] | None:
        """(protocol, address, port) of a TCP/UDP flow: what one source port is taken per."""
        if self.proto in ("tcp", "udp") and self.dport is not None:
            return self.proto, self.dst, self.dport
        return None


# parsing ---------------------------------------------------------------------------------------
def parse_messages(data: bytes) -> Iterator[tuple[int, bytes]]:
    """(message type, payload) of each netlink message in `data`. An NLMSG_ERROR with an
    error raises OSError; NLMSG_DONE is yielded like any message."""
    offset = 0
    while offset + _HEADER.size <= len(data):
        length, kind, _flags, _seq, _pid = _HEADER.unpack_from(data, offset)
        if length < _HEADER.size:
            raise ValueError(f"netlink message of length {length}")
        payload = data[offset + _HEADER.size:offset + length]
        if kind == NLMSG_ERROR:
            code = -struct.unpack_from("=i", payload)[0]
            if code:
                raise OSError(code, os.strerror(code))
        yield kind, payload
        offset += (length + 3) & ~3


def parse_attrs(data: bytes) -> dict[int, bytes]:
    """Netlink attributes (type without its flags → value)."""
    attrs: dict[int, bytes] = {}
    offset = 0
    while offset + 4 <= len(data):
        length, kind = struct.unpack_from("=HH", data, offset)
        if length < 4:
            break
        attrs[kind & _NLA_TYPE_MASK] = data[offset + 4:offset + length]
        offset += (length + 3) & ~3
    return attrs


def _tuple(data: bytes | None) -> CtTuple:
    if data is None:
        return CtTuple()
    attrs = parse_attrs(data)
    ip = parse_attrs(attrs.get(CTA_TUPLE_IP, b""))
    proto = parse_attrs(attrs.get(CTA_TUPLE_PROTO, b""))

    def address(kind4: int, kind6: int) -> str | None:
        value = ip.get(kind4)
        if value is not None and len(value) == 4:
            return socket.inet_ntoa(value)
        value = ip.get(kind6)
        return socket.inet_ntop(socket.AF_INET6, value) \
            if value is not None and len(value) == 16 else None

    def port(kind: int) -> int | None:
        value = proto.get(kind)
        return struct.unpack("!H", value[:2])[0] if value is not None and len(value) >= 2 \
            else None

    number = proto.get(CTA_PROTO_NUM)
    return CtTuple(address(CTA_IP_V4_SRC, CTA_IP_V6_SRC),
                   address(CTA_IP_V4_DST, CTA_IP_V6_DST),
                   number[0] if number else None, port(CTA_PROTO_SRC_PORT),
                   port(CTA_PROTO_DST_PORT))


def parse_entry(payload: bytes) -> CtEntry:
    """One IPCTNL_MSG_CT_NEW message of a dump (after its nlmsghdr)."""
    attrs = parse_attrs(payload[_NFGEN.size:])
    tcp = parse_attrs(parse_attrs(attrs.get(CTA_PROTOINFO, b"")).get(CTA_PROTOINFO_TCP, b""))
    state = tcp.get(CTA_PROTOINFO_TCP_STATE)
    timeout = attrs.get(CTA_TIMEOUT)
    return CtEntry(_tuple(attrs.get(CTA_TUPLE_ORIG)), _tuple(attrs.get(CTA_TUPLE_REPLY)),
                   state[0] if state else None,
                   struct.unpack("!I", timeout[:4])[0] if timeout else None)


def parse_stats(payload: bytes) -> dict[str, int]:
    """One CPU's statistics message (after its nlmsghdr)."""
    out: dict[str, int] = {}
    for kind, value in parse_attrs(payload[_NFGEN.size:]).items():
        if kind in STATS and len(value) >= 4:
            out[STATS[kind]] = struct.unpack("!I", value[:4])[0]
    return out


def flow_of(entry: CtEntry) -> Flow | None:
    """The Flow of a conntrack entry; None for a flow that is not NATed (its replies go back
    to its source: the namespace's own flows)."""
    orig, reply = entry.orig, entry.reply
    if orig.saddr is None or orig.daddr is None or reply.daddr is None \
            or reply.daddr == orig.saddr:
        return None
    proto = _PROTOCOLS.get(orig.proto if orig.proto is not None else -1, str(orig.proto))
    established = proto == "tcp" and entry.tcp_state == TCP_ESTABLISHED
    return Flow(proto, orig.saddr, orig.daddr, orig.sport, orig.dport, reply.daddr,
                established, int(entry.timeout or 0))


def sum_stats(per_cpu: list[dict[str, int]]) -> dict[str, int]:
    """Per-CPU statistics summed over CPUs."""
    totals: dict[str, int] = {}
    for cpu in per_cpu:
        for key, value in cpu.items():
            totals[key] = totals.get(key, 0) + value
    return totals


# reading -----------------------------------------------------------------------------------
def nat_flows(netns: str | None) -> list[Flow]:
    """The NATed flows of `netns` (None: this thread's namespace), IPv4 and IPv6 (NAT66);
    the namespace's own, un-NATed flows are left out."""
    return [flow for payload in _dump(netns, IPCTNL_MSG_CT_GET, socket.AF_UNSPEC)
            if (flow := flow_of(parse_entry(payload))) is not None]


def stats(netns: str | None) -> dict[str, int]:
    """The namespace's conntrack statistics (insert_failed, drop, …), summed over CPUs."""
    return sum_stats([parse_stats(p) for p in _dump(netns, IPCTNL_MSG_CT_GET_STATS_CPU)])


def _dump(netns: str | None, message: int, family: int = socket.AF_INET) -> list[bytes]:
    """The payloads of a ctnetlink dump request answered in `netns`; `family` AF_UNSPEC:
    entries of every family."""
    request = _HEADER.pack(_HEADER.size + _NFGEN.size, (NFNL_SUBSYS_CTNETLINK << 8) | message,
                           NLM_F_REQUEST | NLM_F_DUMP, 1, 0) + _NFGEN.pack(family, 0, 0)
    try:
        with ns.entered(netns):  # the socket belongs to the namespace it is made in
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        with sock:
            sock.bind((0, 0))
            sock.send(request)
            payloads: list[bytes] = []
            while True:
                data = sock.recv(1 << 18)
                if not data:
                    raise OSError(errno.EIO, "ctnetlink closed the dump")
                for kind, payload in parse_messages(data):
                    if kind == NLMSG_DONE:
                        return payloads
                    if kind != NLMSG_ERROR:
                        payloads.append(payload)
    except (OSError, ValueError, struct.error) as e:
        raise ConntrackUnavailable(
            f"conntrack of {netns or 'this namespace'} cannot be read through ctnetlink "
            f"(is nf_conntrack_netlink available?): {e}") from e
