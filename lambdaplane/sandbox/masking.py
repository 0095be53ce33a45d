"""What a sandbox must not see of the host: the kernel files of /proc that container runtimes
mask (runc's list, plus kallsyms and the page-frame files), and the zygote's command line,
which names the host path of zygote_main.py and the server's data dir. /sys is not mounted in
a sandbox at all (so /sys/firmware and the rest are absent, not just masked).

Runs in the forked sandbox child after its root is built (pivoted: /proc is the sandbox's own,
/dev/null its own node), as root, before privileges are dropped.

STDLIB ONLY: the zygote loads this file by path under the runtime's own interpreter (after
isolation_libc.py, whose libc calls it uses)."""
from __future__ import annotations

import ctypes
import os

if __package__:
    from . import isolation_libc as kernel
else:  # loaded by path in the zygote, after the libc part (zygote_main.py, by_path.py)
    import _lambdaplane_isolation_libc as kernel  # type: ignore[import-not-found,no-redef]

# Files: /dev/null bound over them (reads give nothing). Dirs: an empty read-only tmpfs.
MASKED_FILES = ("kcore", "kallsyms", "keys", "key-users", "latency_stats", "timer_list",
                "timer_stats", "sched_debug", "sysrq-trigger", "kmsg", "kpagecount",
                "kpageflags", "kpagecgroup", "vmallocinfo", "slabinfo", "iomem", "ioports",
                "config.gz")
MASKED_DIRS = ("acpi", "asound", "scsi", "driver", "bus", "irq")


def mask_proc(proc: str = "/proc") -> list[str]:
    """Mask what exists of MASKED_FILES and MASKED_DIRS under `proc`; returns what was."""
    masked = []
    for name in MASKED_FILES:
        path = f"{proc}/{name}"
        if os.path.exists(path):
            kernel.mount("/dev/null", path, None, kernel.MS_BIND)
            masked.append(path)
    for name in MASKED_DIRS:
        path = f"{proc}/{name}"
        if os.path.isdir(path):
            kernel.mount("lpmask", path, "tmpfs",
                         kernel.MS_RDONLY | kernel.MS_NOSUID | kernel.MS_NODEV | kernel.MS_NOEXEC,
                         "size=4k,nr_inodes=1,mode=0555")
            masked.append(path)
    return masked


def set_command_line(args: list[str]) -> None:
    """Replace this process's /proc/<pid>/cmdline (the zygote's, inherited through fork) with
    `args`, rewritten in place. With CAP_SYS_RESOURCE the kernel is told where they now end
    (PR_SET_MM); without it, the setproctitle(3) convention: a non-NUL last byte makes the
    kernel show the area up to its first NUL, so `args` read as one space-joined string."""
    with open("/proc/self/stat", "rb") as f:
        stat = f.read()
    fields = stat[stat.rindex(b")") + 2:].split()  # fields[0] is field 3 of proc(5)
    arg_start, arg_end = int(fields[45]), int(fields[46])  # fields 48 and 49
    size = arg_end - arg_start
    new = b"\0".join(a.encode() for a in args)[:size - 2] + b"\0"
    ctypes.memmove(arg_start, new, len(new))
    ctypes.memset(arg_start + len(new), 0, size - len(new))
    if kernel.libc.prctl(kernel.PR_SET_MM, kernel.PR_SET_MM_ARG_END, arg_start + len(new), 0,
                         0) == 0:
        return
    title = " ".join(args).encode()[:size - 2] + b"\0"
    ctypes.memmove(arg_start, title, len(title))
    ctypes.memset(arg_start + len(title), ord(" "), size - len(title))
