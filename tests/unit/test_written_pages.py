"""Copy-on-write ahead of time (sandbox/written_pages.py) on real forked processes: the pages a
child wrote are found from outside, and another child copies exactly those on request, its
memory unchanged. Every child is killed and reaped in a finally block."""
from __future__ import annotations

import ctypes
import mmap
import os
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from lambdaplane.sandbox import written_pages as wp

PAGES = 32
WRITTEN = (3, 4, 10)


@contextmanager
def shared_region() -> Iterator[tuple[mmap.mmap, int]]:
    """An anonymous private region of PAGES pages, every page present, in this process."""
    region = mmap.mmap(-1, PAGES * wp.PAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    try:
        for i in range(PAGES):
            region[i * wp.PAGE] = i + 1
        first = ctypes.addressof(ctypes.c_char.from_buffer(region)) // wp.PAGE
        yield region, first
    finally:
        region.close()


@contextmanager
def child(body: Callable[[], None]) -> Iterator[int]:
    """A forked child that runs `body`, reports on a pipe, then waits to be killed."""
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            body()
            os.write(ready_w, b"1")
            while True:
                time.sleep(60)
        finally:
            os._exit(0)
    os.close(ready_w)
    try:
        assert os.read(ready_r, 1) == b"1"
        yield pid
    finally:
        os.close(ready_r)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


def test_pages_a_child_wrote_are_found_from_outside() -> None:
    with shared_region() as (region, first):
        def write() -> None:
            for i in WRITTEN:
                region[i * wp.PAGE + 1] = 0xAA

        with child(write) as pid:
            ours = wp.pages(pid, exclusive=True) & set(range(first, first + PAGES))
            assert ours == {first + i for i in WRITTEN}
            assert set(range(first, first + PAGES)) <= wp.pages(pid, exclusive=False)


def test_copy_now_takes_own_copies_of_exactly_those_pages_and_keeps_their_content() -> None:
    with shared_region() as (region, first):
        runs = wp.runs_of(first + i for i in WRITTEN)
        assert runs == [(first + 3, 2), (first + 10, 1)]

        def copy() -> None:
            assert wp.copy_now(runs) == len(WRITTEN)
            assert [region[i * wp.PAGE] for i in range(PAGES)] == list(range(1, PAGES + 1))

        with child(copy) as pid:
            ours = wp.pages(pid, exclusive=True) & set(range(first, first + PAGES))
            assert ours == {first + i for i in WRITTEN}


def test_the_learner_takes_the_pages_of_the_child_that_wrote_most() -> None:
    with shared_region() as (region, first):
        def write(pages: tuple[int, ...]) -> Callable[[], None]:
            def body() -> None:
                for i in pages:
                    region[i * wp.PAGE + 1] = 0xBB
            return body

        learner = wp.WrittenPagesLearner()
        with child(write((1,))) as quiet, child(write(tuple(range(8, 8 + 16)))) as busy:
            learner.learn([quiet, busy])
        learned = {p for start, count in learner.runs for p in range(start, start + count)}
        assert {first + i for i in range(8, 8 + 16)} <= learned
        assert first + 1 not in learned
        assert learned <= wp.pages("self", exclusive=False)
