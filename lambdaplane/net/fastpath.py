"""The eBPF fast path between sandboxes and Hyperplane transits: one tc program at the ingress of
every sandbox veth and every transit (worker ends) moves a steered sandbox's packets straight
into the peer of the other link with bpf_redirect_peer — no crossing of the worker's backlog, no
routing, no netfilter in the worker.

Owns, per server instance, one program and its map `sandbox address → (sandbox veth ifindex,
transit ifindex)` (both worker-side links), and the cheap name → ifindex lookup that filling
the map on a cold start needs (LinkIndexes). Not owned: the links (sandbox/pool.py,
net/reconcile.py) nor which sandbox uses which ENI (steering fills the map). BPF objects are not
per namespace; attaching goes through a Netlink opened in the worker namespace.

The program, for an Ethernet + IPv4 frame arriving on link L:
  saddr in map, its sandbox veth is L, daddr is not the gateway → into the transit's peer
    (anti-spoofing: only a sandbox's own veth speaks for its address; the Runtime API stays
    local);
  else daddr in map and its transit is L → into the sandbox veth's peer (eth0 of the sandbox);
  else, and for anything else (ARP, IPv6, runts) → the worker's stack as before.
A redirect scrubs the packet (pkt_type HOST), so the peer takes it whatever its MAC."""
from __future__ import annotations

import errno
import fcntl
import ipaddress
import logging
import os
import socket
import struct
import threading
from dataclasses import dataclass

from . import bpf, ns
from .bpf import JEQ, JGT, JNE, BpfError, HashMap, Insn, Label
from .names import Names
from .netlink import Netlink
from .rtnl_batch import Batch
from .worker import GATEWAY

log = logging.getLogger(__name__)

PROG_NAME = "lp_fastpath"
MAX_SANDBOXES = 65536
_VALUE = struct.Struct("<II")  # sandbox ifindex, transit ifindex (host order, as the program)
_SANDBOX_FIELD, _TRANSIT_FIELD = 0, 4  # their offsets in a map value
_HELPER_MAP_LOOKUP, _HELPER_REDIRECT_PEER = 1, 155
_SKB_IFINDEX, _SKB_DATA, _SKB_DATA_END = 40, 76, 80  # offsets in struct __sk_buff
_ETH_TYPE, _IP_SADDR, _IP_DADDR, _IP_END = 12, 26, 30, 34  # in the frame
_ETH_P_IP_LE = 0x0008  # 0x0800 as a little-endian u16 load sees it
_TC_ACT_OK = 0
_CTX, _SADDR, _DADDR, _IFINDEX = 6, 7, 8, 9  # callee-saved: they survive helper calls


def program(map_fd: int, gateway: str) -> list[Insn | Label]:
    """The classifier (see the module docstring), looking up sandboxes in map `map_fd`."""
    gw = struct.unpack("<i", socket.inet_aton(gateway))[0]  # daddr as a u32 load sees it

    def redirect_if(map_key: int, expect: int, target: int, otherwise: str) -> list[Insn]:
        """Look `map_key` up; if the entry's field at `expect` is this link, redirect into
        the peer of the link at field `target`, else go to `otherwise`."""
        return [bpf.stx_w(10, -4, map_key), bpf.ld_map_fd(1, map_fd), bpf.mov64_reg(2, 10),
                bpf.add64_imm(2, -4), bpf.call(_HELPER_MAP_LOOKUP),
                bpf.jmp_imm(JEQ, 0, 0, otherwise),  # 64-bit: a pointer's null check
                bpf.ldx_w(1, 0, expect), bpf.jmp32_reg(JNE, 1, _IFINDEX, otherwise),
                bpf.ldx_w(1, 0, target), bpf.mov64_imm(2, 0), bpf.call(_HELPER_REDIRECT_PEER),
                bpf.exit_insn()]

    return [
        bpf.mov64_reg(_CTX, 1),
        bpf.ldx_w(2, _CTX, _SKB_DATA), bpf.ldx_w(3, _CTX, _SKB_DATA_END),
        bpf.mov64_reg(4, 2), bpf.add64_imm(4, _IP_END), bpf.jmp_reg(JGT, 4, 3, "pass"),
        bpf.ldx_h(4, 2, _ETH_TYPE), bpf.jmp32_imm(JNE, 4, _ETH_P_IP_LE, "pass"),
        bpf.ldx_w(_SADDR, 2, _IP_SADDR), bpf.ldx_w(_DADDR, 2, _IP_DADDR),
        bpf.ldx_w(_IFINDEX, _CTX, _SKB_IFINDEX),
        bpf.jmp32_imm(JEQ, _DADDR, gw, "reply"),  # the Runtime API is the worker's own
        *redirect_if(_SADDR, _SANDBOX_FIELD, _TRANSIT_FIELD, "reply"),
        Label("reply"),
        *redirect_if(_DADDR, _TRANSIT_FIELD, _SANDBOX_FIELD, "pass"),
        Label("pass"),
        bpf.mov64_imm(0, _TC_ACT_OK), bpf.exit_insn(),
    ]


@dataclass
class FastPath:
    """One loaded program and its map; close() frees them once no tc filter holds them."""
    map: HashMap
    prog_fd: int
    gateway: str

    @classmethod
    def load(cls, gateway: str = GATEWAY, max_entries: int = MAX_SANDBOXES) -> "FastPath":
        """Raises bpf.BpfUnavailable when the kernel refuses BPF, bpf.BpfError if it rejects
        the program (e.g. a kernel without bpf_redirect_peer, before 5.10)."""
        table = HashMap.create(4, _VALUE.size, max_entries, name="lp_sandboxes")
        try:
            prog_fd = bpf.load_sched_cls(program(table.fd, gateway), PROG_NAME)
        except BaseException:
            table.close()
            raise
        return cls(table, prog_fd, gateway)

    def set(self, sandbox_addr: str, sandbox_ifindex: int, transit_ifindex: int) -> None:
        self.map.update(_key(sandbox_addr), _VALUE.pack(sandbox_ifindex, transit_ifindex))

    def delete(self, sandbox_addr: str) -> None:
        self.map.delete(_key(sandbox_addr))

    def entries(self) -> dict[str, tuple[int, int]]:
        """sandbox address → (sandbox veth ifindex, transit ifindex)."""
        return {socket.inet_ntoa(k): _pair(v) for k, v in self.map.items()}

    def attach(self, nl: Netlink, link: str | int) -> None:
        """Put the program at the ingress of `link` (a sandbox veth or a transit) in `nl`'s
        namespace, replacing an earlier one."""
        nl.attach_ingress_bpf(link, self.prog_fd, PROG_NAME)

    def attach_in(self, batch: Batch, index: int) -> None:
        """The same as attach, as requests of a raw rtnetlink batch (a link with no qdisc)."""
        batch.ingress_bpf(index, self.prog_fd, PROG_NAME)

    def close(self) -> None:
        self.map.close()
        os.close(self.prog_fd)


class LinkIndexes:
    """Link name → ifindex in one namespace, through a socket kept there (SIOCGIFINDEX: ~2 µs,
    where a lookup through pyroute2 costs ~0.4 ms of message parsing): what Steering needs on
    the cold-start path."""

    _SIOCGIFINDEX = 0x8933
    _IFREQ = struct.Struct("16si")

    def __init__(self, netns: str) -> None:
        with ns.entered(netns):
            self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

    def get(self, name: str) -> int | None:
        try:
            reply = fcntl.ioctl(self._sock, self._SIOCGIFINDEX,
                                self._IFREQ.pack(name.encode(), 0))
        except OSError as e:
            if e.errno == errno.ENODEV:
                return None
            raise
        return int(self._IFREQ.unpack(reply)[1])

    def close(self) -> None:
        self._sock.close()


def _key(address: str) -> bytes:
    return ipaddress.IPv4Address(address).packed  # network order, as in the packet


def _pair(value: bytes) -> tuple[int, int]:
    sandbox, transit = _VALUE.unpack(value)
    return sandbox, transit


# one fast path per server instance in this process ------------------------------------------
_lock = threading.Lock()
_shared: dict[Names, FastPath] = {}
_refused: BpfError | None = None  # the kernel said no once; it will not say yes later


def shared(names: Names) -> FastPath | None:
    """The instance's fast path, loaded on first use; None (with one warning) without BPF."""
    global _refused
    with _lock:
        if names in _shared:
            return _shared[names]
        if _refused is not None:
            return None
        try:
            _shared[names] = FastPath.load()
        except BpfError as e:
            _refused = e
            log.warning("eBPF fast path unavailable, sandboxes use the routed path: %s", e)
            return None
        return _shared[names]


def loaded(names: Names) -> FastPath | None:
    """The instance's fast path if this process has loaded it (never loads)."""
    with _lock:
        return _shared.get(names)


def drop(names: Names) -> None:
    """Close and forget the instance's fast path (its attached filters keep the program)."""
    with _lock:
        fast = _shared.pop(names, None)
    if fast is not None:
        fast.close()
