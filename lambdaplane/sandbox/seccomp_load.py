"""Loading the compiled seccomp program (seccomp_profile.compile_to) into a sandbox process:
one prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER) with the program's bytes, which the kernel
keeps for the process and every child and exec after it. Microseconds: nothing is compiled
here. Needs no_new_privs (or CAP_SYS_ADMIN) first.

STDLIB ONLY (ctypes on libc): the zygote imports it by path under the runtime's interpreter.
For a runtime whose sandbox is not built by a Python zygote it doubles as an exec wrapper:
    python3 -I -S seccomp_load.py PROGRAM.bpf COMMAND [ARG...]
sets no_new_privs, loads the program, and execs COMMAND (which inherits the filter). The file
format is plain: an array of struct sock_filter {u16 code; u8 jt; u8 jf; u32 k} in host byte
order, so any language can load it the same way (struct sock_fprog {u16 len; ptr filter})."""
from __future__ import annotations

import ctypes
import os
import sys

PR_SET_SECCOMP = 22
PR_SET_NO_NEW_PRIVS = 38
SECCOMP_MODE_FILTER = 2
PR_GET_SECCOMP = 21
_INSTRUCTION_SIZE = 8
_MAX_INSTRUCTIONS = 4096  # BPF_MAXINSNS

_libc = ctypes.CDLL(None, use_errno=True)
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p, ctypes.c_ulong,
                        ctypes.c_ulong]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


class SeccompProgram:
    """A compiled program held in memory, ready to be installed (by the zygote, once; each
    forked child installs the same bytes)."""

    def __init__(self, program: bytes) -> None:
        if not program or len(program) % _INSTRUCTION_SIZE:
            raise ValueError(f"not a BPF program: {len(program)} bytes")
        count = len(program) // _INSTRUCTION_SIZE
        if count > _MAX_INSTRUCTIONS:
            raise ValueError(f"BPF program too long: {count} instructions")
        self._buffer = ctypes.create_string_buffer(program, len(program))
        self._fprog = _SockFprog(count, ctypes.cast(self._buffer, ctypes.c_void_p))

    @classmethod
    def from_file(cls, path: str) -> SeccompProgram:
        with open(path, "rb") as f:
            return cls(f.read())

    def install(self) -> None:
        """Filter the calling thread (single-threaded callers: a fresh fork) and its future
        children. The caller has set no_new_privs or holds CAP_SYS_ADMIN."""
        if _libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(self._fprog),
                       0, 0) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"seccomp filter: {os.strerror(err)}")


def set_no_new_privs() -> None:
    if _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, None, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"no_new_privs: {os.strerror(err)}")


def main(argv: list[str]) -> int:
    if len(argv) < 3:
        sys.stderr.write("usage: seccomp_load.py PROGRAM.bpf COMMAND [ARG...]\n")
        return 2
    program = SeccompProgram.from_file(argv[1])
    set_no_new_privs()
    program.install()
    os.execvp(argv[2], argv[2:])
    return 127  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv))
