"""Minimal eBPF plumbing over ctypes (no clang, bpftool or libbpf on the hosts): the bpf(2)
syscall, hash maps, a small label-based instruction assembler and loading a SCHED_CLS program.

Owns nothing in the kernel by name: every object is a file descriptor that lives until it is
closed and nothing else (a tc filter, a map user) holds it. BPF objects are not per network
namespace, so nothing here enters one. `BpfUnavailable` means the kernel refuses BPF to this
process (no privilege, lockdown, no syscall): callers fall back to the path without it."""
from __future__ import annotations

import ctypes
import errno
import os
import platform
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

_NR_BPF = {"x86_64": 321, "aarch64": 280}
_MAP_CREATE, _MAP_LOOKUP, _MAP_UPDATE, _MAP_DELETE, _MAP_NEXT_KEY, _PROG_LOAD = 0, 1, 2, 3, 4, 5
_OBJ_GET_INFO_BY_FD = 15
_MAP_TYPE_HASH = 1
_PROG_TYPE_SCHED_CLS = 3
_ATTR_SIZE = 128  # enough for every command used; the kernel wants the rest zero
_LOG_SIZE = 1 << 20
_UNAVAILABLE = {errno.EPERM, errno.ENOSYS}
_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


class BpfError(OSError):
    """A bpf(2) command failed; for a program load, `log` is the verifier's explanation."""
    log: str = ""


class BpfUnavailable(BpfError):
    """The kernel does not let this process use BPF at all."""


def bpf(cmd: int, attr: bytes) -> int:
    """Run one bpf(2) command with `attr` (a packed union bpf_attr); returns its result."""
    nr = _NR_BPF.get(platform.machine())
    if nr is None:
        raise BpfUnavailable(errno.ENOSYS, f"bpf(2): unsupported machine {platform.machine()}")
    buf = ctypes.create_string_buffer(attr, _ATTR_SIZE)
    result = _libc.syscall(ctypes.c_long(nr), ctypes.c_int(cmd), buf, ctypes.c_uint(_ATTR_SIZE))
    if result < 0:
        err = ctypes.get_errno()
        kind = BpfUnavailable if err in _UNAVAILABLE else BpfError
        raise kind(err, f"bpf(2) command {cmd}: {os.strerror(err)}")
    return int(result)


_addr = ctypes.addressof


class HashMap:
    """A BPF_MAP_TYPE_HASH of fixed-size byte keys and values, held by its fd."""

    def __init__(self, fd: int, key_size: int, value_size: int) -> None:
        self.fd, self.key_size, self.value_size = fd, key_size, value_size

    @classmethod
    def create(cls, key_size: int, value_size: int, max_entries: int,
               name: str = "") -> "HashMap":
        attr = struct.pack("<7I16s", _MAP_TYPE_HASH, key_size, value_size, max_entries,
                           0, 0, 0, name.encode()[:15])
        return cls(bpf(_MAP_CREATE, attr), key_size, value_size)

    def _elem(self, cmd: int, key: bytes | None,
              value: ctypes.Array[ctypes.c_char] | None = None) -> bool:
        """One element command; False when the kernel answers ENOENT (no such key, no next)."""
        k = ctypes.create_string_buffer(key, self.key_size) if key is not None else None
        try:
            bpf(cmd, struct.pack("<IIQQQ", self.fd, 0, 0 if k is None else _addr(k),
                                 0 if value is None else _addr(value), 0))
        except BpfError as e:
            if e.errno == errno.ENOENT:
                return False
            raise
        return True

    def update(self, key: bytes, value: bytes) -> None:
        self._elem(_MAP_UPDATE, key, ctypes.create_string_buffer(value, self.value_size))

    def delete(self, key: bytes) -> None:
        """Remove `key`; a key that is not there is not an error."""
        self._elem(_MAP_DELETE, key)

    def lookup(self, key: bytes) -> bytes | None:
        value = ctypes.create_string_buffer(self.value_size)
        return value.raw if self._elem(_MAP_LOOKUP, key, value) else None

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        # A hash map walk restarts from the first key when the given one was deleted meanwhile:
        # collecting the keys first keeps a concurrent delete from yielding one twice.
        keys: dict[bytes, None] = {}
        key: bytes | None = None
        following = ctypes.create_string_buffer(self.key_size)
        while self._elem(_MAP_NEXT_KEY, key, following):
            key = following.raw
            keys[key] = None
        for key in keys:
            value = self.lookup(key)
            if value is not None:  # deleted since the walk
                yield key, value

    def close(self) -> None:
        os.close(self.fd)


# assembler ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Insn:
    """One instruction; a jump names its target `label` instead of counting its offset."""
    code: int
    dst: int = 0
    src: int = 0
    off: int = 0
    imm: int = 0
    label: str | None = None

    @property
    def slots(self) -> int:
        return 2 if self.code == 0x18 else 1  # ld_imm64 spans two instruction slots


@dataclass(frozen=True)
class Label:
    name: str


JEQ, JGT, JNE = 0x10, 0x20, 0x50
_JMP, _JMP32, _K, _X = 0x05, 0x06, 0x00, 0x08
_PSEUDO_MAP_FD = 1


def mov64_reg(dst: int, src: int) -> Insn: return Insn(0xBF, dst, src)
def mov64_imm(dst: int, imm: int) -> Insn: return Insn(0xB7, dst, imm=imm)
def add64_imm(dst: int, imm: int) -> Insn: return Insn(0x07, dst, imm=imm)
def ldx_w(dst: int, src: int, off: int) -> Insn: return Insn(0x61, dst, src, off)
def ldx_h(dst: int, src: int, off: int) -> Insn: return Insn(0x69, dst, src, off)
def stx_w(dst: int, off: int, src: int) -> Insn: return Insn(0x63, dst, src, off)
def ld_map_fd(dst: int, fd: int) -> Insn: return Insn(0x18, dst, _PSEUDO_MAP_FD, imm=fd)
def call(helper: int) -> Insn: return Insn(0x85, imm=helper)
def exit_insn() -> Insn: return Insn(0x95)
def ja(label: str) -> Insn: return Insn(_JMP, label=label)


def jmp_imm(op: int, dst: int, imm: int, label: str) -> Insn:
    return Insn(_JMP | op | _K, dst, imm=imm, label=label)


def jmp_reg(op: int, dst: int, src: int, label: str) -> Insn:
    return Insn(_JMP | op | _X, dst, src, label=label)


def jmp32_imm(op: int, dst: int, imm: int, label: str) -> Insn:
    """Compares the low 32 bits: a u32 against an immediate without sign-extension surprises."""
    return Insn(_JMP32 | op | _K, dst, imm=imm, label=label)


def jmp32_reg(op: int, dst: int, src: int, label: str) -> Insn:
    return Insn(_JMP32 | op | _X, dst, src, label=label)


def assemble(program: Sequence[Insn | Label]) -> bytes:
    """The instructions as the kernel wants them, jump labels resolved to relative offsets."""
    at: dict[str, int] = {}
    pc = 0
    for item in program:
        if isinstance(item, Label):
            if item.name in at:
                raise ValueError(f"label {item.name} defined twice")
            at[item.name] = pc
        else:
            pc += item.slots
    out = []
    pc = 0
    for item in program:
        if isinstance(item, Label):
            continue
        off = item.off
        if item.label is not None:
            if item.label not in at:
                raise ValueError(f"jump to undefined label {item.label}")
            off = at[item.label] - pc - 1
        out.append(struct.pack("<BBhi", item.code, item.src << 4 | item.dst, off, item.imm))
        if item.slots == 2:  # upper half of the 64-bit immediate: fds fit in the lower one
            out.append(struct.pack("<BBhi", 0, 0, 0, 0))
        pc += item.slots
    return b"".join(out)


def load_sched_cls(program: Sequence[Insn | Label], name: str) -> int:
    """Load a tc classifier (SCHED_CLS, GPL); returns its fd. On rejection the BpfError
    carries the verifier's log."""
    code = assemble(program)
    insns = ctypes.create_string_buffer(code, len(code))
    license_ = ctypes.create_string_buffer(b"GPL")

    def load(log: ctypes.Array[ctypes.c_char] | None) -> int:
        log_size, log_addr = (len(log), _addr(log)) if log is not None else (0, 0)
        return bpf(_PROG_LOAD, struct.pack(
            "<IIQQIIQII16s", _PROG_TYPE_SCHED_CLS, len(code) // 8, _addr(insns),
            _addr(license_), int(log is not None), log_size, log_addr, 0, 0, name.encode()[:15]))

    try:
        return load(None)  # verifying with a log costs time: only a failure is explained
    except BpfUnavailable:
        raise
    except BpfError:
        log = ctypes.create_string_buffer(_LOG_SIZE)
        try:
            return load(log)
        except BpfError as e:
            e.log = log.value.decode(errors="replace")
            e.strerror = f"{e.strerror}\n{e.log}"
            raise


def prog_id(fd: int) -> int:
    """The kernel-wide id of the program behind `fd` (what tc reports for an attached one)."""
    info = ctypes.create_string_buffer(64)  # struct bpf_prog_info: type, id, tag, ...
    bpf(_OBJ_GET_INFO_BY_FD, struct.pack("<IIQ", fd, len(info), _addr(info)))
    return int(struct.unpack_from("<I", info, 4)[0])
