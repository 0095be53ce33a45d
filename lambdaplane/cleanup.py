"""`lambdaplane clean`: remove everything one server instance made — its processes (found
through its cgroups), network namespaces, root-namespace links and nftables tables, cgroups —
by its `lp<instance>` prefix, and nothing else. Also the backstop that tests run after a server
stops, and `leftovers()` is what they assert is empty."""
from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

from .net import nft, ns
from .net.fabric import processes_in
from .net.frr import kill as kill_frr
from .net.names import Names
from .net.netlink import Netlink
from .sandbox.cgroup_tree import CGROUP_ROOT, kill_cgroup_tree
from .sandbox.cgroup_tree import pids_in as _pids_in
from .sandbox.cgroups import function_cpu_dirs

CONTROLLERS = ("memory", "pids", "cpu")


def cgroup_dirs(names: Names) -> list[Path]:
    """The instance's directory per controller, then its top-level cpu groups: the server's
    `lp<instance>-server` (sandbox/server_cpu.py) and the functions' `lp-<instance>-fn-*`
    (sandbox/cgroups.py)."""
    cpu = CGROUP_ROOT / "cpu"
    top = sorted([*cpu.glob(f"{names.prefix}-*"), *function_cpu_dirs(names)]) \
        if cpu.is_dir() else []
    return [CGROUP_ROOT / c / names.cgroup_dir for c in CONTROLLERS] + top


def _step_out_of(cgroup: Path) -> None:
    """A process that ran the instance's environments itself (tests do) and did not stop them
    is still in the server's cpu group: move it to the root of the hierarchy, not kill it."""
    if os.getpid() in _pids_in(cgroup):
        root = CGROUP_ROOT / cgroup.relative_to(CGROUP_ROOT).parts[0]
        (root / "cgroup.procs").write_text(str(os.getpid()))


def clean_instance(instance: str) -> list[str]:
    names = Names(instance)
    done: list[str] = []
    for cg in cgroup_dirs(names):
        if cg.exists():
            _step_out_of(cg)
            kill_cgroup_tree(cg)
            done.append(f"removed cgroup {cg}")
    fabric_pids = processes_in(names.fabric_netns)  # its FRR daemons (net/fabric.py)
    kill_frr(fabric_pids)
    done += [f"killed process {pid} in {names.fabric_netns}" for pid in fabric_pids]
    for name in ns.list_named(names.netns_prefix):
        ns.delete(name)
        done.append(f"removed netns {name}")
    with Netlink() as nl:
        for link in nl.links(names.prefix):
            nl.delete_link(link.name)
            done.append(f"removed link {link.name}")
    for family, table in nft.tables(names.nft_table):
        if names.owns_nft_table(table):
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
        in_use = (ns.list_named(names.netns_prefix)
                  or any(names.owns(p.name) for p in Path("/sys/class/net").iterdir())
                  or any(cg.exists() for cg in cgroup_dirs(names)))
        if not in_use:
            return instance


def leftovers_with_host(instance: str, host_netns: str) -> list[str]:
    """`leftovers` seen from here and from inside an agent's host namespace (`--host-netns`,
    where its worker link, nftables tables and fabric live), while that namespace exists."""
    found = leftovers(instance)
    if ns.exists(host_netns):
        out = subprocess.run(
            ["ip", "netns", "exec", host_netns, sys.executable, "-c",
             "import json, sys; from lambdaplane.cleanup import leftovers; "
             "print(json.dumps(leftovers(sys.argv[1])))", instance],
            capture_output=True, text=True, timeout=60, check=True).stdout
        found += [f"in {host_netns}: {x}" for x in json.loads(out)]
    return found


def leftovers(instance: str) -> list[str]:
    """What of this instance still exists in the kernel (empty after a clean stop)."""
    names = Names(instance)
    found = [f"netns {n}" for n in ns.list_named(names.netns_prefix)]
    with Netlink() as nl:
        found += [f"link {link.name}" for link in nl.links(names.prefix)]
    found += [f"nft table {f} {t}" for f, t in nft.tables(names.nft_table)
              if names.owns_nft_table(t)]
    for cg in cgroup_dirs(names):
        pids = _pids_in(cg)
        if pids:
            found.append(f"processes {sorted(pids)} in {cg}")
        if cg.exists():
            found.append(f"cgroup {cg}")
    return found
