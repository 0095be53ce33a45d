"""What the kernel of a VPC namespace says about its flows, for VPC flow logs: accepted flows
from conntrack (a ctnetlink dump read off a netlink socket, with per-direction packet and byte
accounting turned on in that namespace), rejected packets from the NFLOG group the
security-group table logs its drops to (net/security_groups.py: `log prefix "lpflow <dir>
<port>" group N` where a packet falls off a port's egress or ingress chain).

Owns one open NFLOG socket per watched VPC namespace (bound there; a netlink socket stays in the
namespace it was made in) and nothing else in the kernel: no rules, no links. `close()` unbinds.
Plain records out; which ENI a record belongs to is decided in service/flow_collector.py."""
from __future__ import annotations

import contextlib
import errno
import socket
import struct
from dataclasses import dataclass

from . import ns

NFLOG_GROUP = 0x4C50  # per namespace: our VPC namespaces have no other NFLOG users
LOG_PREFIX = "lpflow"  # + " out <port>" | " in <port>"
NETLINK_NETFILTER = 12
NFNL_SUBSYS_ULOG = 4
NFULNL_MSG_PACKET = 0
NFULNL_MSG_CONFIG = 1
NFULA_CFG_CMD = 1
NFULA_CFG_MODE = 2
NFULNL_CFG_CMD_BIND = 1
NFULNL_COPY_PACKET = 2
NFULA_IFINDEX_INDEV = 4
NFULA_PAYLOAD = 9
NFULA_PREFIX = 10
NLM_F_REQUEST, NLM_F_ACK, NLM_F_DUMP = 1, 4, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
NFNL_SUBSYS_CTNETLINK = 1
IPCTNL_MSG_CT_NEW, IPCTNL_MSG_CT_GET = 0, 1
CTA_TUPLE_ORIG, CTA_TUPLE_REPLY, CTA_COUNTERS_ORIG, CTA_COUNTERS_REPLY, CTA_ID = 1, 2, 9, 10, 12
CTA_TUPLE_IP, CTA_TUPLE_PROTO = 1, 2
CTA_IP_V4_SRC, CTA_IP_V4_DST = 1, 2
CTA_PROTO_NUM, CTA_PROTO_SRC_PORT, CTA_PROTO_DST_PORT = 1, 2, 3
CTA_COUNTERS_PACKETS, CTA_COUNTERS_BYTES = 1, 2
COPY_BYTES = 64  # IPv4 header (with options) and the ports
_PORTED = (6, 17, 132)  # TCP, UDP, SCTP: ports follow the IP header


@dataclass(frozen=True)
class TrackedFlow:
    """One conntrack entry: the original direction as the initiator sent it, the reply
    direction as the responder sends it (after NAT: its destination is the initiator's
    address as the responder sees it), and the counters of each direction so far."""
    ct_id: int
    protocol: int
    orig_src: str
    orig_dst: str
    orig_sport: int
    orig_dport: int
    reply_src: str
    reply_dst: str
    reply_sport: int
    reply_dport: int
    orig_packets: int
    orig_bytes: int
    reply_packets: int
    reply_bytes: int


@dataclass(frozen=True)
class DroppedPacket:
    """A packet a security group dropped: `direction` "out" (the sender's egress rules) or
    "in" (the receiver's ingress rules), `port` the VPC port whose chain dropped it, `in_port`
    the port it came in on (a Hyperplane ENI's port carries sandbox addresses, pre-SNAT)."""
    direction: str
    port: str
    in_port: str
    protocol: int
    src: str
    dst: str
    sport: int
    dport: int
    length: int


def enable_accounting(netns: str) -> None:
    """Per-direction packet/byte counters on new conntrack entries of the namespace."""
    with ns.entered(netns):
        with open("/proc/sys/net/netfilter/nf_conntrack_acct") as f:
            if f.read().strip() == "1":
                return
        ns.set_sysctl("net.netfilter.nf_conntrack_acct", "1")


def tracked_flows(netns: str) -> list[TrackedFlow]:
    """Every IPv4 conntrack entry of the namespace: one ctnetlink dump, read straight off a
    netlink socket made in the namespace (pyroute2's message objects cost ~1 ms an entry,
    too slow for a per-second dump of a busy VPC)."""
    with ns.entered(netns):
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        sock.bind((0, 0))
        body = struct.pack("BBH", socket.AF_INET, 0, 0)
        msg_type = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET
        sock.send(struct.pack("=IHHII", 16 + len(body), msg_type, NLM_F_REQUEST | NLM_F_DUMP,
                              1, 0) + body)
        flows: list[TrackedFlow] = []
        while True:
            data = sock.recv(1 << 17)
            offset = 0
            while offset + 16 <= len(data):
                length, kind = struct.unpack_from("=IH", data, offset)
                if kind == NLMSG_DONE:
                    return flows
                if kind == NLMSG_ERROR:
                    (code,) = struct.unpack_from("=i", data, offset + 16)
                    raise OSError(-code, f"conntrack dump in {netns}")
                if kind == msg_type & 0xFF00 | IPCTNL_MSG_CT_NEW:
                    flow = _flow(data[offset + 20:offset + length])
                    if flow is not None:
                        flows.append(flow)
                offset += (length + 3) & ~3
    finally:
        sock.close()


def _flow(data: bytes) -> TrackedFlow | None:
    attrs = dict(_attrs(data))
    orig, reply = _tuple(attrs.get(CTA_TUPLE_ORIG)), _tuple(attrs.get(CTA_TUPLE_REPLY))
    if orig is None or reply is None:
        return None  # IPv6: the VPC data plane is IPv4
    counts = [_counters(attrs.get(kind)) for kind in (CTA_COUNTERS_ORIG, CTA_COUNTERS_REPLY)]
    raw_id = attrs.get(CTA_ID, b"\0\0\0\0")
    return TrackedFlow(struct.unpack(">I", raw_id[:4])[0], orig[0], orig[1], orig[2], orig[3],
                       orig[4], reply[1], reply[2], reply[3], reply[4], counts[0][0],
                       counts[0][1], counts[1][0], counts[1][1])


def _tuple(data: bytes | None) -> tuple[int, str, str, int, int] | None:
    """(protocol, source, destination, source port, destination port) of a CTA_TUPLE_*."""
    if data is None:
        return None
    parts = dict(_attrs(data))
    ip = dict(_attrs(parts.get(CTA_TUPLE_IP, b"")))
    if CTA_IP_V4_SRC not in ip or CTA_IP_V4_DST not in ip:
        return None
    l4 = dict(_attrs(parts.get(CTA_TUPLE_PROTO, b"")))
    sport = struct.unpack(">H", l4[CTA_PROTO_SRC_PORT][:2])[0] if CTA_PROTO_SRC_PORT in l4 else 0
    dport = struct.unpack(">H", l4[CTA_PROTO_DST_PORT][:2])[0] if CTA_PROTO_DST_PORT in l4 else 0
    return (l4.get(CTA_PROTO_NUM, b"\0")[0], socket.inet_ntoa(ip[CTA_IP_V4_SRC][:4]),
            socket.inet_ntoa(ip[CTA_IP_V4_DST][:4]), sport, dport)


def _counters(data: bytes | None) -> tuple[int, int]:
    if data is None:
        return 0, 0
    parts = dict(_attrs(data))
    values = [parts.get(kind, b"") for kind in (CTA_COUNTERS_PACKETS, CTA_COUNTERS_BYTES)]
    return tuple(struct.unpack(">Q", v[:8])[0] if len(v) >= 8 else  # type: ignore[return-value]
                 struct.unpack(">I", v[:4])[0] if len(v) >= 4 else 0 for v in values)


class DropLog:
    """An NFLOG socket bound to NFLOG_GROUP in one VPC namespace."""

    def __init__(self, netns: str) -> None:
        self.netns = netns
        with ns.entered(netns):
            self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
            self._links = {index: name for index, name in socket.if_nameindex()}
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            self._sock.bind((0, 0))
            self._config(_attr(NFULA_CFG_CMD, struct.pack("B", NFULNL_CFG_CMD_BIND) + b"\0" * 3))
            self._config(_attr(NFULA_CFG_MODE, struct.pack(">IBB", COPY_BYTES,
                                                           NFULNL_COPY_PACKET, 0) + b"\0" * 2))
            self._sock.setblocking(False)
        except BaseException:
            self._sock.close()
            raise

    def _config(self, attrs: bytes) -> None:
        body = struct.pack("BBH", socket.AF_UNSPEC, 0, socket.htons(NFLOG_GROUP)) + attrs
        msg_type = (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_CONFIG
        header = struct.pack("=IHHII", 16 + len(body), msg_type, NLM_F_REQUEST | NLM_F_ACK, 1, 0)
        self._sock.send(header + body)
        reply = self._sock.recv(4096)
        _, kind, _, _, _ = struct.unpack_from("=IHHII", reply)
        if kind == NLMSG_ERROR:
            (code,) = struct.unpack_from("=i", reply, 16)
            if code:
                raise OSError(-code, f"NFLOG config in {self.netns}: {errno.errorcode.get(-code)}")

    def read(self) -> list[DroppedPacket]:
        """Every drop logged since the last read (never blocks)."""
        out: list[DroppedPacket] = []
        while True:
            try:
                data = self._sock.recv(1 << 16)
            except (BlockingIOError, InterruptedError):
                return out
            except OSError as e:
                if e.errno == errno.ENOBUFS:  # the kernel dropped some: read on
                    continue
                raise
            offset = 0
            while offset + 16 <= len(data):
                length, kind = struct.unpack_from("=IH", data, offset)
                if length < 16:
                    break
                if kind == (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_PACKET:
                    packet = self._packet(data[offset + 20:offset + length])
                    if packet is not None:
                        out.append(packet)
                offset += (length + 3) & ~3

    def _packet(self, attrs: bytes) -> DroppedPacket | None:
        fields = dict(_attrs(attrs))
        prefix = fields.get(NFULA_PREFIX, b"").rstrip(b"\0").decode(errors="replace").split()
        payload = fields.get(NFULA_PAYLOAD, b"")
        if len(prefix) != 3 or prefix[0] != LOG_PREFIX or len(payload) < 20 \
                or payload[0] >> 4 != 4:
            return None
        header_len = (payload[0] & 0x0F) * 4
        (total,) = struct.unpack_from(">H", payload, 2)
        protocol = payload[9]
        sport = dport = 0
        if protocol in _PORTED and len(payload) >= header_len + 4:
            sport, dport = struct.unpack_from(">HH", payload, header_len)
        indev = fields.get(NFULA_IFINDEX_INDEV)
        in_port = ""
        if indev is not None and len(indev) >= 4:
            index = struct.unpack(">I", indev[:4])[0]
            in_port = self._links.get(index) or self._refresh_links().get(index, "")
        return DroppedPacket(prefix[1], prefix[2], in_port, protocol,
                             socket.inet_ntoa(payload[12:16]), socket.inet_ntoa(payload[16:20]),
                             sport, dport, total)

    def _refresh_links(self) -> dict[int, str]:
        with ns.entered(self.netns):
            self._links = {index: name for index, name in socket.if_nameindex()}
        return self._links

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.close()


def _attr(kind: int, value: bytes) -> bytes:
    data = struct.pack("=HH", 4 + len(value), kind) + value
    return data + b"\0" * ((4 - len(data) % 4) % 4)


def _attrs(data: bytes) -> list[tuple[int, bytes]]:
    out = []
    offset = 0
    while offset + 4 <= len(data):
        length, kind = struct.unpack_from("=HH", data, offset)
        if length < 4:
            break
        out.append((kind & 0x3FFF, data[offset + 4:offset + length]))
        offset += (length + 3) & ~3
    return out
