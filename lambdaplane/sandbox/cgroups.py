"""Server-side cgroup v1 management for execution environments and zygotes: one memory, one
pids and one cpu cgroup per environment (sized from MemorySize; 1,024 tasks like AWS) and one
of each per zygote, under `names.cgroup_dir` (lambdaplane/lp<instance>) of each controller
except an assigned environment's cpu cgroup (in its function's top-level group, below), so
`cleanup.clean_instance` finds and kills everything. This machine has cgroup v1
memory, pids and cpu controllers at /sys/fs/cgroup/{memory,pids,cpu}; v2 is mounted without
controllers. Without a v1 cpu hierarchy, environments simply get no cpu cgroup.

CPU follows memory as on AWS, where 1,769 MB is one vCPU: an environment's cpu.shares is
1024 x MemorySize / 1769 and cpu.cfs_quota caps it at ceil(MemorySize / 1769) CPUs (AWS's
vCPU count: 1 up to 1,769 MB, 6 at 10,240 MB). Environments sit in a cpu group of their
function, all functions with one weight: a function spinning at full concurrency shares the
CPU with its neighbours as one function, not as one neighbour per environment. The function
groups are top-level cpu groups (cpu/lp-<instance>-fn-<hash>/env-<id>), not below a shared
parent: below one parent, a spinning function spends the parent's share against everything
else on the host, and a neighbour's wake-up then waits for the parent's next turn instead of
preempting as a sleeper does (docs/security.md, CPU). Shares are work-conserving: on an idle
host a 128 MB function still runs at full speed. A pre-forked sandbox (function unknown) is
moved into its function's group when it is assigned, before any function code runs; until
then it and the zygotes sit below the shared `lambdaplane` group."""
from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import logging
import os
import signal
from dataclasses import dataclass, replace
from pathlib import Path

from .cgroup_tree import CGROUP_ROOT, kill_cgroup_tree
from ..net.names import Names

MEMORY = "memory"
PIDS = "pids"
CPU = "cpu"
MB_PER_VCPU = 1769  # AWS: a function with 1,769 MB has the equivalent of one vCPU
CFS_PERIOD_US = 100_000
FAVORDYNMODS = "favordynmods"
_MS_REMOUNT = 32

log = logging.getLogger(__name__)


def instance_dir(names: Names, controller: str) -> Path:
    return CGROUP_ROOT / controller / names.cgroup_dir


def _write(path: Path, value: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


@dataclass(frozen=True)
class EnvCgroup:
    env_id: str
    memory_dir: Path
    pids_dir: Path
    cpu_dir: Path | None = None  # None: no v1 cpu hierarchy on this host
    # cgroups it has left (a pre-forked sandbox's first cpu cgroup): removed with the rest
    left: tuple[Path, ...] = ()

    @property
    def procs_files(self) -> list[str]:
        """The cgroup.procs files a child joins (it writes "0" = itself to each)."""
        return [str(d / "cgroup.procs") for d in self.joined]

    @property
    def joined(self) -> tuple[Path, ...]:
        if self.cpu_dir is None:
            return (self.memory_dir, self.pids_dir)
        return (self.memory_dir, self.pids_dir, self.cpu_dir)

    @property
    def dirs(self) -> tuple[Path, ...]:
        """Every directory to kill and remove when the environment goes."""
        return self.joined + self.left


def has_cpu_controller() -> bool:
    return (CGROUP_ROOT / CPU / "cpu.shares").exists()


def cpu_shares_for(memory_mb: int) -> int:
    return max(2, round(1024 * memory_mb / MB_PER_VCPU))


def cpu_quota_us_for(memory_mb: int) -> int:
    return -(-memory_mb // MB_PER_VCPU) * CFS_PERIOD_US  # ceil(vCPUs) whole CPUs


def function_group(region: str, name: str) -> str:
    """The cpu group of one function (a short stable name: cgroup paths stay short)."""
    return "fn-" + hashlib.sha1(f"{region}/{name}".encode()).hexdigest()[:12]


def function_cpu_dir(names: Names, group: str) -> Path:
    """The top-level cpu group of one function of this instance (see the module docstring):
    `lp-<instance>-fn-<hash>`. A runtime started ahead (prestart.py) keeps the cgroup
    namespace of its sandbox's first cgroup, so it can read this name in /proc/self/cgroup
    (as it read `fn-<hash>` below the shared group before): it names no host path and does
    not spell the `lp<instance>` prefix of the host's links and namespaces."""
    return CGROUP_ROOT / CPU / f"lp-{names.instance}-{group}"


def function_cpu_dirs(names: Names) -> list[Path]:
    """Every function cpu group of this instance (for stop and clean)."""
    root = CGROUP_ROOT / CPU
    return sorted(root.glob(f"lp-{names.instance}-fn-*")) if root.is_dir() else []


def _make(names: Names, key: str, leaf: str, group: str = "") -> EnvCgroup:
    memory_dir = instance_dir(names, MEMORY) / leaf
    pids_dir = instance_dir(names, PIDS) / leaf
    cpu_dir = None
    if has_cpu_controller():
        cpu_dir = function_cpu_dir(names, group) / leaf if group else \
            instance_dir(names, CPU) / leaf
    for d in (memory_dir, pids_dir, *((cpu_dir,) if cpu_dir else ())):
        for attempt in range(3):
            try:
                d.mkdir(parents=True, exist_ok=True)
                break
            except FileNotFoundError:  # the shared parent was removed by another instance's
                if attempt == 2:       # clean just now: make it again
                    raise
    return EnvCgroup(key, memory_dir, pids_dir, cpu_dir)


def create_env_cgroup(names: Names, env_id: str, memory_mb: int,
                      pids_max: int = 1024, group: str = "") -> EnvCgroup:
    """Make (or reset) the environment's cgroups with its limits; nothing has joined yet.
    group: its function's cpu group (function_group); "" for a pre-forked sandbox."""
    cg = _make(names, env_id, f"env-{env_id}", group)
    set_memory_limit(cg, memory_mb)
    _write(cg.pids_dir / "pids.max", str(pids_max))
    return cg


def set_memory_limit(cg: EnvCgroup, memory_mb: int) -> None:
    """MemorySize, and the CPU that comes with it (set_cpu_for_memory)."""
    set_cpu_for_memory(cg, memory_mb)
    limit = str(memory_mb * 1024 * 1024)
    memory = cg.memory_dir / "memory.limit_in_bytes"
    # memory+swap no larger than memory: an environment must not swap its way past its size.
    memsw = cg.memory_dir / "memory.memsw.limit_in_bytes"
    if not memsw.exists():
        _write(memory, limit)
        return
    # v1 keeps memory <= memory+swap at every step: lowering goes memory first, raising
    # memory+swap first.
    try:
        _write(memory, limit)
    except OSError as e:
        if e.errno != errno.EINVAL:
            raise
        _write(memsw, limit)
        _write(memory, limit)
    else:
        _write(memsw, limit)


def set_cpu_for_memory(cg: EnvCgroup, memory_mb: int) -> None:
    """cpu.shares and cpu.cfs_quota_us from MemorySize (see the module's docstring)."""
    if cg.cpu_dir is None:
        return
    _write(cg.cpu_dir / "cpu.shares", str(cpu_shares_for(memory_mb)))
    _write(cg.cpu_dir / "cpu.cfs_quota_us", str(cpu_quota_us_for(memory_mb)))


def cpu_procs(cg: EnvCgroup) -> list[str]:
    return [str(cg.cpu_dir / "cgroup.procs")] if cg.cpu_dir is not None else []


def remove_left(cg: EnvCgroup) -> EnvCgroup:
    """Remove the cgroups it has left (empty once the sandbox joined its new ones)."""
    kept = []
    for d in cg.left:
        try:
            d.rmdir()
        except FileNotFoundError:
            pass
        except OSError:  # still has a task: try again at teardown
            kept.append(d)
    return replace(cg, left=tuple(kept))


def for_function(names: Names, cg: EnvCgroup, group: str, memory_mb: int) -> EnvCgroup:
    """The cgroups of a pre-forked sandbox once assigned: a cpu cgroup of its own in its
    function's group (made here, sized for `memory_mb`), which the sandbox joins itself
    when it takes the assignment — after it surely joined its first one, and before any
    function code. The first is removed with the rest (`left`)."""
    if cg.cpu_dir is None:
        return cg
    moved = replace(cg, cpu_dir=function_cpu_dir(names, group) / cg.cpu_dir.name,
                    left=(*cg.left, cg.cpu_dir))
    assert moved.cpu_dir is not None
    moved.cpu_dir.mkdir(parents=True, exist_ok=True)
    set_cpu_for_memory(moved, memory_mb)
    return moved


def create_zygote_cgroup(names: Names, tag: str) -> EnvCgroup:
    """Unlimited cgroups for one zygote process, so `clean` finds it (and a crashed one)."""
    cg = _make(names, tag, f"zygote-{tag}")
    weigh_functions_parent()
    return cg


def functions_parent_shares() -> int:
    """The weight of the shared `lambdaplane` cpu group against the host's other processes:
    one busy process's (1024) per CPU. Every environment and zygote of every instance sits
    below it; at the default 1024 the functions of a whole host competed as ONE process with
    each other busy task (a loaded host made cold starts several times slower than when each
    sandbox was a process of its own), and below it functions are weighed by MemorySize."""
    return min(262144, 1024 * (os.cpu_count() or 1))


def weigh_functions_parent() -> bool:
    """Give the `lambdaplane` cpu group its weight (it is ours: made by `_make`, removed with
    the last instance); True when it was changed."""
    shares = CGROUP_ROOT / CPU / "lambdaplane" / "cpu.shares"
    with contextlib.suppress(FileNotFoundError, ValueError):
        if int(shares.read_text()) != functions_parent_shares():
            _write(shares, str(functions_parent_shares()))
            return True
    return False


def oom_killed(cg: EnvCgroup) -> bool:
    """True if the kernel OOM-killed a task of this cgroup (memory.oom_control's oom_kill)."""
    with contextlib.suppress(FileNotFoundError):
        for line in (cg.memory_dir / "memory.oom_control").read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value) > 0
    return False


def pids_max_hits(cg: EnvCgroup) -> int:
    """How often a fork/clone in this cgroup was refused by pids.max."""
    with contextlib.suppress(FileNotFoundError):
        for line in (cg.pids_dir / "pids.events").read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == "max":
                return int(value)
    return 0


# memory.max_usage_in_bytes of live environments, kept open: it is read for every invocation's
# REPORT line, and opening a cgroup file costs more than reading it (pread at 0 re-reads it).
_peak_fds: dict[Path, int] = {}


def memory_peak_bytes(cg: EnvCgroup) -> int:
    fd = _peak_fds.get(cg.memory_dir)
    try:
        if fd is None:
            fd = _peak_fds[cg.memory_dir] = os.open(cg.memory_dir / "memory.max_usage_in_bytes",
                                                    os.O_RDONLY | os.O_CLOEXEC)
        return int(os.pread(fd, 64, 0))
    except (FileNotFoundError, ValueError):
        return 0


def _forget_peak_fd(cg: EnvCgroup) -> None:
    fd = _peak_fds.pop(cg.memory_dir, None)
    if fd is not None:
        os.close(fd)


def pids_in(cg: EnvCgroup) -> set[int]:
    pids: set[int] = set()
    for d in cg.dirs:
        with contextlib.suppress(FileNotFoundError):
            pids.update(int(x) for x in (d / "cgroup.procs").read_text().split())
    return pids


def kill_all(cg: EnvCgroup) -> None:
    """SIGKILL every task in the cgroups now (does not wait)."""
    for pid in pids_in(cg):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def destroy_env_cgroup(cg: EnvCgroup) -> None:
    """Kill whatever remains, wait for it to go, remove the directories (idempotent).
    Blocking for as long as the kernel takes to empty the cgroup (usually well under 10 ms)."""
    _forget_peak_fd(cg)
    for d in cg.dirs:
        kill_cgroup_tree(d)
    if cg.cpu_dir is not None and "-fn-" in cg.cpu_dir.parent.name:
        with contextlib.suppress(OSError):  # busy: the function has other environments
            cg.cpu_dir.parent.rmdir()


def remove_instance_cgroups(names: Names) -> None:
    """Remove lambdaplane/lp<instance> in each controller, killing anything still in it. For
    server stop, after all environments and zygotes are gone. The shared `lambdaplane` parent
    goes with its last instance (`_make` copes with it vanishing under a concurrent start)."""
    for controller in (MEMORY, PIDS, CPU):
        kill_cgroup_tree(instance_dir(names, controller))
    for group in function_cpu_dirs(names):
        kill_cgroup_tree(group)


@dataclass(frozen=True)
class Cgroup2Mount:
    path: str
    options: tuple[str, ...]  # its superblock options, e.g. ("rw", "nsdelegate")


def _cgroup2_mount() -> Cgroup2Mount | None:
    with contextlib.suppress(OSError):
        with open("/proc/self/mountinfo") as f:
            for line in f:
                before, _, after = line.partition(" - ")
                fstype, _source, options = (after.split() + ["", "", ""])[:3]
                if fstype == "cgroup2":
                    return Cgroup2Mount(before.split()[4], tuple(options.split(",")))
    return None


def _remount(mount: Cgroup2Mount, options: list[str]) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    data = ",".join(o for o in options if o not in ("rw", "ro")).encode()
    if libc.mount(None, mount.path.encode(), None, _MS_REMOUNT, data) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"remount {mount.path}: {os.strerror(err)}")


def favor_dynamic_moves(record: Path) -> Cgroup2Mount | None:
    """Make moving a task into a cgroup cheap; returns what to give `restore_moves` (None: no
    change made). Every cold start moves its new process into its cgroups; the kernel's
    threadgroup lock makes such a write wait for an RCU grace period (6–20 ms here) whenever
    none happened in the last few tens of ms — exactly the case of a cold start on a quiet
    host. The cgroup2 mount option `favordynmods` (one global lock, so it serves the v1
    hierarchies too) trades that for slightly dearer fork/exit. Our server is root and owns
    the workload; the option is put back on stop. The original options are written to
    `record` (in the data dir) first, so a server killed before its stop still gets them put
    back — by its next stop, or by `lambdaplane clean`."""
    mount = _cgroup2_mount()
    if mount is None:
        return None
    if record.exists():  # our own earlier run changed it and died: it is still ours to undo
        original = Cgroup2Mount(mount.path, tuple(record.read_text().split(",")))
        if FAVORDYNMODS not in mount.options:
            with contextlib.suppress(OSError):
                _remount(mount, [*mount.options, FAVORDYNMODS])
        return original
    if FAVORDYNMODS in mount.options:
        return None  # set by someone else: theirs to undo
    record.write_text(",".join(mount.options))
    try:
        _remount(mount, [*mount.options, FAVORDYNMODS])
    except OSError as e:
        record.unlink(missing_ok=True)
        log.info("cannot set %s on %s (%s): cold starts may wait for RCU grace periods",
                 FAVORDYNMODS, mount.path, e)
        return None
    return mount


def restore_moves(previous: Cgroup2Mount | None, record: Path) -> None:
    if previous is not None:
        with contextlib.suppress(OSError):
            _remount(previous, list(previous.options))
        record.unlink(missing_ok=True)


def restore_moves_from_record(record: Path) -> bool:
    """`lambdaplane clean`: put back the cgroup2 options a killed server changed."""
    mount = _cgroup2_mount()
    if mount is None or not record.exists():
        return False
    restore_moves(Cgroup2Mount(mount.path, tuple(record.read_text().split(","))), record)
    return True
