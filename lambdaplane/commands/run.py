"""`lambdaplane run --subnet SUBNET [--security-group SG …] [--ip ADDR] [--name NAME] -- CMD…`:
run any program in a namespace of its own with an interface from the subnet. The server makes
the interface and the namespace (it owns kernel objects); this process then starts CMD inside
that namespace with the terminal inherited, tells the server its pid, waits, releases the
interface and exits with CMD's status. If this process is killed, the server notices its pid
is gone and releases the interface itself.

`--host NAME` places the namespace on the host of the agent `lambdaplane agent --name NAME`
(issue 20: a resource on one host of a VPC spanning several), run there: the server records
the interface, that agent builds its namespace (this process waits for it) and releases it if
this process is killed; the server releases it if that agent's lease runs out."""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time

from ..net import ns
from ..net.netlink import Netlink
from ..net.processes import process_start
from .admin_client import ServerError, call

MS_SLAVE = 1 << 19  # <linux/mount.h>
BUILD_WAIT_S = 60.0  # an agent's VPC pass runs every few seconds


def main(endpoint: str, args: argparse.Namespace) -> int:
    argv = list(args.argv)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        print("lambdaplane run: no command given (lambdaplane run --subnet S -- CMD ...)",
              file=sys.stderr)
        return 2
    try:
        eni = call(endpoint, "POST", "run", {
            "region": args.region, "subnet": args.subnet, "security_groups": args.security_group,
            "ip": args.ip, "name": args.name, "argv": argv, "pid": os.getpid(),
            "host": args.host, "pid_start": process_start(os.getpid())})
    except ServerError as e:
        print(f"lambdaplane run: {e}", file=sys.stderr)
        return 1
    try:
        if not _wait_built(eni):
            print(f"lambdaplane run: host {args.host}'s agent did not build {eni['netns']} in "
                  f"{BUILD_WAIT_S:.0f} s", file=sys.stderr)
            return 1
        return _run_inside(endpoint, eni, argv)
    finally:
        try:
            call(endpoint, "DELETE", f"run/{eni['id']}")
        except ServerError as e:  # the server also releases it once it sees we are gone
            print(f"lambdaplane run: releasing {eni['id']}: {e}", file=sys.stderr)


def _wait_built(eni: dict) -> bool:
    """Wait until the interface's port is up with its address in its namespace (at once when
    the server built it)."""
    deadline = time.monotonic() + BUILD_WAIT_S
    while not _built(eni["netns"], eni["ifname"], eni["ip"]):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def _built(netns: str, ifname: str, ip: str | None) -> bool:
    try:
        with Netlink(netns) as nl:
            link = nl.link(ifname)
            return link is not None and link.up and \
                (not ip or ip in {a for a, _ in nl.addresses(ifname)})
    except OSError:  # the namespace is not there yet
        return False


def _run_inside(endpoint: str, eni: dict, argv: list[str]) -> int:
    netns_fd = os.open(ns.netns_path(eni["netns"]), os.O_RDONLY)
    env = dict(os.environ, LAMBDAPLANE_ENI=eni["id"], LAMBDAPLANE_IP=eni["ip"])
    ipv6 = eni.get("ipv6") or []  # a subnet with an IPv6 /64 gives one
    if ipv6:
        env["LAMBDAPLANE_IPV6"] = ipv6[0]
    ipv4 = f" {eni['ip']}/{eni['prefixlen']}" if eni["ip"] else ""  # none: IPv6-only
    print(f"lambdaplane run: {eni['id']}{ipv4}"
          f"{''.join(' ' + a for a in ipv6)} in {eni['subnet']} "
          f"({', '.join(g['id'] for g in eni['groups'])})", file=sys.stderr, flush=True)
    resolv = _resolv_conf_file(str(eni.get("resolv_conf") or ""))

    def enter() -> None:
        ns.setns(netns_fd)
        if resolv is not None:
            _bind_resolv_conf(resolv)

    try:
        proc = subprocess.Popen(argv, env=env, preexec_fn=enter)
    except OSError as e:
        print(f"lambdaplane run: {argv[0]}: {e.strerror}", file=sys.stderr)
        return 127
    finally:
        os.close(netns_fd)
        if resolv is not None:  # the program's bind mount holds the file from now on
            os.unlink(resolv)
    # The terminal's Ctrl-C reaches the program too (same process group); we wait for it to
    # decide. A SIGTERM to us is passed on.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: proc.send_signal(signal.SIGTERM))
    signal.signal(signal.SIGHUP, lambda *_: proc.send_signal(signal.SIGHUP))
    try:
        call(endpoint, "POST", f"run/{eni['id']}/process",
             {"pid": proc.pid, "start": process_start(proc.pid)})
    except ServerError as e:
        print(f"lambdaplane run: {e}", file=sys.stderr)
    code = proc.wait()
    return 128 - code if code < 0 else code


def _resolv_conf_file(text: str) -> str | None:
    """The VPC's resolv.conf in a file of our own, for the program's mount namespace."""
    if not text or not os.path.exists("/etc/resolv.conf"):
        return None
    fd, path = tempfile.mkstemp(prefix="lambdaplane-resolv-", suffix=".conf")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(path, 0o644)
    return path


def _bind_resolv_conf(path: str) -> None:
    """In the forked child: a mount namespace of its own, where /etc/resolv.conf is the
    VPC's (as `ip netns exec` does with /etc/netns/NAME/resolv.conf). A slave of the host's:
    what is unmounted there (a deleted namespace's name) goes here too; nothing goes back."""
    from ..sandbox.isolation import MS_BIND, MS_REC, mount
    ns.unshare(ns.CLONE_NEWNS)
    mount(None, "/", None, MS_REC | MS_SLAVE)
    mount(path, "/etc/resolv.conf", None, MS_BIND)
