"""Building one execution environment's sandbox inside a freshly forked child: cgroups, mount/
ipc/uts/cgroup namespaces, a minimal read-only root with the code at /var/task, a private /tmp,
fresh /proc and /dev, pivot_root, hostname, then dropping every privilege.

STDLIB ONLY: the zygote imports this file by path under the runtime's own interpreter
(`python3.x -I -S`), never from the server's venv. Everything here runs in the child, as root,
before the function's code; the zygote itself only calls `HostFiles.load()` once at start.
Python 3.11 has no os.setns/os.unshare/mount, so those go through ctypes on libc."""
from __future__ import annotations

import ctypes
import os
import resource
from dataclasses import dataclass

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
_LINUX_CAPABILITY_VERSION_3 = 0x20080522

NOFILE_LIMIT = 1024
SANDBOX_USER = "sbx_user1051"  # the name AWS gives the function's user

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                        ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                        ctypes.c_ulong]
_libc.sethostname.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
_SYS_PIVOT_ROOT = 155  # x86_64; glibc has no wrapper
_SYS_CAPSET = 126


class SandboxError(OSError):
    pass


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise SandboxError(err, f"{what}: {os.strerror(err)}")


def setns(fd: int, nstype: int) -> None:
    _check(_libc.setns(fd, nstype), "setns")


def unshare(flags: int) -> None:
    _check(_libc.unshare(flags), "unshare")


def mount(source: str | None, target: str, fstype: str | None, flags: int,
          data: str | None = None) -> None:
    _check(_libc.mount(source.encode() if source else None, target.encode(),
                       fstype.encode() if fstype else None, flags,
                       data.encode() if data else None), f"mount {source} on {target}")


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
    _check(_libc.syscall(_SYS_PIVOT_ROOT, new_root.encode(), put_old.encode()), "pivot_root")


def _prctl(option: int, arg: int) -> None:
    _check(_libc.prctl(option, arg, 0, 0, 0), f"prctl {option}")


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


def clear_capabilities() -> None:
    """Empty the effective, permitted and inheritable sets (setuid leaves inheritable alone)."""
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    _check(_libc.syscall(_SYS_CAPSET, ctypes.byref(header), ctypes.byref(data)), "capset")


def _public_resolv_conf() -> bytes:
    """The host's resolv.conf without any nameserver on a loopback, private, CGNAT or
    link-local address: sandboxes may not reach those (the host's stub resolver, a LAN DNS),
    and the file must not tell a function where they are. No nameserver left = no DNS."""
    import ipaddress

    kept = ["# lambdaplane: host resolvers on private addresses are not reachable from here"]
    try:
        with open("/etc/resolv.conf") as f:
            lines = f.read().splitlines()
    except OSError:
        lines = []
    for line in lines:
        words = line.split()
        if not words or words[0] not in ("nameserver", "options", "search", "domain"):
            continue
        if words[0] == "nameserver":
            try:
                address = ipaddress.ip_address(words[1].split("%")[0])
            except (IndexError, ValueError):
                continue
            if not address.is_global:
                continue
        kept.append(line)
    return ("\n".join(kept) + "\n").encode()


@dataclass(frozen=True)
class HostFiles:
    """The few host /etc files the sandbox sees, read once by the zygote and written into each
    sandbox's root tmpfs (a write is cheaper than a bind mount, and passwd/group are made per
    sandbox anyway)."""
    files: dict[str, bytes]  # relative to the new root, e.g. "etc/ld.so.cache"
    symlinks: dict[str, str]  # e.g. "bin" -> "usr/bin" (Debian's usrmerge)
    ro_dirs: tuple[str, ...]  # host dirs bind-mounted read-only at the same place
    cap_last: int

    COPIED = ("etc/ld.so.cache", "etc/services", "etc/protocols",
              "etc/ssl/openssl.cnf", "etc/mime.types", "etc/host.conf")
    BOUND = ("usr", "etc/ssl/certs", "etc/alternatives")

    @classmethod
    def load(cls) -> "HostFiles":
        files: dict[str, bytes] = {}
        for rel in cls.COPIED:
            try:
                with open("/" + rel, "rb") as f:
                    files[rel] = f.read()
            except OSError:
                continue
        files["etc/resolv.conf"] = _public_resolv_conf()
        files["etc/nsswitch.conf"] = (b"passwd: files\ngroup: files\nshadow: files\n"
                                      b"hosts: files dns\nnetworks: files\n"
                                      b"protocols: files\nservices: files\n")
        symlinks = {"etc/localtime": "/usr/share/zoneinfo/Etc/UTC",
                    "etc/os-release": "../usr/lib/os-release"}
        for top in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
            if os.path.islink("/" + top):
                symlinks[top] = os.readlink("/" + top)
        ro_dirs = tuple(d for d in cls.BOUND if os.path.isdir("/" + d))
        # Non-merged layouts (no symlink) still need their /bin, /lib... visible.
        ro_dirs += tuple(t for t in ("bin", "sbin", "lib", "lib64")
                         if os.path.isdir("/" + t) and not os.path.islink("/" + t))
        with open("/proc/sys/kernel/cap_last_cap") as f:
            cap_last = int(f.read())
        return cls(files, symlinks, ro_dirs, cap_last)


@dataclass(frozen=True)
class SandboxSpec:
    """What the child needs; decoded from the spawn request."""
    env_id: str
    cgroup_procs: list[str]
    code_dir: str
    uid: int
    gid: int
    tmp_size_mb: int
    hostname: str
    opt_dir: str = ""  # the function's merged layers: read-only at /opt
    etc_files: tuple[tuple[str, str], ...] = ()  # (path under the root, text): FunctionSpec's


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
        if _libc.umount2(path, MNT_DETACH) != 0 and ctypes.get_errno() not in (22, 2):
            raise SandboxError(ctypes.get_errno(), f"umount {target}")


def join_cgroups(procs_files: list[str]) -> None:
    for path in procs_files:
        # "0" means the writing task itself (cgroup v1 and v2).
        fd = os.open(path, os.O_WRONLY)
        try:
            os.write(fd, b"0")
        finally:
            os.close(fd)


def _write(path: str, data: bytes, mode: int = 0o644) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def _etc_identity(spec: SandboxSpec) -> dict[str, bytes]:
    user = SANDBOX_USER
    return {
        "etc/passwd": (f"root:x:0:0:root:/root:/usr/sbin/nologin\n"
                       f"{user}:x:{spec.uid}:{spec.gid}::/tmp:/usr/sbin/nologin\n"
                       f"nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n").encode(),
        "etc/group": (f"root:x:0:\n{user}:x:{spec.gid}:\nnogroup:x:65534:\n").encode(),
        "etc/hosts": (f"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
                      f"127.0.1.1\t{spec.hostname}\n").encode(),
        "etc/hostname": (spec.hostname + "\n").encode(),
    }


_DEVICES = {"null": (1, 3), "zero": (1, 5), "full": (1, 7), "random": (1, 8),
            "urandom": (1, 9)}
_DIRS = ("etc", "etc/ssl", "usr", "var", "var/task", "var/runtime", "opt", "tmp", "proc", "dev",
         "dev/shm", "oldroot", "lp-empty")


CODE_STASH = "/.lp-code"  # a pre-forked sandbox: the whole code store, until it is assigned
RUNTIME_STASH = "/.lp-runtime"  # a pre-forked sandbox: each runtime source dir, by index


def build_root(root: str, spec: SandboxSpec, host: HostFiles, code_store: str = "",
               runtime_mounts: list[list[str]] | tuple = (),
               runtime_stash: list[str] | tuple = ()) -> None:
    """Make `root` (an empty host dir) the sandbox's root and pivot into it. Caller is PID 1 of
    a new pid namespace (so the /proc mounted here shows only the environment's processes).

    With `code_store` (a pre-forked sandbox, no function yet; spec.code_dir unused) the code
    store is mounted read-only at CODE_STASH instead of one function's code at /var/task, and
    the root stays writable until `assign_code` takes the function's code out of it."""
    unshare(CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWCGROUP)
    # Nothing we mount may propagate back to the host's mount namespace.
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    mount("lproot", root, "tmpfs", MS_NOSUID, "size=4m,mode=0755")
    r = root + "/"
    for d in _DIRS + ((CODE_STASH[1:],) if code_store else ()):
        os.mkdir(r + d, 0o755)
    for d in host.ro_dirs:
        os.makedirs(r + d, 0o755, exist_ok=True)
    os.chmod(r + "tmp", 0o1777)
    for rel, data in host.files.items():
        _write(r + rel, data)
    for rel, data in _etc_identity(spec).items():
        _write(r + rel, data)
    write_etc_files(r, spec.etc_files)
    for rel, target in host.symlinks.items():
        os.symlink(target, r + rel)
    for name, (major, minor) in _DEVICES.items():
        os.mknod(r + "dev/" + name, 0o20666, os.makedev(major, minor))
        os.chmod(r + "dev/" + name, 0o666)  # mknod honours the umask
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                         ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")):
        os.symlink(target, r + "dev/" + name)

    for d in host.ro_dirs:
        bind_readonly("/" + d, r + d)
    stash = r + CODE_STASH[1:]
    if not code_store:
        os.mkdir(stash, 0o755)
    mount_code_view(code_store or os.path.dirname(spec.code_dir), stash, r + "lp-empty")
    os.rmdir(r + "lp-empty")  # the overlay keeps it as its (empty) second layer
    if not code_store:
        bind_readonly(f"{stash}/{os.path.basename(spec.code_dir)}", r + "var/task")
        if spec.opt_dir:  # the merged layers: another directory of the same code store
            bind_readonly(f"{stash}/{os.path.basename(spec.opt_dir)}", r + "opt")
        _check(_libc.umount2(stash.encode(), MNT_DETACH), "umount code store")
        os.rmdir(stash)
    bind_runtime(runtime_mounts, r)
    if runtime_stash:  # pre-forked: every runtime's dirs, under one tmpfs, until assigned
        stash = r + RUNTIME_STASH[1:]
        os.mkdir(stash, 0o755)
        mount("lpstash", stash, "tmpfs", MS_NOSUID | MS_NODEV, "size=64k,mode=0755")
        for index, source in enumerate(runtime_stash):
            os.mkdir(f"{stash}/{index}", 0o755)
            bind_unnamed(source, f"{stash}/{index}", r)
    mount("tmpfs", r + "tmp", "tmpfs", MS_NOSUID | MS_NODEV,
          f"size={spec.tmp_size_mb}m,mode=1777")
    mount("shm", r + "dev/shm", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=64m,mode=1777")
    mount("proc", r + "proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)

    pivot_root(root, r + "oldroot")
    os.chdir("/")
    _check(_libc.umount2(b"/oldroot", MNT_DETACH), "umount oldroot")
    os.rmdir("/oldroot")
    if not code_store:
        seal_root()
    name = spec.hostname.encode()
    _check(_libc.sethostname(name, len(name)), "sethostname")


def seal_root() -> None:
    # The root tmpfs (etc, dev nodes, mount points) becomes read-only once populated.
    mount(None, "/", None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID)


def bind_runtime(runtime_mounts: list[list[str]] | tuple, root: str = "/") -> None:
    """The runtime's own files, read-only (runtimes/registry.py: an interpreter's prefix,
    /var/lang, /var/runtime). `root` must still be writable (its mount points are made)."""
    for source, target in runtime_mounts:
        path = root + target.lstrip("/")
        os.makedirs(path, 0o755, exist_ok=True)
        bind_unnamed(source, path, root)


def bind_unnamed(source: str, target: str, root: str) -> None:
    """`source` read-only at `target` without its host path in mountinfo: an overlay view of
    its parent (mount_code_view), its one sub-directory bound from the view (shown by its
    name alone), the view let go. `root` must still be writable (the view's mount point)."""
    source = source.rstrip("/")
    view, empty = root + ".lp-view", root + ".lp-view-empty"
    os.mkdir(view, 0o755)
    os.mkdir(empty, 0o755)
    try:
        mount_code_view(os.path.dirname(source), view, empty)
        try:
            bind_readonly(f"{view}/{os.path.basename(source)}", target)
        finally:
            _check(_libc.umount2(view.encode(), MNT_DETACH), "umount runtime view")
    finally:
        os.rmdir(view)
        os.rmdir(empty)


def assign_code(code_name: str, tmp_size_mb: int, opt_name: str = "",
                runtime_mounts: list[list[str]] | tuple = (),
                runtime_stash: list[str] | tuple = (),
                etc_files: tuple[tuple[str, str], ...] = ()) -> None:
    """A pre-forked sandbox becomes one function's: its code (a directory of the store,
    by name) at /var/task, its merged layers (another, if any) at /opt, the rest of the store
    gone, /tmp sized for its memory, the root read-only. Runs before any of the function's
    code, still as root."""
    for name in (code_name, opt_name) if opt_name else (code_name,):
        if not name or "/" in name or name in (".", ".."):
            raise SandboxError(22, f"bad code name {name!r}")
    bind_readonly(f"{CODE_STASH}/{code_name}", "/var/task")
    if opt_name:
        bind_readonly(f"{CODE_STASH}/{opt_name}", "/opt")
    _check(_libc.umount2(CODE_STASH.encode(), MNT_DETACH), "umount code store")
    os.rmdir(CODE_STASH)
    mount(None, "/tmp", None, MS_REMOUNT | MS_NOSUID | MS_NODEV,
          f"size={tmp_size_mb}m,mode=1777")
    for source, target in runtime_mounts:  # from the stash: the host's paths are gone
        if source not in runtime_stash:
            raise SandboxError(2, f"runtime dir {source} was not stashed in this sandbox")
        os.makedirs(target, 0o755, exist_ok=True)
        bind_readonly(f"{RUNTIME_STASH}/{list(runtime_stash).index(source)}", target)
    if runtime_stash:  # one detach takes the tmpfs and every bind under it
        _check(_libc.umount2(RUNTIME_STASH.encode(), MNT_DETACH), "umount runtime stash")
        os.rmdir(RUNTIME_STASH)
    write_etc_files("/", etc_files)  # a VPC function's resolver and CA
    seal_root()


def write_etc_files(root: str, files: tuple[tuple[str, str], ...]) -> None:
    """The function's own files under /etc of the new root (`root` ends with "/")."""
    for rel, text in files:
        if not rel.startswith("etc/") or ".." in rel.split("/"):
            raise SandboxError(22, f"bad sandbox file {rel!r}")
        _write(root + rel, text.encode())


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
        _prctl(PR_CAPBSET_DROP, cap)
    _prctl(PR_SET_NO_NEW_PRIVS, 1)


def become_user(uid: int, gid: int) -> None:
    """The unprivileged uid/gid everywhere, no supplementary groups, no capabilities left."""
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    clear_capabilities()
