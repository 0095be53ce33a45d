"""Linux namespaces through libc (Python 3.11 has no os.setns/os.unshare): create, enter and
delete named network namespaces (bind-mounted under /run/netns like `ip netns`).

setns(CLONE_NEWNET) changes only the calling thread, so every function here that enters a
namespace restores the thread's previous one before returning. Kernel work runs on the single
net thread (see executor.py), never on the event loop thread."""
from __future__ import annotations

import contextlib
import ctypes
import errno
import os
from collections.abc import Iterator
from pathlib import Path

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_BIND = 4096
MS_REC = 16384
MS_SHARED = 1 << 20
MNT_DETACH = 2

NETNS_DIR = Path("/run/netns")
_libc = ctypes.CDLL(None, use_errno=True)
_netns_dir_shared = False


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def setns(fd: int, nstype: int = CLONE_NEWNET) -> None:
    _check(_libc.setns(fd, nstype), "setns")


def unshare(flags: int) -> None:
    _check(_libc.unshare(flags), "unshare")


def netns_path(name: str) -> Path:
    return NETNS_DIR / name


def identity(name: str) -> int:
    """The inode of the named network namespace (0: no name; -1: it is gone): a namespace made
    anew under the same name (drift repaired, a restart) is another one."""
    if not name:
        return 0
    try:
        return os.stat(netns_path(name)).st_ino
    except FileNotFoundError:
        return -1


def exists(name: str) -> bool:
    return netns_path(name).exists()


def list_named(prefix: str) -> list[str]:
    if not NETNS_DIR.is_dir():
        return []
    return sorted(p.name for p in NETNS_DIR.iterdir() if p.name.startswith(prefix))


@contextlib.contextmanager
def entered(name: str | None) -> Iterator[None]:
    """Run the block with this thread inside netns `name` (None: stay where we are)."""
    if name is None:
        yield
        return
    back = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(netns_path(name), os.O_RDONLY)
    try:
        setns(target)
        yield
    finally:
        setns(back)
        os.close(back)
        os.close(target)


def share_netns_dir() -> None:
    """Make /run/netns a shared mount point of its own, as `ip netns add` does the first time
    it runs. Done before our first namespace: were `ip netns` to do it later (a test's own
    namespace, an operator's), its bind would cover the names we had mounted, and deleting one
    of them would fail with EBUSY for good."""
    global _netns_dir_shared
    if _netns_dir_shared:
        return
    NETNS_DIR.mkdir(parents=True, exist_ok=True)
    target = str(NETNS_DIR).encode()
    if _libc.mount(b"none", target, None, MS_SHARED | MS_REC, None) != 0:
        if ctypes.get_errno() != errno.EINVAL:  # EINVAL: not a mount point yet
            _check(-1, "share /run/netns")
        _check(_libc.mount(target, target, b"none", MS_BIND | MS_REC, None), "bind /run/netns")
        _check(_libc.mount(b"none", target, None, MS_SHARED | MS_REC, None), "share /run/netns")
    _netns_dir_shared = True


def create(name: str) -> None:
    """Create a named network namespace (idempotent)."""
    path = netns_path(name)
    if path.exists() and _is_mounted(path):
        return
    share_netns_dir()
    path.touch()
    back = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        unshare(CLONE_NEWNET)
        _check(_libc.mount(b"/proc/thread-self/ns/net", str(path).encode(), None, MS_BIND, None),
               "mount netns")
    except BaseException:
        setns(back)
        os.close(back)
        _unlink_quietly(path)
        raise
    setns(back)
    os.close(back)


def adopt(name: str, pid: int) -> None:
    """Name the network namespace process `pid` lives in (bind-mount /proc/<pid>/ns/net), so a
    namespace whose name was removed but which a program still uses can be managed again."""
    path = netns_path(name)
    share_netns_dir()
    path.touch()
    if _libc.mount(f"/proc/{pid}/ns/net".encode(), str(path).encode(), None, MS_BIND, None) != 0:
        err = ctypes.get_errno()
        _unlink_quietly(path)
        raise OSError(err, f"mount netns of pid {pid}: {os.strerror(err)}")


def name_again(name: str, fd: int) -> None:
    """Give the network namespace open as `fd` the name `name` (bind-mount it under /run/netns):
    a namespace of ours whose name was removed while we still hold it (service/kernel_watch.py)."""
    adopt_path(name, f"/proc/self/fd/{fd}")


def adopt_path(name: str, source: str) -> None:
    path = netns_path(name)
    share_netns_dir()
    path.touch()
    if _libc.mount(source.encode(), str(path).encode(), None, MS_BIND, None) != 0:
        err = ctypes.get_errno()
        _unlink_quietly(path)
        raise OSError(err, f"mount netns {source} as {name}: {os.strerror(err)}")


def delete(name: str) -> None:
    """Remove a named network namespace (idempotent). Its links die with it."""
    path = netns_path(name)
    if not path.exists():
        return
    if _libc.umount2(str(path).encode(), MNT_DETACH) != 0:
        err = ctypes.get_errno()
        if err not in (errno.EINVAL, errno.ENOENT):
            raise OSError(err, f"umount {path}: {os.strerror(err)}")
    _unlink_quietly(path)


def _is_mounted(path: Path) -> bool:
    target = str(path)
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == target for line in f)


def _unlink_quietly(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def set_sysctl(key: str, value: str) -> None:
    """Write a sysctl in the calling thread's current network namespace."""
    Path("/proc/sys", key.replace(".", "/")).write_text(value)
