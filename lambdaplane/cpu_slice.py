"""The CPU time slice of the server and of everything it starts (zygotes, sandboxes, the
runtimes and whatever they exec): how long a task may run before another runnable task of
the same weight gets the CPU. Linux's EEVDF scheduler (6.6+) takes a per-task slice from
sched_setattr(2)'s `sched_runtime` for SCHED_OTHER tasks since 6.12 (clamped to 0.1–100 ms;
the default, sysctl base_slice, is 0.75 ms x (1 + log2 CPUs), 1.4 ms on 2 cores); threads,
forks and execs inherit it, so one call at start covers every process the server makes.

Why: a function spinning at full concurrency keeps every core busy. A neighbour's warm invoke
then waits, at each of its wake-ups (the server reading the request, the sandbox taking the
event from the Runtime API, the server reading the reply), for a spinner's slice to end — a
few of those at 1.4 ms each made its latency several times its quiet figure. With short
slices a task that wakes gets the CPU within ~0.1 ms; CPU *shares* are unchanged (weights
still follow MemorySize, sandbox/cgroups.py). The cost is more context switches between CPU
bound tasks when they contend (none when the host is idle). A function cannot take a shorter
slice than the minimum the server already gives it, so it cannot gain wake-up priority over
its neighbours by changing its own. `serve --cpu-slice-us 0` leaves the kernel's default."""
from __future__ import annotations

import ctypes
import logging
import platform

log = logging.getLogger(__name__)

DEFAULT_SLICE_US = 100  # the kernel's minimum custom slice
_SCHED_SETATTR = {"x86_64": 314, "aarch64": 274}
_SCHED_GETATTR = {"x86_64": 315, "aarch64": 275}


class _SchedAttr(ctypes.Structure):
    _fields_ = [("size", ctypes.c_uint32), ("sched_policy", ctypes.c_uint32),
                ("sched_flags", ctypes.c_uint64), ("sched_nice", ctypes.c_int32),
                ("sched_priority", ctypes.c_uint32), ("sched_runtime", ctypes.c_uint64),
                ("sched_deadline", ctypes.c_uint64), ("sched_period", ctypes.c_uint64),
                ("sched_util_min", ctypes.c_uint32), ("sched_util_max", ctypes.c_uint32)]


def _syscall(table: dict[str, int]) -> int | None:
    return table.get(platform.machine())


def current_slice_ns(tid: int = 0) -> int | None:
    """The slice of task `tid` (0: this thread), None where the kernel cannot tell."""
    nr = _syscall(_SCHED_GETATTR)
    if nr is None:
        return None
    attr = _SchedAttr()
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(nr, tid, ctypes.byref(attr), ctypes.sizeof(attr), 0) != 0:
        return None
    return int(attr.sched_runtime)


def set_slice(slice_us: int) -> bool:
    """Give this thread (and all it creates from now on) a slice of `slice_us` microseconds,
    keeping its policy (SCHED_OTHER) and nice value. Call before any thread or child is
    started. False (logged) where the kernel has no custom slices."""
    nr = _syscall(_SCHED_SETATTR)
    if slice_us <= 0 or nr is None:
        return False
    import os
    attr = _SchedAttr(size=ctypes.sizeof(_SchedAttr), sched_policy=0,
                      sched_nice=os.getpriority(os.PRIO_PROCESS, 0),
                      sched_runtime=slice_us * 1000)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(nr, 0, ctypes.byref(attr), 0) != 0:
        log.info("cannot set a %d us CPU slice (%s): the kernel's default stays",
                 slice_us, os.strerror(ctypes.get_errno()))
        return False
    return current_slice_ns() == slice_us * 1000  # older kernels accept it and ignore it
