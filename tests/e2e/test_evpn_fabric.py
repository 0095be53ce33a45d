"""The EVPN fabric (net/fabric.py, net/frr.py) across two namespace-hosts: each "host" is a
namespace made here, joined to the other by an underlay veth; in each, net/reconcile.py builds
two VPC namespaces with the same CIDR (as lambdaplane builds them: gateway on loopback, /32
ports with proxy ARP), and net/fabric.py joins them to the host's fabric namespace, where FRR
runs. Shown: a TCP echo server in a port on host A answers a client on host B through the
fabric, with the remote MAC and VTEP learned by FRR (extern_learn entries, not pushed by us);
two VPCs with one CIDR stay apart (different VNIs); a security group on host A decides traffic
from host B; killed daemons, a deleted VXLAN device and a replaced fabric namespace are repaired
by ensure(); removal (and `clean`) leaves nothing of either host."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from lambdaplane.cleanup import clean_instance, fresh_instance, leftovers
from lambdaplane.model.ec2 import FarEnd, SgRule
from lambdaplane.net import fabric, frr, ns, reconcile
from lambdaplane.net.names import Names, fabric_vxlan_ifname
from lambdaplane.net.security_groups import PortRules, render
from lambdaplane.net.vpc import EVPN_LINK, INTERNET_LINK, PortSpec, VpcNetSpec
from tests.e2e.vpc_support import wait_until

pytestmark = [pytest.mark.root,
              pytest.mark.skipif(not frr.installed(), reason="needs Debian's frr")]

CIDR, SUBNET = "10.60.0.0/16", "10.60.1.0/24"
SERVER_IP, CLIENT_IP, NEAR_CLIENT_IP = "10.60.1.10", "10.60.1.20", "10.60.1.30"
VPCS = ("vpc-0a0a0a0a0a0a0a0a1", "vpc-0b0b0b0b0b0b0b0b2")
ECHO_PORT = 7000
GROUP = "sg-0allow0allow0all"
RULES = [SgRule("r1", GROUP, False, "-1", -1, -1, "0.0.0.0/0", None),
         SgRule("r2", GROUP, True, "-1", -1, -1, "0.0.0.0/0", None)]

ECHO_SERVER = r"""
import socket, sys
label, port = sys.argv[1], int(sys.argv[2])
srv = socket.create_server(("0.0.0.0", port))
print("listening", flush=True)
while True:
    conn, peer = srv.accept()
    with conn:
        data = conn.recv(100)
        conn.sendall(f"{label} {peer[0]} ".encode() + data)
"""
ECHO_CLIENT = r"""
import socket, sys
with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3) as s:
    s.sendall(b"ping")
    print(s.recv(200).decode())
"""


@dataclass
class Host:
    names: Names
    netns: str  # the namespace standing in for the host
    underlay: str
    spec: fabric.FabricSpec


def _port(names: Names, eni_id: str, ip: str, mac: str) -> PortSpec:
    far = FarEnd(names.resource_netns(eni_id), "eth0", True)
    return PortSpec(eni_id, "e" + eni_id.removeprefix("eni-")[:14], ip, 24, "10.60.1.1", mac,
                    far, (GROUP,), ((ip, 24),))


def _vpc_spec(names: Names, vpc_id: str, ports: list[PortSpec],
              group_rules: list[SgRule] = RULES) -> VpcNetSpec:
    """A VPC namespace as net/vpc.py's desired_state makes it (security groups allowing all
    unless told, the fabric's port judged like a gateway link)."""
    rules = [PortRules(p.ifname, p.group_ids, p.ip) for p in ports]
    script = render(names.nft_table, rules, {GROUP: group_rules}, {GROUP: [p.ip for p in ports]},
                    gateway_links=(INTERNET_LINK, EVPN_LINK))
    return VpcNetSpec(vpc_id, names.vpc_netns(vpc_id), ("10.60.1.1",), tuple(ports),
                      names.nft_table, script)


def _vpcs_of(names: Names, host_no: int, group_rules: list[SgRule] = RULES
             ) -> list[VpcNetSpec]:
    specs = []
    for v, vpc_id in enumerate(VPCS):
        ports = [_port(names, f"eni-{host_no}{v}100000000000000", SERVER_IP if host_no == 0
                       else CLIENT_IP, f"02:00:00:00:{host_no}{v}:01")]
        if host_no == 0 and v == 0:
            ports.append(_port(names, "eni-00200000000000000", NEAR_CLIENT_IP,
                               "02:00:00:00:00:02"))
        specs.append(_vpc_spec(names, vpc_id, ports, group_rules))
    return specs


def _ip(netns: str, *args: str) -> None:
    subprocess.run(["ip", "-n", netns, *args], check=True, capture_output=True)


def _in(netns: str, *cmd: str, timeout: float = 10) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", netns, *cmd], capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture
def hosts(tmp_path: Path) -> Iterator[list[Host]]:
    made: list[Host] = []
    servers: list[subprocess.Popen[str]] = []
    try:
        for n, first in enumerate("fg"):
            names = Names(fresh_instance(first))
            netns, underlay = f"{names.netns_prefix}host", f"10.251.0.{n + 1}"
            ns.create(netns)
            _ip(netns, "link", "set", "lo", "up")
            spec = fabric.desired_fabric(names, tmp_path / f"data{n}", underlay,
                                         ["10.251.0.1", "10.251.0.2"],
                                         [(v, [SUBNET]) for v in VPCS], host_netns=netns)
            made.append(Host(names, netns, underlay, spec))
        a, b = made
        _ip(a.netns, "link", "add", f"{a.names.prefix}x", "type", "veth", "peer", "name",
            f"{b.names.prefix}x", "netns", b.netns)
        for me, other, addr, peer in ((a, b, "10.250.0.1", "10.250.0.2"),
                                      (b, a, "10.250.0.2", "10.250.0.1")):
            _ip(me.netns, "addr", "add", f"{addr}/30", "dev", f"{me.names.prefix}x")
            _ip(me.netns, "link", "set", f"{me.names.prefix}x", "up")
            _ip(me.netns, "route", "add", f"{other.underlay}/32", "via", peer)
        for n, host in enumerate(made):
            reconcile.reconcile(host.names, _vpcs_of(host.names, n))
        for v, vpc_id in enumerate(VPCS):  # an echo server in each VPC on host A
            proc = subprocess.Popen(
                ["ip", "netns", "exec", a.names.resource_netns(f"eni-0{v}100000000000000"),
                 sys.executable, "-c", ECHO_SERVER, vpc_id, str(ECHO_PORT)],
                stdout=subprocess.PIPE, text=True)
            servers.append(proc)
            assert proc.stdout is not None and proc.stdout.readline().strip() == "listening"
        yield made
    finally:
        for proc in servers:
            proc.kill()
            proc.wait()
        for host in made:
            fabric.remove(host.spec)
            reconcile.reconcile(host.names, [])
            ns.delete(host.netns)
            clean_instance(host.names.instance)


def _echo(host: Host, eni_id: str, dst: str = SERVER_IP) -> str:
    out = _in(host.names.resource_netns(eni_id), sys.executable, "-c", ECHO_CLIENT, dst,
              str(ECHO_PORT))
    return out.stdout.strip()


def _remote_macs(host: Host, vni: int) -> dict[str, dict[str, object]]:
    """The VXLAN device's FDB entries that point at another VTEP, by MAC."""
    rows = json.loads(subprocess.run(
        ["bridge", "-n", host.spec.netns, "-j", "fdb", "show", "dev", fabric_vxlan_ifname(vni)],
        capture_output=True, text=True, check=True).stdout or "[]")
    return {r["mac"]: r for r in rows if r.get("dst")}


def _mac(netns: str, ifname: str) -> str:
    rows = json.loads(subprocess.run(["ip", "-n", netns, "-j", "link", "show", ifname],
                                     capture_output=True, text=True, check=True).stdout)
    return str(rows[0]["address"])


def _converged(a: Host, b: Host) -> bool:
    """Each side has learned the other's EVPN port MAC (type-2 route) for every VNI."""
    for me, other in ((a, b), (b, a)):
        for vpc in me.spec.vpcs:
            mac = _mac(other.names.vpc_netns(vpc.vpc_id), EVPN_LINK)
            if mac not in _remote_macs(me, vpc.vni):
                return False
    return True


def _ensure_both(hosts: list[Host]) -> list[str]:
    return [c for h in hosts for c in fabric.ensure(h.spec)]


def test_a_vpc_spans_two_hosts_through_frr(hosts: list[Host]) -> None:
    a, b = hosts
    changes = _ensure_both(hosts)
    assert any("started bgpd" in c for c in changes)
    assert _ensure_both(hosts) == []  # idempotent: nothing to do the second time
    vnis = [v.vni for v in a.spec.vpcs]
    assert len(set(vnis)) == 2 and vnis == [v.vni for v in b.spec.vpcs]

    # First packet across the fabric: BGP may still be converging, so retry until it answers.
    started = time.monotonic()
    assert wait_until(lambda: _echo(b, "eni-10100000000000000").startswith(VPCS[0]),
                      timeout_s=90, interval_s=0.5), a.spec.daemons.vtysh("show bgp summary")
    print(f"\nfirst echo across the fabric after ensure(): {time.monotonic() - started:.2f} s")

    # The server sees the client's own address: routed, not translated.
    assert _echo(b, "eni-10100000000000000") == f"{VPCS[0]} {CLIENT_IP} ping"
    # Two VPCs with one CIDR stay apart: the same address answers per VPC.
    assert wait_until(lambda: _echo(b, "eni-11100000000000000").startswith(VPCS[1]),
                      timeout_s=60, interval_s=0.5)
    assert _echo(b, "eni-11100000000000000") == f"{VPCS[1]} {CLIENT_IP} ping"

    # FRR learned the remote MACs and VTEPs by itself: entries flagged extern_learn (zebra's),
    # pointing at the other host's underlay address; we never add FDB entries.
    assert wait_until(lambda: _converged(a, b), timeout_s=60, interval_s=0.5)
    for me, other in ((a, b), (b, a)):
        for vpc in me.spec.vpcs:
            entry = _remote_macs(me, vpc.vni)[_mac(other.names.vpc_netns(vpc.vpc_id),
                                                   EVPN_LINK)]
            assert entry["dst"] == other.underlay
            assert "extern_learn" in entry.get("flags", [])  # type: ignore[operator]
        evpn = me.spec.daemons.vtysh("show evpn vni")
        assert all(str(v) in evpn for v in vnis)

    _measure_rtt(a, b)


RTT_CLIENT = r"""
import socket, statistics, sys, time
times = []
for _ in range(int(sys.argv[3])):
    t = time.perf_counter()
    with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3) as s:
        s.sendall(b"x")
        s.recv(200)
    times.append((time.perf_counter() - t) * 1000)
print(f"first {times[0]:.2f} ms, median {statistics.median(times):.2f} ms")
"""


def test_a_security_group_decides_across_hosts(hosts: list[Host]) -> None:
    """Host A's VPC namespace judges traffic from host B's by the receiving port's group:
    without an ingress rule the server is unreachable from the other host; with it, reached."""
    a, b = hosts
    _ensure_both(hosts)
    assert wait_until(lambda: _echo(b, "eni-10100000000000000").startswith(VPCS[0]),
                      timeout_s=90, interval_s=0.5)
    egress_only = [r for r in RULES if r.egress]
    assert "applied security groups in " + a.names.vpc_netns(VPCS[0]) in \
        reconcile.reconcile(a.names, _vpcs_of(a.names, 0, egress_only))
    assert _echo(b, "eni-10100000000000000") == ""  # dropped by A's ingress: no answer
    reconcile.reconcile(a.names, _vpcs_of(a.names, 0))
    assert wait_until(lambda: _echo(b, "eni-10100000000000000").startswith(VPCS[0]),
                      timeout_s=30, interval_s=0.5)
    assert fabric.ensure(a.spec) == []  # the VPC reconcile left the EVPN port alone


def _measure_rtt(a: Host, b: Host) -> None:
    """Printed, never asserted: a TCP connect + request + reply, the first one with every
    neighbour cache on the way empty (ARP across the fabric), then the median of 200."""
    for label, host, eni in (("across the fabric", b, "eni-10100000000000000"),
                             ("same host", a, "eni-00200000000000000")):
        for netns in (host.names.resource_netns(eni), a.names.resource_netns(
                "eni-00100000000000000"), a.names.vpc_netns(VPCS[0]), b.names.vpc_netns(VPCS[0])):
            _ip(netns, "neigh", "flush", "all")
        out = _in(host.names.resource_netns(eni), sys.executable, "-c", RTT_CLIENT, SERVER_IP,
                  str(ECHO_PORT), "200", timeout=60)
        print(f"TCP request {label}: {out.stdout.strip()} {out.stderr.strip()}")


def test_killed_daemons_and_lost_devices_are_repaired(hosts: list[Host]) -> None:
    a, b = hosts
    _ensure_both(hosts)
    assert wait_until(lambda: _echo(b, "eni-10100000000000000").startswith(VPCS[0]),
                      timeout_s=90, interval_s=0.5)
    daemons = b.spec.daemons
    for daemon in ("bgpd", "zebra"):
        pid = daemons.pid(daemon)
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        assert wait_until(lambda: not Path(f"/proc/{pid}").exists(), timeout_s=10)
    vni = b.spec.vpcs[0].vni
    _ip(b.spec.netns, "link", "del", fabric_vxlan_ifname(vni))
    assert daemons.pid("bgpd") is None and daemons.pid("zebra") is None

    killed_dirs = _crash_dirs([b])
    changes = fabric.ensure(b.spec)
    assert not [d for d in killed_dirs if d.exists()]  # the killed daemons' crash-log dirs
    assert "started zebra in " + b.spec.netns in changes
    assert "started bgpd in " + b.spec.netns in changes
    assert any(fabric_vxlan_ifname(vni) in c for c in changes)
    assert wait_until(lambda: _echo(b, "eni-10100000000000000").startswith(VPCS[0]),
                      timeout_s=90, interval_s=0.5)
    assert wait_until(lambda: _converged(a, b), timeout_s=60, interval_s=0.5)

    # The fabric namespace's name removed while the daemons keep the old one alive: a new
    # namespace, the daemons moved to it, the underlay link and EVPN ports made anew.
    old_pids = [daemons.pid(d) for d in frr.DAEMONS]
    ns.delete(b.spec.netns)
    changes = fabric.ensure(b.spec)
    assert f"created netns {b.spec.netns}" in changes
    assert "stopped bgpd (not in " + b.spec.netns + ")" in changes \
        or "stopped bgpd (zebra restarted)" in changes
    assert wait_until(lambda: not [p for p in old_pids if Path(f"/proc/{p}").exists()],
                      timeout_s=10)
    assert wait_until(lambda: _echo(b, "eni-10100000000000000").startswith(VPCS[0]),
                      timeout_s=90, interval_s=0.5)
    assert fabric.ensure(b.spec) == []

    # zebra alone killed: started again, and bgpd with it
    zebra = daemons.pid("zebra")
    assert zebra is not None
    os.kill(zebra, signal.SIGKILL)
    assert wait_until(lambda: not Path(f"/proc/{zebra}").exists(), timeout_s=10)
    changes = fabric.ensure(b.spec)
    assert "started zebra in " + b.spec.netns in changes
    assert "stopped bgpd (zebra restarted)" in changes
    assert wait_until(lambda: _echo(b, "eni-10100000000000000").startswith(VPCS[0]),
                      timeout_s=90, interval_s=0.5)
    assert wait_until(lambda: _converged(a, b), timeout_s=60, interval_s=0.5)


def _crash_dirs(hosts: list[Host]) -> list[Path]:
    """FRR's per-process directories in /var/tmp/frr, named after the pid each daemon had
    before it went to the background."""
    return [frr.FRR_TMP_DIR / f"{d}.{h.spec.daemons.launch_file(d).read_text().strip()}"
            for h in hosts for d in frr.DAEMONS]


def test_removal_leaves_nothing(hosts: list[Host]) -> None:
    a, b = hosts
    _ensure_both(hosts)
    pids = [h.spec.daemons.pid(d) for h in hosts for d in frr.DAEMONS]
    assert all(pids)
    crash_dirs = _crash_dirs(hosts)
    assert all(d.is_dir() for d in crash_dirs)  # FRR's own, while the daemons run
    for host in hosts:
        fabric.remove(host.spec)
        assert fabric.remove(host.spec) == []  # idempotent
        assert not ns.exists(host.spec.netns)
        assert not host.spec.state_dir.exists()
        assert not ns.exists(host.names.vpc_netns(VPCS[0])) or \
            EVPN_LINK not in _in(host.names.vpc_netns(VPCS[0]), "ip", "link").stdout
    assert not [p for p in pids if Path(f"/proc/{p}").exists()]
    assert not [d for d in crash_dirs if d.exists()]
    for host in hosts:
        reconcile.reconcile(host.names, [])
        ns.delete(host.netns)
        assert leftovers(host.names.instance) == []


def test_clean_kills_the_daemons_of_a_host_without_its_data_dir(hosts: list[Host]) -> None:
    """`lambdaplane clean` (cleanup.clean_instance) knows only the instance: it finds the FRR
    daemons by their namespace, not by their pid files."""
    a, b = hosts
    _ensure_both(hosts)
    pids = [b.spec.daemons.pid(d) for d in frr.DAEMONS]
    assert all(pids)
    crash_dirs = _crash_dirs([b])
    done = clean_instance(b.names.instance)
    assert any(f"killed process {pids[0]}" in line for line in done)
    assert wait_until(lambda: not [p for p in pids if Path(f"/proc/{p}").exists()], timeout_s=10)
    assert leftovers(b.names.instance) == []
    assert not [d for d in crash_dirs if d.exists()]
    assert a.spec.daemons.pid("bgpd") is not None  # the other host's are not touched
