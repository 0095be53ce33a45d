"""Start a zygote whose interpreter lives outside /usr (a pyenv python3.X, an /opt install) as
AWS's runtimes are laid out: at /var/lang. Run by the server (zygote.py) as
`<prefix>/bin/python3.X -I -S zygote_lang.py <prefix> -- <zygote_main.py args...>`: in a mount
namespace of its own (nothing is changed on the host) it gives /var a copy of the host's
entries plus `lang` — the install prefix, read-only — and execs the interpreter again as
/var/lang/bin/python3.X with its shared library found at /var/lang/lib. Every sandbox the
zygote forks inherits that executable: /proc/self/exe, the command line, sys.executable and
the memory map name /var/lang, never the host's install path (the sandbox mounts the prefix
at /var/lang too: runtimes/registry.py).

STDLIB ONLY, run under the runtime's own interpreter — never the server's venv."""
from __future__ import annotations

import ctypes
import os
import sys

CLONE_NEWNS = 0x00020000
MS_RDONLY, MS_NOSUID, MS_NODEV = 1, 2, 4
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
MNT_DETACH = 2
LANG = "/var/lang"
_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(source: str | None, target: str, fstype: str | None, flags: int,
           data: str | None = None) -> None:
    _check(_libc.mount(source.encode() if source else None, target.encode(),
                       fstype.encode() if fstype else None, flags,
                       data.encode() if data else None), f"mount {target}")


def var_with_lang(prefix: str) -> None:
    """In this (private) mount namespace: /var as before, plus /var/lang = `prefix`."""
    original = os.open("/var", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    entries = sorted(os.listdir("/var"))
    _mount("lpvar", "/var", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=64k")
    for name in entries:
        source = f"/proc/self/fd/{original}/{name}"
        target = f"/var/{name}"
        if os.path.islink(source):
            os.symlink(os.readlink(source), target)
            continue
        if os.path.isdir(source):
            os.mkdir(target)
        else:
            open(target, "w").close()
        _mount(source, target, None, MS_BIND | MS_REC)
    os.close(original)
    if os.path.lexists(LANG):  # the host has a /var/lang of its own: covered here only
        _mount(prefix, LANG, None, MS_BIND)
    else:
        os.mkdir(LANG)
        _mount(prefix, LANG, None, MS_BIND)
    _mount(None, LANG, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
    _mount(None, "/var", None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)


def drop_named_netns() -> None:
    """The host's named network namespaces (nsfs mounts, /run/netns) out of this namespace: it
    lives as long as the zygote, and must not keep namespaces the server deletes alive (as
    isolation.private_mount_namespace does for the zygote's own)."""
    with open("/proc/self/mountinfo") as f:
        mounts = [line.split() for line in f]
    targets = [m[4] for m in mounts if m[m.index("-") + 1] == "nsfs" or m[4] == "/run/netns"]
    for target in reversed(targets):  # children before the mount they sit on
        path = target.encode().decode("unicode_escape").encode()  # \040 etc. in mountinfo
        if _libc.umount2(path, MNT_DETACH) != 0 and ctypes.get_errno() not in (22, 2):
            _check(-1, f"umount {target}")


def main(argv: list[str]) -> None:
    prefix, separator, rest = argv[0], argv[1], argv[2:]
    if separator != "--":
        raise SystemExit("usage: zygote_lang.py <prefix> -- <zygote_main.py args...>")
    _check(_libc.unshare(CLONE_NEWNS), "unshare mount namespace")
    _mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing of ours reaches the host
    drop_named_netns()
    var_with_lang(prefix)
    # The zygote makes a mount namespace of its own again (isolation.py); this one must live
    # on, or its /var/lang mount is detached and the executable shows as /bin/python3.X: the
    # zygote keeps it by this inherited fd (its children close every fd they inherit).
    os.set_inheritable(os.open("/proc/self/ns/mnt", os.O_RDONLY), True)
    executable = os.path.join(LANG, "bin", os.path.basename(sys.executable))
    environ = dict(os.environ, LD_LIBRARY_PATH=f"{LANG}/lib")
    os.execve(executable, [executable, "-I", "-S", *rest], environ)


if __name__ == "__main__":
    main(sys.argv[1:])
