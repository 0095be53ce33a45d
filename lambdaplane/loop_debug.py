"""The loop-blocking test mode (`serve --loop-slow-callback-ms MS`; LP_LOOP_DEBUG=1 in the test
suite, `make test-loop`). The event loop runs in asyncio debug mode, which logs every callback
that took longer than MS of wall time ("asyncio: Executing … took …"), and a watchdog thread
finds out what held it. It pings the loop; until the loop answers it samples, every 5 ms, the
loop thread's stack, CPU time and kernel state. Between two samples, the loop's code spent the
CPU time the thread used, or the whole interval if the thread slept in the kernel on anything
but a futex (a sleep, a file, a pipe, a cgroup write), charged to the innermost frame of ours
on its stack. When what one hold spent adds up to MS, it
logs "loop blocked <ms> ms at <file:line>" with the stack, which the test suite fails on.
Waiting for the CPU (runnable) or the GIL (a futex) is not blocking by the loop's code — on two
shared cores a trivial callback can take 80 ms of wall time — and is logged at debug level.
Costs CPU: for tests."""
from __future__ import annotations

import asyncio
import collections
import logging
import sys
import threading
import time
import traceback
from types import FrameType

log = logging.getLogger("lambdaplane.loop_debug")

_OURS = "/lambdaplane/"
_NOT_OURS = ("/lambdaplane/loop_debug.py", "/lambdaplane/cli.py")  # the watchdog, the runner
_SAMPLE_S = 0.005


def debug_loop(loop: asyncio.AbstractEventLoop, slow_callback_ms: float) -> None:
    """Put `loop` (not yet running, made on the thread that will run it) in debug mode."""
    loop.set_debug(True)
    loop.slow_callback_duration = slow_callback_ms / 1000
    watch = threading.Thread(target=_watch, args=(loop, threading.get_ident(),
                                                 threading.get_native_id(),
                                                 slow_callback_ms / 1000),
                             name="lp-loop-watchdog", daemon=True)
    watch.start()


def _our_site(frame: FrameType | None) -> tuple[str, int] | None:
    """(file, line) of the innermost frame of lambdaplane's own code."""
    while frame is not None:
        name = frame.f_code.co_filename
        if _OURS in name and not name.endswith(_NOT_OURS):
            return name, frame.f_lineno
        frame = frame.f_back
    return None


def _kernel_state(native_id: int) -> tuple[str, str]:
    """(state letter, wait channel) of a thread of this process."""
    try:
        with open(f"/proc/self/task/{native_id}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        with open(f"/proc/self/task/{native_id}/wchan") as f:
            return state, f.read()
    except OSError:
        return "?", ""


def _watch(loop: asyncio.AbstractEventLoop, loop_thread: int, native_id: int,
           threshold_s: float) -> None:
    clock = time.pthread_getcpuclockid(loop_thread)
    answered = threading.Event()
    while not loop.is_closed():
        answered.clear()
        asked = time.monotonic()
        try:
            loop.call_soon_threadsafe(answered.set)
        except RuntimeError:  # closed meanwhile
            return
        sites: collections.defaultdict[tuple[str, int], float] = \
            collections.defaultdict(float)  # seconds spent at each site of ours
        stacks: dict[tuple[str, int], str] = {}
        cpu, sampled = time.clock_gettime(clock), asked
        while not answered.wait(_SAMPLE_S) and loop.is_running():
            state, wchan = _kernel_state(native_id)
            frame = sys._current_frames().get(loop_thread)
            now_cpu, now = time.clock_gettime(clock), time.monotonic()
            if state in ("S", "D") and "futex" not in wchan:
                spent = now - sampled  # asleep in the kernel: a sleep, a file, a pipe, …
            else:
                spent = now_cpu - cpu  # running; not waiting for the CPU or the GIL
            cpu, sampled = now_cpu, now
            site = _our_site(frame)
            if site is not None and spent > 0:
                sites[site] += spent
                if site not in stacks:
                    stacks[site] = "".join(traceback.format_stack(frame)[-10:])
        held_ms = (time.monotonic() - asked) * 1000
        blocking_s = sum(sites.values())
        if blocking_s >= threshold_s:
            path, line = max(sites, key=lambda site: sites[site])
            log.warning("loop blocked %.0f ms at %s:%d, stack:\n%s", held_ms, path, line,
                        stacks[(path, line)])
        elif held_ms >= threshold_s * 1000:
            log.debug("loop held %.0f ms, %.0f ms of it by code of ours", held_ms,
                      blocking_s * 1000)
        time.sleep(threshold_s / 2)
