"""Isolating one execution environment inside a freshly forked child: the entry point the
zygote loads (zygote_main.py) and the namespace, cgroup and privilege steps of the child —
joining its cgroups, the zygote's own private mount namespace, and dropping every privilege
(bounding set, no_new_privs, uid/gid, capabilities) before function code runs. The sandbox's
filesystem is isolation_root.py (re-exported here: `SandboxSpec`, `HostFiles`, `build_root`,
`assign_code`...), the libc calls isolation_libc.py (`setns`, `unshare`, the CLONE_* flags).

STDLIB ONLY: the zygote loads this file by path under the runtime's own interpreter
(`python3.x -I -S`), never from the server's venv, after its two parts, once, at zygote start
(nothing of it is loaded per sandbox). Everything here runs in the child, as
root, before the function's code; the zygote itself only calls `HostFiles.load()` and
`private_mount_namespace()` once at start."""
from __future__ import annotations

import ctypes
import os
import resource

NOFILE_LIMIT = 1024

if __package__:
    from . import isolation_libc as _libc_part
    from . import isolation_root as _root_part
else:  # loaded by path in the zygote, after its two parts (zygote_main.py, by_path.py)
    import _lambdaplane_isolation_libc as _libc_part  # type: ignore[import-not-found,no-redef]
    import _lambdaplane_isolation_root as _root_part  # type: ignore[import-not-found,no-redef]

# Everything isolation.py offered before its split stays here (zygote_main.py, prestart.py
# and commands/run.py use it through this module): the libc calls and flags...
_k = _libc_part
libc, SandboxError = _k.libc, _k.SandboxError
CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS = _k.CLONE_NEWNS, _k.CLONE_NEWCGROUP, _k.CLONE_NEWUTS
CLONE_NEWIPC, CLONE_NEWPID, CLONE_NEWNET = _k.CLONE_NEWIPC, _k.CLONE_NEWPID, _k.CLONE_NEWNET
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = _k.MS_RDONLY, _k.MS_NOSUID, _k.MS_NODEV, _k.MS_NOEXEC
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = _k.MS_REMOUNT, _k.MS_BIND, _k.MS_REC, _k.MS_PRIVATE
MNT_DETACH, PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS = (_k.MNT_DETACH, _k.PR_CAPBSET_DROP,
                                                   _k.PR_SET_NO_NEW_PRIVS)
setns, unshare, mount, prctl = _k.setns, _k.unshare, _k.mount, _k.prctl
bind_readonly, mount_code_view, pivot_root = _k.bind_readonly, _k.mount_code_view, _k.pivot_root
clear_capabilities = _k.clear_capabilities

# ...and the sandbox's filesystem (isolation_root.py).
SANDBOX_USER = _root_part.SANDBOX_USER
CODE_STASH, RUNTIME_STASH = _root_part.CODE_STASH, _root_part.RUNTIME_STASH
HostFiles, SandboxSpec = _root_part.HostFiles, _root_part.SandboxSpec
build_root, assign_code, seal_root = (_root_part.build_root, _root_part.assign_code,
                                      _root_part.seal_root)
bind_runtime, bind_unnamed = _root_part.bind_runtime, _root_part.bind_unnamed
write_etc_files = _root_part.write_etc_files


def private_mount_namespace() -> None:
    """Give the calling process (the zygote) a mount namespace of its own without the host's
    named network namespaces. Every sandbox's unshare(CLONE_NEWNS) copies its parent's whole
    mount table and its pivot tears the copy down again, so the cost of a cold start grows
    with the mounts the parent sees — and the host has one nsfs mount per named netns (the
    sandbox pool alone: hundreds). The zygote receives target namespaces as fds, so it needs
    none of them; private propagation keeps the ones made later out too."""
    unshare(CLONE_NEWNS)
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    with open("/proc/self/mountinfo") as f:
        mounts = [line.split() for line in f]
    # mountinfo: id parent major:minor root mountpoint options ... - fstype source ...
    targets = [m[4] for m in mounts if m[m.index("-") + 1] == "nsfs"]
    targets += [m[4] for m in mounts if m[4] == "/run/netns"]
    for target in reversed(targets):  # children before the mount they sit on
        path = target.encode().decode("unicode_escape").encode()  # \040 etc. in mountinfo
        if libc.umount2(path, MNT_DETACH) != 0 and ctypes.get_errno() not in (22, 2):
            raise SandboxError(ctypes.get_errno(), f"umount {target}")


def join_cgroups(procs_files: list[str]) -> None:
    for path in procs_files:
        # "0" means the writing task itself (cgroup v1 and v2).
        fd = os.open(path, os.O_WRONLY)
        try:
            os.write(fd, b"0")
        finally:
            os.close(fd)


def drop_privileges(uid: int, gid: int, cap_last: int) -> None:
    """No way back to root: empty bounding set, no_new_privs (setuid binaries are inert),
    all uids/gids the unprivileged pair, no supplementary groups, no capabilities."""
    limit_future_privileges(cap_last)
    become_user(uid, gid)


def limit_future_privileges(cap_last: int) -> None:
    """The part of dropping privileges that still lets this process mount (a pre-forked
    sandbox does it before it waits): the fd limit, an empty bounding set (limits only what
    an exec could gain) and no_new_privs."""
    resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE_LIMIT, NOFILE_LIMIT))
    for cap in range(cap_last + 1):
        prctl(PR_CAPBSET_DROP, cap)
    prctl(PR_SET_NO_NEW_PRIVS, 1)


def become_user(uid: int, gid: int) -> None:
    """The unprivileged uid/gid everywhere, no supplementary groups, no capabilities left."""
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    clear_capabilities()
