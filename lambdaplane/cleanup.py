"""`lambdaplane clean`: remove everything one server instance made — its processes (found
through its cgroups), network namespaces, root-namespace links and nftables tables, cgroups —
by its `lp<instance>` prefix, and nothing else. Also the backstop that tests run after a server
stops, and `leftovers()` is what they assert is empty."""
from __future__ import annotations

import contextlib
import os
import secrets
import signal
import time
from collections.abc import Iterator
from pathlib import Path

from .net import nft, ns
from .net.names import Names
from .net.netlink import Netlink

CGROUP_ROOT = Path("/sys/fs/cgroup")
CONTROLLERS = ("memory", "pids", "cpu")


def cgroup_dirs(names: Names) -> list[Path]:
    return [CGROUP_ROOT / c / names.cgroup_dir for c in CONTROLLERS]


def _walk_bottom_up(root: Path) -> Iterator[Path]:
    if not root.is_dir():
        return
    for dirpath, _dirs, _files in os.walk(root, topdown=False):
        yield Path(dirpath)


def _pids_in(cgroup: Path) -> set[int]:
    pids: set[int] = set()
    for d in _walk_bottom_up(cgroup):
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            pids.update(int(x) for x in (d / "cgroup.procs").read_text().split())
    return pids


def kill_cgroup_tree(cgroup: Path, timeout_s: float = 5.0) -> None:
    """SIGKILL every process in the tree, wait until it is empty, remove the directories."""
    deadline = time.monotonic() + timeout_s
    while True:
        pids = _pids_in(cgroup)
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if time.monotonic() > deadline:
            break
        time.sleep(0.01)
    for d in _walk_bottom_up(cgroup):
        for _ in range(100):
            try:
                d.rmdir()
                break
            except FileNotFoundError:
                break
            except OSError:  # busy: a killed task not yet reaped by the kernel
                time.sleep(0.01)
    # the shared parent (`lambdaplane/` under each controller) goes with its last instance
    with contextlib.suppress(OSError):
        if cgroup.parent.name == "lambdaplane":
            cgroup.parent.rmdir()


def clean_instance(instance: str) -> list[str]:
    names = Names(instance)
    done: list[str] = []
    for cg in cgroup_dirs(names):
        if cg.exists():
            kill_cgroup_tree(cg)
            done.append(f"removed cgroup {cg}")
    for name in ns.list_named(names.prefix + "-"):
        ns.delete(name)
        done.append(f"removed netns {name}")
    with Netlink() as nl:
        for link in nl.links(names.prefix):
            nl.delete_link(link.name)
            done.append(f"removed link {link.name}")
    for family, table in nft.tables(names.nft_table):
        if table == names.nft_table or table.startswith(names.nft_table + "-"):
            nft.delete_table(family, table)
            done.append(f"removed nft table {family} {table}")
    return done


def fresh_instance(first: str) -> str:
    """A random instance id starting with `first` that nothing on this host uses yet (tests and
    benchmarks run many servers side by side; a shared id would let one clean the other's)."""
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    while True:
        instance = first + "".join(secrets.choice(alphabet) for _ in range(2))
        names = Names(instance)
        # A cheap look (no netlink: callers may be inside an event loop): names and cgroups.
        in_use = (ns.list_named(names.prefix + "-")
                  or any(p.name.startswith(names.prefix) for p in Path("/sys/class/net").iterdir())
                  or any(cg.exists() for cg in cgroup_dirs(names)))
        if not in_use:
            return instance


def leftovers(instance: str) -> list[str]:
    """What of this instance still exists in the kernel (empty after a clean stop)."""
    names = Names(instance)
    found = [f"netns {n}" for n in ns.list_named(names.prefix + "-")]
    with Netlink() as nl:
        found += [f"link {link.name}" for link in nl.links(names.prefix)]
    found += [f"nft table {f} {t}" for f, t in nft.tables(names.nft_table)
              if t == names.nft_table or t.startswith(names.nft_table + "-")]
    for cg in cgroup_dirs(names):
        pids = _pids_in(cg)
        if pids:
            found.append(f"processes {sorted(pids)} in {cg}")
        if cg.exists():
            found.append(f"cgroup {cg}")
    return found
