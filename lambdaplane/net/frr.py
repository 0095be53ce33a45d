"""FRRouting for the EVPN fabric (net/fabric.py): the configuration of one host's zebra and
bgpd (rendered, pure) and the two daemons themselves, started inside the fabric namespace and
stopped by us. Everything of theirs lives in one state directory under the data dir —
configuration, pid files, the zebra API socket, the vty sockets, logs — never /etc/frr or
/var/run/frr, so the host's own FRR (if any) is untouched and several hosts run on one machine.

bgpd speaks iBGP to every peer's underlay address, address family l2vpn evpn only, with
`advertise-all-vni`: zebra finds the fabric namespace's VXLAN devices and their bridges' local
MACs, bgpd advertises them (EVPN type 2 and 3 routes) and installs what the peers advertise —
the remote VTEPs' flood entries and MACs — through zebra into the kernel. No watchfrr: the
owner's ensure() is the watchdog (a dead daemon is started again)."""
from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

FRR_DIR = Path("/usr/lib/frr")
DAEMONS = ("zebra", "bgpd")
# FRR's compiled-in directory for per-process crash logs (`<daemon>-<instance>.<pid>`): removed
# by a daemon that exits cleanly, left by a killed one; we remove ours after a stop.
FRR_TMP_DIR = Path("/var/tmp/frr")
# The daemons leave their starter's cpu group (an agent's `lp<i>-server`, sandbox/server_cpu.py)
# for the hierarchy's root: they are not the agent's, and a restarted agent's sweep of its old
# groups must not kill them.
ROOT_CPU_PROCS = Path("/sys/fs/cgroup/cpu/cgroup.procs")
VTY_GROUP = "frrvty"  # Debian's FRR is built with it
_FALLBACK_VTY_GID = 65533
DEFAULT_ASN = 65000  # one private AS for the whole fabric: iBGP, every host peers with all
_STOP_WAIT_S = 5.0
_START_WAIT_S = 10.0


@dataclass(frozen=True)
class BgpConfig:
    """What bgpd is told: this host's underlay address (its router id and VTEP address), the
    other hosts' underlay addresses, the fabric's AS."""
    hostname: str
    router_id: str
    peers: tuple[str, ...]
    asn: int = DEFAULT_ASN


def installed() -> bool:
    return all((FRR_DIR / d).is_file() for d in DAEMONS) and shutil.which("vtysh") is not None


def render_zebra(hostname: str) -> str:
    """The fabric namespace reaches the peers by its default route (to the host): zebra must
    let BGP's next-hop tracking resolve through it."""
    return f"frr defaults datacenter\nhostname {hostname}\nip nht resolve-via-default\n!\n"


def render_bgpd(cfg: BgpConfig) -> str:
    """bgpd's configuration. `datacenter` defaults: 3 s keepalives, no advertisement delay;
    connect retries every 2 s so a peer that starts later is found quickly."""
    lines = ["frr defaults datacenter", f"hostname {cfg.hostname}", "!",
             f"router bgp {cfg.asn}", f" bgp router-id {cfg.router_id}",
             " no bgp default ipv4-unicast", " no bgp network import-check"]
    for peer in sorted(cfg.peers):
        lines += [f" neighbor {peer} remote-as internal",
                  f" neighbor {peer} update-source {cfg.router_id}",
                  f" neighbor {peer} timers connect 2"]
    lines += [" !", " address-family l2vpn evpn"]
    lines += [f"  neighbor {peer} activate" for peer in sorted(cfg.peers)]
    lines += ["  advertise-all-vni", " exit-address-family", "exit", "!"]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Daemons:
    """The files of one host's FRR daemons, all in `state_dir`."""
    state_dir: Path
    netns: str  # where they run: the fabric namespace

    def config(self, daemon: str) -> Path:
        return self.state_dir / f"{daemon}.conf"

    def pid_file(self, daemon: str) -> Path:
        return self.state_dir / f"{daemon}.pid"

    @property
    def zserv(self) -> Path:
        return self.state_dir / "zserv.api"

    def launch_file(self, daemon: str) -> Path:
        """The pid the daemon had before it went to the background: FRR names its crash-log
        directory (FRR_TMP_DIR) after it."""
        return self.state_dir / f"{daemon}.launch"

    def log(self, daemon: str) -> Path:
        return self.state_dir / f"{daemon}.log"

    @property
    def group_file(self) -> Path:
        return self.state_dir / "group"

    def command(self, daemon: str) -> list[str]:
        """The daemon runs as root (its files are ours, under the data dir), but FRR insists
        that its user belong to the compiled-in vty group (frrvty): the daemon sees, in a
        mount namespace of its own, a copy of /etc/group where root does — the host's file and
        groups stay as they are."""
        return ["unshare", "--mount", "--propagation", "slave", "sh", "-c",
                f'if [ -w {ROOT_CPU_PROCS} ]; then echo $$ > {ROOT_CPU_PROCS}; fi; '
                'mount --bind "$1" /etc/group && shift && exec "$@"', "sh",
                str(self.group_file),
                "ip", "netns", "exec", self.netns, str(FRR_DIR / daemon), "-d",
                "-F", "datacenter", "-u", "root", "-g", "root",
                "-f", str(self.config(daemon)), "-i", str(self.pid_file(daemon)),
                "-z", str(self.zserv), "--vty_socket", str(self.state_dir),
                "-A", "127.0.0.1", "-P", "0", "--log", f"file:{self.log(daemon)}"]

    def pid(self, daemon: str) -> int | None:
        """The daemon's pid when it runs (the pid file's process is ours: its command line
        names our configuration file), else None."""
        try:
            pid = int(self.pid_file(daemon).read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (FileNotFoundError, ProcessLookupError, ValueError):
            return None
        return pid if str(self.config(daemon)).encode() in cmdline else None

    def in_netns(self, pid: int) -> bool:
        """Whether process `pid` lives in our namespace (not in one whose name was removed
        and made again while the daemon kept the old one alive)."""
        try:
            mine, its = os.stat(f"/run/netns/{self.netns}"), os.stat(f"/proc/{pid}/ns/net")
        except (FileNotFoundError, ProcessLookupError):
            return False
        return (mine.st_dev, mine.st_ino) == (its.st_dev, its.st_ino)

    def vtysh(self, command: str) -> str:
        """One `show …` command's output, through the daemons' vty sockets."""
        out = subprocess.run(["vtysh", "--vty_socket", str(self.state_dir), "-c", command],
                             capture_output=True, text=True, timeout=30)
        if out.returncode != 0:
            raise RuntimeError(f"vtysh {command!r}: {out.stderr.strip() or out.stdout.strip()}")
        return out.stdout


def config_digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def ensure(daemons: Daemons, configs: dict[str, str]) -> list[str]:
    """Write each daemon's configuration and make it run with it: a daemon that is not
    running is started; one whose configuration changed is restarted (bgpd reads it at start
    only). Zebra first: bgpd connects to its socket; a zebra started anew restarts bgpd too,
    so bgpd's EVPN state is pushed to a zebra that knows it from the start. Returns a line
    per change."""
    changes: list[str] = []
    daemons.state_dir.mkdir(parents=True, exist_ok=True)
    zebra_started = False
    for daemon in DAEMONS:
        path = daemons.config(daemon)
        text = configs[daemon]
        old = path.read_text() if path.exists() else None
        if old != text:
            path.write_text(text)
            changes.append(f"wrote {path.name}")
        pid = daemons.pid(daemon)
        if (pid is not None and old is not None and old != text and daemon == "bgpd"
                and not zebra_started and daemons.in_netns(pid)):
            live = change_peers_live(daemons, old, text)  # no restart when only peers changed
            if live is not None:
                changes += live
                continue
        if pid is not None and (old != text or not daemons.in_netns(pid) or zebra_started):
            _stop(daemons, daemon, pid)
            why = ("configuration changed" if old != text else "zebra restarted"
                   if zebra_started else f"not in {daemons.netns}")
            changes.append(f"stopped {daemon} ({why})")
            pid = None
        if pid is None:
            _start(daemons, daemon)
            changes.append(f"started {daemon} in {daemons.netns}")
            zebra_started = zebra_started or daemon == "zebra"
    return changes


_NEIGHBOR = re.compile(r"^ neighbor (\S+) ")
_ROUTER = re.compile(r"^router bgp (\d+)$", re.M)


def _peers_of(text: str) -> tuple[set[str], str]:
    """bgpd.conf's peers, and the text without their lines."""
    peers, rest = set(), []
    for line in text.splitlines():
        m = _NEIGHBOR.match(line) or _NEIGHBOR.match(line[1:])
        if m:
            peers.add(m.group(1))
        else:
            rest.append(line)
    return peers, "\n".join(rest)


def peer_change_commands(old: str, new: str) -> list[str] | None:
    """The vtysh commands that take a running bgpd from configuration `old` to `new` when
    they differ in their peers only (added: their neighbor lines and activation; removed:
    `no neighbor`); None when something else changed."""
    (old_peers, old_rest), (new_peers, new_rest) = _peers_of(old), _peers_of(new)
    asn = _ROUTER.search(new)
    if old_rest != new_rest or asn is None:
        return None
    commands = ["configure terminal", f"router bgp {asn.group(1)}"]
    commands += [f"no neighbor {peer}" for peer in sorted(old_peers - new_peers)]
    lines = new.splitlines()
    commands += [line.strip() for line in lines
                 if (m := _NEIGHBOR.match(line)) is not None and m.group(1) not in old_peers]
    activate = [line.strip() for line in lines if line.startswith("  ")
                and (m := _NEIGHBOR.match(line[1:])) is not None
                and m.group(1) not in old_peers]
    if activate:
        commands += ["address-family l2vpn evpn", *activate, "exit-address-family"]
    return [*commands, "end"]


def change_peers_live(daemons: Daemons, old: str, new: str) -> list[str] | None:
    """When bgpd.conf changed in its peers only, tell the running bgpd through vtysh (its
    other sessions stay up; a restart would drop them all); None when that is not the only
    change or bgpd refused it (the caller restarts it)."""
    commands = peer_change_commands(old, new)
    if commands is None:
        return None
    args = ["vtysh", "--vty_socket", str(daemons.state_dir)]
    for command in commands:
        args += ["-c", command]
    out = subprocess.run(args, capture_output=True, text=True, timeout=30)
    if out.returncode != 0 or out.stdout.strip():  # vtysh prints what it did not take
        return None
    (old_peers, _), (new_peers, _) = _peers_of(old), _peers_of(new)
    return [f"bgpd peers changed live: +{sorted(new_peers - old_peers)} "
            f"-{sorted(old_peers - new_peers)}"]


def stop_all(daemons: Daemons) -> list[str]:
    """Stop both daemons (bgpd first), then remove their state directory."""
    changes = []
    for daemon in reversed(DAEMONS):
        pid = daemons.pid(daemon)
        if pid is not None:
            _stop(daemons, daemon, pid)
            changes.append(f"stopped {daemon}")
    if daemons.state_dir.exists():
        shutil.rmtree(daemons.state_dir, ignore_errors=True)
        changes.append(f"removed {daemons.state_dir}")
    return changes


def group_file_text(etc_group: str, vty_group: str = VTY_GROUP) -> str:
    """/etc/group with root added to `vty_group` (the group added when the system has none)."""
    lines, found = [], False
    for line in etc_group.splitlines():
        fields = line.split(":")
        if len(fields) == 4 and fields[0] == vty_group:
            found = True
            members = [m for m in fields[3].split(",") if m]
            if "root" not in members:
                fields[3] = ",".join([*members, "root"])
            line = ":".join(fields)
        lines.append(line)
    if not found:
        lines.append(f"{vty_group}:x:{_FALLBACK_VTY_GID}:root")
    return "\n".join(lines) + "\n"


def _start(daemons: Daemons, daemon: str) -> None:
    daemons.group_file.write_text(group_file_text(Path("/etc/group").read_text()))
    _forget(daemons, daemon)  # a dead daemon's files (its crash-log directory: killed)
    if daemon == "zebra":
        with contextlib.suppress(FileNotFoundError):
            daemons.zserv.unlink()
    launcher = subprocess.Popen(daemons.command(daemon), stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    daemons.launch_file(daemon).write_text(f"{launcher.pid}\n")  # exec'd all the way down
    _out, err = launcher.communicate(timeout=60)
    if launcher.returncode != 0:
        raise RuntimeError(f"{daemon} did not start: {err.strip()}")
    deadline = time.monotonic() + _START_WAIT_S
    while daemons.pid(daemon) is None or (daemon == "zebra" and not daemons.zserv.exists()):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{daemon} did not come up (see {daemons.log(daemon)})")
        time.sleep(0.05)


def _stop(daemons: Daemons, daemon: str, pid: int) -> None:
    """SIGTERM, then SIGKILL when it has not exited after a while; its crash-log directory
    in FRR_TMP_DIR goes with it."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + _STOP_WAIT_S
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        if not Path(f"/proc/{pid}").exists():
            break
    _forget(daemons, daemon)


def _forget(daemons: Daemons, daemon: str) -> None:
    """Remove a stopped daemon's pid files and its crash-log directory."""
    with contextlib.suppress(FileNotFoundError, ValueError):
        remove_crash_dir(daemon, int(daemons.launch_file(daemon).read_text().strip()))
    for path in (daemons.pid_file(daemon), daemons.launch_file(daemon)):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def remove_crash_dir(daemon: str, launch_pid: int) -> None:
    if FRR_TMP_DIR.is_dir():
        for path in FRR_TMP_DIR.glob(f"{daemon}*.{launch_pid}"):
            shutil.rmtree(path, ignore_errors=True)


def kill(pids: list[int]) -> None:
    """`clean`'s way (it knows only the namespace the daemons live in, not the data dir): kill
    them, then remove their files and crash-log directories, found through the state dir each
    one's command line names (read before the kill; removed after the exit, so a daemon
    cannot write to a directory being removed)."""
    found: list[tuple[int, str, Path | None]] = []
    for pid in pids:
        try:
            args = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
            found.append((pid, Path(args[0]).name, Path(args[args.index("-i") + 1]).parent))
        except (FileNotFoundError, ProcessLookupError, ValueError, IndexError):
            found.append((pid, "", None))
    for pid, _daemon, _state in found:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for pid, daemon, state_dir in found:
        deadline = time.monotonic() + _STOP_WAIT_S
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        if state_dir is not None and daemon in DAEMONS:
            _forget(Daemons(state_dir, ""), daemon)
