"""The seccomp profile of every sandbox process, in one readable place, and its compilation
by libseccomp into the classic-BPF program the sandboxes load (seccomp_load.py).

The shape is Docker's default profile (an allowlist with an EPERM default): every x86_64
system call that libseccomp knows is allowed except the ones denied below; a number the
kernel may add next (beyond what libseccomp knows) fails with ENOSYS, so libc falls back as
on an older kernel; clone3 fails with ENOSYS too (its flags sit in memory a filter cannot
read, so glibc falls back to clone, whose flags the filter does check). 32-bit (i386) and
x32 calls fail with EPERM: the filter's architecture check. Nothing is ever killed: a denied
call returns an error the runtime can handle. docs/security.md compares this with Docker's.

Compiled ONCE per server (`compile_to`) by the server's interpreter, which loads Debian's
python3-seccomp extension by path (the venv does not see /usr/lib/python3/dist-packages).
Loading it costs a sandbox ~0.2-0.3 ms (the kernel checks and JIT-compiles ~470
instructions), on the cold-start path.
"""
from __future__ import annotations

import errno
import importlib.machinery
import importlib.util
import os
from pathlib import Path
from types import ModuleType

# --- the profile ---------------------------------------------------------------------------

# Denied with EPERM, by family (Docker's default denies all of these to a container without
# extra capabilities; the few marked * Docker allows, and we deny for a smaller surface).
DENIED: dict[str, tuple[str, ...]] = {
    "namespaces": ("unshare", "setns"),  # clone with CLONE_NEW* flags: CLONE_RULE below
    "mounts": ("mount", "umount2", "pivot_root", "move_mount", "fsopen", "fsconfig",
               "fsmount", "fspick", "open_tree", "mount_setattr", "chroot"),  # chroot*
    "keyring": ("keyctl", "add_key", "request_key"),
    "bpf": ("bpf",),
    "perf": ("perf_event_open",),
    "userfaultfd": ("userfaultfd",),
    "io_uring": ("io_uring_setup", "io_uring_enter", "io_uring_register"),
    "kexec": ("kexec_load", "kexec_file_load"),
    "modules": ("init_module", "finit_module", "delete_module", "create_module",
                "query_module", "get_kernel_syms"),
    "reboot": ("reboot",),
    "swap": ("swapon", "swapoff"),
    "acct": ("acct",),
    "time": ("settimeofday", "clock_settime", "clock_adjtime", "adjtimex"),
    "quota": ("quotactl", "quotactl_fd"),
    "file_handles": ("open_by_handle_at", "name_to_handle_at"),
    # ptrace*, process_vm_*, pidfd_getfd*: no process may inspect or steal from another
    # (inside one sandbox they are all the same function's, but a tracer is kernel surface)
    "tracing": ("ptrace", "process_vm_readv", "process_vm_writev", "pidfd_getfd", "kcmp",
                "process_madvise"),
    "uts": ("sethostname", "setdomainname"),
    "syslog": ("syslog",),
    "lookup_dcookie": ("lookup_dcookie",),
    "raw_io": ("iopl", "ioperm"),
    "fanotify": ("fanotify_init",),
    "numa": ("mbind", "set_mempolicy", "get_mempolicy", "migrate_pages", "move_pages",
             "set_mempolicy_home_node"),
    "obsolete": ("_sysctl", "uselib", "ustat", "sysfs", "nfsservctl", "vhangup",
                 "afs_syscall", "tuxcall", "security", "vserver", "putpmsg", "getpmsg"),
}

# personality(2): only these personas (Docker's list): the default, UNAME26, PER_LINUX32,
# both, and the query 0xffffffff. Any other fails with EPERM.
PERSONALITIES_ALLOWED = (0x0, 0x0008, 0x20000, 0x20008, 0xFFFFFFFF)

CLONE_NEW_FLAGS = {"CLONE_NEWNS": 0x00020000, "CLONE_NEWCGROUP": 0x02000000,
                   "CLONE_NEWUTS": 0x04000000, "CLONE_NEWIPC": 0x08000000,
                   "CLONE_NEWUSER": 0x10000000, "CLONE_NEWPID": 0x20000000,
                   "CLONE_NEWNET": 0x40000000, "CLONE_NEWTIME": 0x00000080}
CLONE_NEW_MASK = sum(CLONE_NEW_FLAGS.values())

AF_VSOCK = 40  # socket(2) of this family: EPERM (a host-guest channel; Docker denies it too)

ENOSYS_SYSCALLS = ("clone3",)
DENY_ERRNO = errno.EPERM
UNKNOWN_ERRNO = errno.ENOSYS
# Numbers from the first one libseccomp 2.5.4 cannot name up to this get UNKNOWN_ERRNO (the
# calls the kernel adds next); lower unnamed numbers are x86_64's never-used gap (EPERM).
# Each number is one more instruction for the kernel to check at load: ~0.3 us each.
_FUTURE_NUMBERS_END = 512

_EXTENSION_DIRS = ("/usr/lib/python3/dist-packages",)


class SeccompUnavailable(RuntimeError):
    pass


def denied_names() -> set[str]:
    return {name for names in DENIED.values() for name in names}


def load_libseccomp() -> ModuleType:
    """Debian's python3-seccomp extension (built for /usr/bin/python3), by path."""
    try:
        import seccomp  # type: ignore[import-not-found]  # a venv with system packages
        return seccomp
    except ImportError:
        pass
    for directory in _EXTENSION_DIRS:
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            path = os.path.join(directory, "seccomp" + suffix)
            if os.path.exists(path):
                loader = importlib.machinery.ExtensionFileLoader("seccomp", path)
                spec = importlib.util.spec_from_file_location("seccomp", path, loader=loader)
                assert spec is not None
                module = importlib.util.module_from_spec(spec)
                loader.exec_module(module)
                return module
    raise SeccompUnavailable("libseccomp's Python binding is not installed (Debian package "
                             "python3-seccomp); install it, or run with --seccomp off")


def build_filter(sc: ModuleType) -> object:
    """The profile as a libseccomp SyscallFilter (x86_64 only, as the server is)."""
    arch = sc.Arch.X86_64
    if sc.system_arch() != arch & 0xFFFFFFFF:  # AUDIT_ARCH_X86_64 (signed in the binding)
        raise SeccompUnavailable("the seccomp profile is written for x86_64 only")
    flt = sc.SyscallFilter(defaction=sc.ERRNO(DENY_ERRNO))
    flt.set_attr(sc.Attr.ACT_BADARCH, sc.ERRNO(DENY_ERRNO))  # i386 and x32: EPERM, not kill
    flt.set_attr(sc.Attr.CTL_OPTIMIZE, 2)  # a binary tree over the syscall numbers
    denied = denied_names()
    special = {"clone", "personality", "socket", *ENOSYS_SYSCALLS}
    highest_known = 0
    for number in range(_FUTURE_NUMBERS_END):
        try:
            name = sc.resolve_syscall(arch, number).decode()
        except ValueError:
            continue
        highest_known = number
        if name not in denied and name not in special:
            flt.add_rule(sc.ALLOW, name)
    for number in range(highest_known + 1, _FUTURE_NUMBERS_END):
        flt.add_rule(sc.ERRNO(UNKNOWN_ERRNO), number)
    flt.add_rule(sc.ALLOW, "clone", sc.Arg(0, sc.MASKED_EQ, CLONE_NEW_MASK, 0))
    flt.add_rule(sc.ALLOW, "socket", sc.Arg(0, sc.NE, AF_VSOCK))
    for persona in PERSONALITIES_ALLOWED:
        flt.add_rule(sc.ALLOW, "personality", sc.Arg(0, sc.EQ, persona))
    for name in ENOSYS_SYSCALLS:
        flt.add_rule(sc.ERRNO(errno.ENOSYS), name)
    return flt


def compile_to(path: Path) -> Path:
    """Write the profile's BPF program (an array of struct sock_filter, host byte order) to
    `path`, atomically; seccomp_load.install_file loads it in each sandbox."""
    sc = load_libseccomp()
    flt = build_filter(sc)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        flt.export_bpf(f)
    os.replace(tmp, path)
    return path


def pseudo_code() -> str:
    """libseccomp's readable rendering of the compiled filter (for docs and debugging)."""
    import tempfile

    flt = build_filter(load_libseccomp())
    with tempfile.TemporaryFile("w+") as f:
        flt.export_pfc(f)
        f.seek(0)
        return f.read()
