"""A sandbox's filesystem, built inside the freshly forked child: a minimal root tmpfs (the
host files of `HostFiles`, its own passwd/group/hosts, device nodes), the code at /var/task
and layers at /opt as read-only views that do not name their host paths, the runtime's dirs,
a private /tmp, /dev/shm and /proc, then pivot_root and the hostname. A pre-forked sandbox
keeps the whole code store (and every runtime dir) stashed until `assign_code` picks its
function's.

STDLIB ONLY: the zygote loads this file by path under the runtime's own interpreter
(after isolation_libc.py), never from the server's venv. Everything here runs in the child, as
root, before the function's code; the zygote itself only calls `HostFiles.load()` once."""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

if __package__:
    from . import isolation_libc as kernel
else:  # loaded by path in the zygote, after the libc part (zygote_main.py, by_path.py)
    import _lambdaplane_isolation_libc as kernel  # type: ignore[import-not-found,no-redef]

SANDBOX_USER = "sbx_user1051"  # the name AWS gives the function's user


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
               runtime_mounts: Sequence[Sequence[str]] = (),
               runtime_stash: Sequence[str] = ()) -> None:
    """Make `root` (an empty host dir) the sandbox's root and pivot into it. Caller is PID 1 of
    a new pid namespace (so the /proc mounted here shows only the environment's processes).

    With `code_store` (a pre-forked sandbox, no function yet; spec.code_dir unused) the code
    store is mounted read-only at CODE_STASH instead of one function's code at /var/task, and
    the root stays writable until `assign_code` takes the function's code out of it."""
    kernel.unshare(kernel.CLONE_NEWNS | kernel.CLONE_NEWIPC | kernel.CLONE_NEWUTS
                   | kernel.CLONE_NEWCGROUP)
    # Nothing we mount may propagate back to the host's mount namespace.
    kernel.mount(None, "/", None, kernel.MS_REC | kernel.MS_PRIVATE)
    kernel.mount("lproot", root, "tmpfs", kernel.MS_NOSUID, "size=4m,mode=0755")
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
        kernel.bind_readonly("/" + d, r + d)
    stash = r + CODE_STASH[1:]
    if not code_store:
        os.mkdir(stash, 0o755)
    kernel.mount_code_view(code_store or os.path.dirname(spec.code_dir), stash, r + "lp-empty")
    os.rmdir(r + "lp-empty")  # the overlay keeps it as its (empty) second layer
    if not code_store:
        kernel.bind_readonly(f"{stash}/{os.path.basename(spec.code_dir)}", r + "var/task")
        if spec.opt_dir:  # the merged layers: another directory of the same code store
            kernel.bind_readonly(f"{stash}/{os.path.basename(spec.opt_dir)}", r + "opt")
        kernel.umount_detached(stash, "umount code store")
        os.rmdir(stash)
    bind_runtime(runtime_mounts, r)
    if runtime_stash:  # pre-forked: every runtime's dirs, under one tmpfs, until assigned
        stash = r + RUNTIME_STASH[1:]
        os.mkdir(stash, 0o755)
        kernel.mount("lpstash", stash, "tmpfs", kernel.MS_NOSUID | kernel.MS_NODEV,
                     "size=64k,mode=0755")
        for index, source in enumerate(runtime_stash):
            os.mkdir(f"{stash}/{index}", 0o755)
            bind_unnamed(source, f"{stash}/{index}", r)
    kernel.mount("tmpfs", r + "tmp", "tmpfs", kernel.MS_NOSUID | kernel.MS_NODEV,
          f"size={spec.tmp_size_mb}m,mode=1777")
    kernel.mount("shm", r + "dev/shm", "tmpfs",
                 kernel.MS_NOSUID | kernel.MS_NODEV | kernel.MS_NOEXEC, "size=64m,mode=1777")
    kernel.mount("proc", r + "proc", "proc", kernel.MS_NOSUID | kernel.MS_NODEV | kernel.MS_NOEXEC)

    kernel.pivot_root(root, r + "oldroot")
    os.chdir("/")
    kernel.umount_detached("/oldroot", "umount oldroot")
    os.rmdir("/oldroot")
    if not code_store:
        seal_root()
    kernel.sethostname(spec.hostname)


def seal_root() -> None:
    # The root tmpfs (etc, dev nodes, mount points) becomes read-only once populated.
    kernel.mount(None, "/", None,
                 kernel.MS_REMOUNT | kernel.MS_BIND | kernel.MS_RDONLY | kernel.MS_NOSUID)


def bind_runtime(runtime_mounts: Sequence[Sequence[str]], root: str = "/") -> None:
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
        kernel.mount_code_view(os.path.dirname(source), view, empty)
        try:
            kernel.bind_readonly(f"{view}/{os.path.basename(source)}", target)
        finally:
            kernel.umount_detached(view, "umount runtime view")
    finally:
        os.rmdir(view)
        os.rmdir(empty)


def assign_code(code_name: str, tmp_size_mb: int, opt_name: str = "",
                runtime_mounts: Sequence[Sequence[str]] = (),
                runtime_stash: Sequence[str] = (),
                etc_files: tuple[tuple[str, str], ...] = ()) -> None:
    """A pre-forked sandbox becomes one function's: its code (a directory of the store,
    by name) at /var/task, its merged layers (another, if any) at /opt, the rest of the store
    gone, /tmp sized for its memory, the root read-only. Runs before any of the function's
    code, still as root."""
    for name in (code_name, opt_name) if opt_name else (code_name,):
        if not name or "/" in name or name in (".", ".."):
            raise kernel.SandboxError(22, f"bad code name {name!r}")
    kernel.bind_readonly(f"{CODE_STASH}/{code_name}", "/var/task")
    if opt_name:
        kernel.bind_readonly(f"{CODE_STASH}/{opt_name}", "/opt")
    kernel.umount_detached(CODE_STASH, "umount code store")
    os.rmdir(CODE_STASH)
    kernel.mount(None, "/tmp", None, kernel.MS_REMOUNT | kernel.MS_NOSUID | kernel.MS_NODEV,
          f"size={tmp_size_mb}m,mode=1777")
    for source, target in runtime_mounts:  # from the stash: the host's paths are gone
        if source not in runtime_stash:
            raise kernel.SandboxError(2, f"runtime dir {source} was not stashed in this sandbox")
        os.makedirs(target, 0o755, exist_ok=True)
        kernel.bind_readonly(f"{RUNTIME_STASH}/{list(runtime_stash).index(source)}", target)
    if runtime_stash:  # one detach takes the tmpfs and every bind under it
        kernel.umount_detached(RUNTIME_STASH, "umount runtime stash")
        os.rmdir(RUNTIME_STASH)
    write_etc_files("/", etc_files)  # a VPC function's resolver and CA
    seal_root()


def write_etc_files(root: str, files: tuple[tuple[str, str], ...]) -> None:
    """The function's own files under /etc of the new root (`root` ends with "/")."""
    for rel, text in files:
        if not rel.startswith("etc/") or ".." in rel.split("/"):
            raise kernel.SandboxError(22, f"bad sandbox file {rel!r}")
        _write(root + rel, text.encode())


