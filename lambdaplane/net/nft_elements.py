"""Elements of one nftables map `ipv4_addr : mark`, added and deleted through nfnetlink
directly: the cold-start path's steering element (net/hyperplane.py's Steering).

libnftables parses nft text and refreshes its cache of the namespace's ruleset before every
command: one element cost ~0.4 ms of CPU on the server's event loop (0.14 ms with warm caches
in a loop), a visible share of a 7 ms VPC cold start, paid by no plain one. One nfnetlink batch
(begin, NEWSETELEM or DELSETELEM, end) on a socket kept open in the namespace is a single
sendmsg and its ack. Everything else about nftables — tables, chains, reads — stays with
net/nft.py; this module knows only the messages below (linux/netfilter/nf_tables.h)."""
from __future__ import annotations

import errno
import ipaddress
import socket
import struct

from . import ns

NETLINK_NETFILTER = 12
NFNL_SUBSYS_NFTABLES = 10
NFNL_MSG_BATCH_BEGIN, NFNL_MSG_BATCH_END = 0x10, 0x11
NFT_MSG_NEWSETELEM, NFT_MSG_DELSETELEM = 12, 14
NLM_F_REQUEST, NLM_F_ACK, NLM_F_CREATE = 0x1, 0x4, 0x400
NLMSG_ERROR = 0x2
NLA_F_NESTED = 0x8000
NFPROTO_IPV4 = 2
# attributes
SET_ELEM_LIST_TABLE, SET_ELEM_LIST_SET, SET_ELEM_LIST_ELEMENTS = 1, 2, 3
LIST_ELEM = 1
SET_ELEM_KEY, SET_ELEM_DATA = 1, 2
DATA_VALUE = 1


def _attr(kind: int, payload: bytes) -> bytes:
    size = 4 + len(payload)
    return struct.pack("=HH", size, kind) + payload + b"\0" * (-size % 4)


def _nested(kind: int, *attrs: bytes) -> bytes:
    return _attr(kind | NLA_F_NESTED, b"".join(attrs))


def _message(kind: int, flags: int, seq: int, family: int, res_id: int, body: bytes) -> bytes:
    header = struct.pack("=IHHII", 16 + 4 + len(body), kind, flags, seq, 0)
    return header + struct.pack("=BBH", family, 0, socket.htons(res_id)) + body


class MapElements:
    """One map's elements, on an nfnetlink socket opened in `netns` (kept: no setns per
    call). Use from one thread; close() before the namespace goes."""

    def __init__(self, netns: str | None, table: str, map_name: str) -> None:
        self.netns = netns
        self._names = (_attr(SET_ELEM_LIST_TABLE, table.encode() + b"\0")
                       + _attr(SET_ELEM_LIST_SET, map_name.encode() + b"\0"))
        with ns.entered(netns):
            self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        self._sock.bind((0, 0))
        self._seq = 0

    def add(self, address: str, mark: int) -> None:
        """Add `address : mark` (no change if it is there already); OSError(EEXIST) if the
        address maps to another mark."""
        self._send([(NFT_MSG_NEWSETELEM, NLM_F_CREATE, _element(address, mark))])

    def replace(self, address: str, mark: int) -> None:
        """Map a present `address` to `mark` instead, in one transaction."""
        self._send([(NFT_MSG_DELSETELEM, 0, _element(address, None)),
                    (NFT_MSG_NEWSETELEM, NLM_F_CREATE, _element(address, mark))])

    def delete(self, address: str) -> None:
        """Delete `address`; OSError(ENOENT) if it is not there."""
        self._send([(NFT_MSG_DELSETELEM, 0, _element(address, None))])

    def close(self) -> None:
        self._sock.close()

    def _send(self, changes: list[tuple[int, int, bytes]]) -> None:
        """One batch (one transaction) of `changes`; raises the first error the kernel acks.
        Every message asks for an ack, so the last ack means the batch is done."""
        first = self._seq + 1
        self._seq += len(changes) + 2
        messages = [_message(NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, first, 0,
                             NFNL_SUBSYS_NFTABLES, b"")]
        for i, (kind, flags, element) in enumerate(changes):
            body = self._names + _nested(SET_ELEM_LIST_ELEMENTS, element)
            messages.append(_message((NFNL_SUBSYS_NFTABLES << 8) | kind,
                                     NLM_F_REQUEST | NLM_F_ACK | flags, first + 1 + i,
                                     NFPROTO_IPV4, 0, body))
        messages.append(_message(NFNL_MSG_BATCH_END, NLM_F_REQUEST, self._seq, 0,
                                 NFNL_SUBSYS_NFTABLES, b""))
        self._sock.send(b"".join(messages))
        pending = set(range(first + 1, first + 1 + len(changes)))
        failure = 0
        while pending:  # acks of our messages; nothing else is subscribed on this socket
            reply = self._sock.recv(65536)
            offset = 0
            while offset + 16 <= len(reply):
                size, kind, _flags, seq, _pid = struct.unpack_from("=IHHII", reply, offset)
                if kind == NLMSG_ERROR and seq in pending:
                    pending.discard(seq)
                    (code,) = struct.unpack_from("=i", reply, offset + 16)
                    failure = failure or -code
                offset += max(16, (size + 3) & ~3)
            if failure:  # the kernel aborted the batch: no further acks come
                raise OSError(failure, f"{errno.errorcode.get(failure, failure)} on an "
                                       f"nftables map element in {self.netns}")


def _element(address: str, mark: int | None) -> bytes:
    key = _nested(SET_ELEM_KEY, _attr(DATA_VALUE, ipaddress.IPv4Address(address).packed))
    data = b"" if mark is None else _nested(
        SET_ELEM_DATA, _attr(DATA_VALUE, struct.pack("=I", mark)))  # marks: host byte order
    return _nested(LIST_ELEM, key + data)
