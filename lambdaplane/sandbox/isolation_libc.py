"""The kernel calls a sandbox is built with, through ctypes on libc (Python 3.11 has no
os.setns/os.unshare/mount): namespaces, mounts, pivot_root, hostname, prctl and capset, with
their flag values, each raising `SandboxError` (an OSError with the errno) when it fails.

STDLIB ONLY: the zygote loads this file by path under the runtime's own interpreter
(isolation.py loads it), never from the server's venv."""
from __future__ import annotations

import ctypes
import os

CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MNT_DETACH = 2

PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_SET_MM = 35  # masking.set_command_line: where the command line ends
PR_SET_MM_ARG_END = 9
_LINUX_CAPABILITY_VERSION_3 = 0x20080522

libc = ctypes.CDLL(None, use_errno=True)
libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                       ctypes.c_char_p]
libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                       ctypes.c_ulong]
libc.sethostname.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
_SYS_PIVOT_ROOT = 155  # x86_64; glibc has no wrapper
_SYS_CAPSET = 126


class SandboxError(OSError):
    pass


def check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise SandboxError(err, f"{what}: {os.strerror(err)}")


def setns(fd: int, nstype: int) -> None:
    check(libc.setns(fd, nstype), "setns")


def unshare(flags: int) -> None:
    check(libc.unshare(flags), "unshare")


def mount(source: str | None, target: str, fstype: str | None, flags: int,
          data: str | None = None) -> None:
    check(libc.mount(source.encode() if source else None, target.encode(),
                     fstype.encode() if fstype else None, flags,
                     data.encode() if data else None), f"mount {source} on {target}")


def umount_detached(target: str, what: str) -> None:
    """Lazy unmount (MNT_DETACH): the mount goes now, its users keep it until they let go."""
    check(libc.umount2(target.encode(), MNT_DETACH), what)


def bind_readonly(source: str, target: str) -> None:
    # A bind mount ignores MS_RDONLY on creation; read-only needs a second, remount pass.
    mount(source, target, None, MS_BIND)
    mount(None, target, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)


def mount_code_view(source: str, target: str, empty_dir: str) -> None:
    """`source` read-only at `target` without naming its host path: a bind mount shows its
    source path in the sandbox's /proc/self/mountinfo, an overlay (of the source and an empty
    dir, given as /proc/self/fd links) shows only `lpcode` and those links. Only its
    sub-directories are bind-mounted on: they show paths relative to `source`, and (present
    in one layer only) list without the merge of the root, which fails once `empty_dir` is
    removed."""
    flags = os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC
    lower, empty = os.open(source, flags), os.open(empty_dir, flags)
    try:
        mount("lpcode", target, "overlay", MS_RDONLY | MS_NOSUID | MS_NODEV,
              f"lowerdir=/proc/self/fd/{lower}:/proc/self/fd/{empty}")
    finally:
        os.close(lower)
        os.close(empty)


def pivot_root(new_root: str, put_old: str) -> None:
    check(libc.syscall(_SYS_PIVOT_ROOT, new_root.encode(), put_old.encode()), "pivot_root")


def sethostname(hostname: str) -> None:
    name = hostname.encode()
    check(libc.sethostname(name, len(name)), "sethostname")


def prctl(option: int, arg: int) -> None:
    check(libc.prctl(option, arg, 0, 0, 0), f"prctl {option}")


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


def clear_capabilities() -> None:
    """Empty the effective, permitted and inheritable sets (setuid leaves inheritable alone)."""
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    check(libc.syscall(_SYS_CAPSET, ctypes.byref(header), ctypes.byref(data)), "capset")
