"""Copy-on-write ahead of time, for pre-forked sandboxes.

A child forked from the zygote shares every page of the zygote's memory until it writes to one;
then the kernel copies that page in a fault. A Python runtime writes to hundreds of them just by
running (reference counts, dicts, the allocator's own lists): measured here, ~550 faults and
~2 MB copied during an environment's first invocation, ~30 % of its CPU in a burst of cold
starts. A pre-forked sandbox waits for its function anyway, so it can take those faults then.

Which pages: the ones an environment that has run actually wrote. The zygote learns them from
its own live children (`WrittenPagesLearner`: the pages present in the zygote that one child
holds as its own copy, read from /proc/<pid>/pagemap), and each pre-forked child copies that
set (`copy_now`, madvise MADV_POPULATE_WRITE) before it is assigned. Copying *all* shared
pages instead made the same cold starts as fast but cost every such environment ~10 MB more.

STDLIB ONLY: loaded by path in the zygote (zygote_main.py), under the runtime's interpreter."""
from __future__ import annotations

import ctypes
import os
import random
import struct
import time
from collections.abc import Collection, Iterable

PAGE = os.sysconf("SC_PAGE_SIZE")
MADV_POPULATE_WRITE = 23  # Linux 5.14: fault the range in writable (breaks copy-on-write)
_PRESENT = 1 << 63
_EXCLUSIVE = 1 << 56  # the page is mapped by this process only
LEARN_EVERY_S = 5.0
SAMPLE_CHILDREN = 8
MAX_PAGES = 2048  # 8 MiB: about twice what a small handler's environment writes

_libc = ctypes.CDLL(None, use_errno=True)
_libc.madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)

Runs = list[tuple[int, int]]  # (first page number, count)


def _private_writable(pid: int | str) -> list[tuple[int, int]]:
    """Page-number ranges [lo, hi) of a process's private writable mappings (not vdso/vvar)."""
    ranges = []
    with open(f"/proc/{pid}/maps") as maps:
        for line in maps:
            fields = line.split()
            if fields[1] != "rw-p" or (len(fields) > 5 and fields[5].startswith("[v")):
                continue
            lo, hi = (int(x, 16) // PAGE for x in fields[0].split("-"))
            ranges.append((lo, hi))
    return ranges


def pages(pid: int | str, exclusive: bool,
          within: list[tuple[int, int]] | None = None) -> set[int]:
    """Page numbers present in a process's private writable mappings, or in the page ranges
    `within`; `exclusive`: only those it holds as its own copy. Raises OSError if the process
    is gone or not ours to read."""
    found: set[int] = set()
    wanted = _PRESENT | (_EXCLUSIVE if exclusive else 0)
    with open(f"/proc/{pid}/pagemap", "rb", buffering=0) as pagemap:
        for lo, hi in _private_writable(pid) if within is None else within:
            pagemap.seek(lo * 8)
            data = pagemap.read((hi - lo) * 8)
            for i, entry in enumerate(struct.unpack(f"{len(data) // 8}Q", data)):
                if entry & wanted == wanted:
                    found.add(lo + i)
    return found


def runs_of(page_numbers: Iterable[int]) -> Runs:
    runs: Runs = []
    for page in sorted(page_numbers):
        if runs and runs[-1][0] + runs[-1][1] == page:
            runs[-1] = (runs[-1][0], runs[-1][1] + 1)
        else:
            runs.append((page, 1))
    return runs


def copy_now(runs: Runs) -> int:
    """Take this process's own copy of these pages now (content unchanged). Pages no longer
    mapped are skipped. Returns how many pages were asked for."""
    asked = 0
    for first, count in runs:
        if _libc.madvise(first * PAGE, count * PAGE, MADV_POPULATE_WRITE) == 0:
            asked += count
    return asked


def _minor_faults(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[7])


class WrittenPagesLearner:
    """In the zygote: the pages its environments write. Of a few live children, the one that
    has faulted most adds its own copies to the set (as far as a new child would share them
    with the zygote) if it has faulted more than the last one read, or LEARN_EVERY_S after it.
    Pre-forked children copy `runs`. The set only grows, within the zygote's own pages (~11 MB
    for python3.11 here; what one small handler's environment writes: ~4 MB, half of it while
    its sandbox is built)."""

    def __init__(self) -> None:
        self.runs: Runs = []
        self._pages: set[int] = set()
        self._read_at = float("-inf")
        self._read_faults = 0

    def learn(self, children: Collection[int]) -> None:
        """Never raises: it only makes later cold starts faster, and runs in the zygote."""
        try:
            self._learn(children)
        except Exception:  # noqa: BLE001 - a child's /proc read racing its exit, say
            pass

    def _learn(self, children: Collection[int]) -> None:
        faults = {}
        for pid in random.sample(sorted(children), min(SAMPLE_CHILDREN, len(children))):
            try:
                faults[pid] = _minor_faults(pid)
            except OSError:
                continue  # gone meanwhile
        due = time.monotonic() - self._read_at >= LEARN_EVERY_S
        candidates = [pid for pid in sorted(faults, key=faults.__getitem__, reverse=True)
                      if due or faults[pid] > self._read_faults]
        if not candidates:
            return
        # read within the zygote's own mappings only: nothing else can be learnt, and a child
        # may map far more than the zygote has
        ours = _private_writable("self")
        for pid in candidates:
            try:
                written = pages(pid, exclusive=True, within=ours)
            except OSError:
                continue  # exited meanwhile: the next one
            if not written:
                continue  # a zombie: no memory left to read
            self._read_at, self._read_faults = time.monotonic(), faults[pid]
            grown = self._pages | (written & pages("self", exclusive=False, within=ours))
            # a function that writes everything it can reach must not make every later
            # sandbox copy the whole zygote: the set stops growing at MAX_PAGES
            if grown != self._pages and len(grown) <= MAX_PAGES:
                self._pages = grown
                self.runs = runs_of(grown)
            return
