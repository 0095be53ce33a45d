"""What the soak test measures before and after: the instance's kernel objects (namespaces,
links in them, conntrack entries in them, cgroups) and the server process (fds, threads, RSS),
plus the processes in our cgroups. Read from /proc and netlink; nothing is changed."""
from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass
from pathlib import Path

from lambdaplane.cleanup import CGROUP_ROOT, _pids_in
from lambdaplane.net import ns
from lambdaplane.net.names import Names
from lambdaplane.net.netlink import Netlink


@dataclass(frozen=True)
class Snapshot:
    netns: int
    links: int  # in the root namespace with our prefix + inside every namespace of ours
    conntrack: int  # entries in our namespaces
    cgroups: int  # directories under lambdaplane/lp<instance> (memory controller)
    cgroup_processes: int
    server_fds: int
    server_threads: int
    server_rss_kib: int

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def _conntrack_count(netns: str) -> int:
    # net.netfilter sysctls are per network namespace: read in the thread's (entered) netns.
    with ns.entered(netns):
        with contextlib.suppress(FileNotFoundError):
            with open("/proc/sys/net/netfilter/nf_conntrack_count") as f:
                return int(f.read())
    return 0


def _status_field(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def link_names(instance: str) -> dict[str, list[str]]:
    """Every link of ours by namespace ("" = the root namespace), to say which ones changed."""
    names = Names(instance)
    with Netlink() as root:
        found = {"": sorted(link.name for link in root.links(names.prefix))}
    for n in ns.list_named(names.prefix + "-"):
        with contextlib.suppress(OSError):
            with Netlink(n) as nl:
                found[n] = sorted(link.name for link in nl.links() if link.name != "lo")
    return found


def snapshot(instance: str, server_pid: int) -> Snapshot:
    names = Names(instance)
    namespaces = ns.list_named(names.prefix + "-")
    links = 0
    conntrack = 0
    with Netlink() as root:
        links += len(root.links(names.prefix))
    for n in namespaces:
        with contextlib.suppress(OSError):
            with Netlink(n) as nl:
                links += len([link for link in nl.links() if link.name != "lo"])
            conntrack += _conntrack_count(n)
    base = CGROUP_ROOT / "memory" / names.cgroup_dir
    cgroups = sum(1 for p in base.rglob("*") if p.is_dir()) if base.is_dir() else 0
    return Snapshot(
        netns=len(namespaces), links=links, conntrack=conntrack, cgroups=cgroups,
        cgroup_processes=len(_pids_in(base)),
        server_fds=len(list(Path(f"/proc/{server_pid}/fd").iterdir())),
        server_threads=_status_field(server_pid, "Threads"),
        server_rss_kib=_status_field(server_pid, "VmRSS"))
