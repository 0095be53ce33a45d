"""The eBPF fast path on real namespaces: a sandbox reaches a far namespace that the worker has
no route to, only through bpf_redirect_peer, and the worker's IP stack never sees the packets;
a deleted entry, a foreign veth or a forged source get no redirect; the Runtime API gateway
stays local; the map round-trips; re-attaching replaces the program."""
from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from lambdaplane.cleanup import leftovers
from lambdaplane.net import bpf, fastpath, ns
from lambdaplane.net.fastpath import FastPath
from lambdaplane.net.hyperplane import TRANSIT_WORKER_ADDR
from lambdaplane.net.names import Names
from lambdaplane.net.netlink import Netlink
from lambdaplane.net.worker import GATEWAY

from .worker_fixtures import connects, socket_in, unique_names

pytestmark = pytest.mark.root

SANDBOX_ADDRS = ("100.64.0.2", "100.64.0.3")  # slots 0 and 1
SERVER = "10.9.0.20"  # in the far namespace only; the worker has no route to it
PORT = 8080


@dataclass
class Topology:
    names: Names
    far: str  # the far namespace (a VPC's, in production)
    sandbox_ifindex: tuple[int, int]  # worker ends of the sandbox veths of slots 0 and 1
    transit_ifindex: int  # worker end of transit 1
    fast: FastPath

    @property
    def worker(self) -> str:
        return self.names.worker_netns

    def sandbox(self, slot: int) -> str:
        return self.names.sandbox_netns(slot)


def _build(names: Names, far: str) -> tuple[tuple[int, int], int]:
    worker = names.worker_netns
    for netns in (worker, far, *(names.sandbox_netns(s) for s in (0, 1))):
        ns.create(netns)
        with ns.entered(netns):  # quiet links: no router solicitations, no DAD
            ns.set_sysctl("net.ipv6.conf.default.disable_ipv6", "1")
    with ns.entered(worker):
        ns.set_sysctl("net.ipv4.ip_forward", "1")
    sandbox_ifindex = []
    with Netlink(worker) as wl:
        wl.set_up("lo")
        for slot, address in enumerate(SANDBOX_ADDRS):
            veth = names.sandbox_veth(slot)
            sandbox_ifindex.append(wl.add_veth(veth, "eth0", peer_netns=names.sandbox_netns(slot)))
            wl.add_address(veth, GATEWAY, 32)
            wl.set_up(veth)
            wl.add_route(f"{address}/32", veth, scope_link=True)
            with Netlink(names.sandbox_netns(slot)) as sl:
                sl.set_up("lo")
                sl.add_address("eth0", address, 32)
                sl.set_up("eth0")
                sl.add_route(f"{GATEWAY}/32", "eth0", scope_link=True)
                sl.add_default_route(GATEWAY, "eth0")
        transit = names.transit_veth(1)
        transit_ifindex = wl.add_veth(transit, "t1", peer_netns=far)
        wl.add_address(transit, TRANSIT_WORKER_ADDR, 32)
        wl.set_up(transit)
    with Netlink(far) as fl:
        fl.set_up("lo")
        fl.add_address("lo", SERVER, 32)
        fl.set_up("t1")
        fl.add_route(f"{TRANSIT_WORKER_ADDR}/32", "t1", scope_link=True)
        fl.add_route("100.64.0.0/10", "t1", gateway=TRANSIT_WORKER_ADDR)
    return (sandbox_ifindex[0], sandbox_ifindex[1]), transit_ifindex


@pytest.fixture
def topology() -> Iterator[Topology]:
    names = unique_names()
    far = names.vpc_netns("far")
    spaces = [names.worker_netns, far, names.sandbox_netns(0), names.sandbox_netns(1)]
    fast: FastPath | None = None
    try:
        sandbox_ifindex, transit_ifindex = _build(names, far)
        fast = FastPath.load()
        with Netlink(names.worker_netns) as wl:
            for link in (*sandbox_ifindex, transit_ifindex):
                fast.attach(wl, link)
        yield Topology(names, far, sandbox_ifindex, transit_ifindex, fast)
    finally:
        if fast is not None:
            fast.close()
        for netns in spaces:  # their links (and tc filters) go with them
            ns.delete(netns)
        assert leftovers(names.instance) == []


# measuring ----------------------------------------------------------------------------------
def _ip_counters(netns: str) -> dict[str, int]:
    """The namespace's `Ip:` counters of /proc/net/snmp (InReceives, ForwDatagrams, ...)."""
    with ns.entered(netns), open("/proc/thread-self/net/snmp") as f:
        header, values = [line.split()[1:] for line in f if line.startswith("Ip:")][:2]
    return dict(zip(header, map(int, values)))


def _far_ip_packets(t: Topology) -> int:
    """IPv4 packets the far namespace received (ARP and IPv6 chatter do not count)."""
    return _ip_counters(t.far)["InReceives"]


class EchoServer:
    """Answers each connection on (address, port) in `netns` with b"pong:" + what it got."""

    def __init__(self, netns: str, address: str, port: int) -> None:
        self.sock = socket_in(netns)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((address, port))
        self.sock.listen()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:  # closed
                return
            with conn:
                conn.settimeout(2.0)
                conn.sendall(b"pong:" + conn.recv(64))

    def close(self) -> None:
        self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self.thread.join(timeout=2.0)


def _exchange(netns: str, address: str, port: int, timeout_s: float = 1.0) -> bytes | None:
    """What an echo server answers to b"ping" from `netns`; None if it cannot be reached."""
    sock = socket_in(netns)
    try:
        sock.settimeout(timeout_s)
        sock.connect((address, port))
        sock.sendall(b"ping")
        return sock.recv(64)
    except OSError:
        return None
    finally:
        sock.close()


@pytest.fixture
def server(topology: Topology) -> Iterator[EchoServer]:
    echo = EchoServer(topology.far, SERVER, PORT)
    try:
        yield echo
    finally:
        echo.close()


# tests --------------------------------------------------------------------------------------
def test_steered_sandbox_reaches_far_namespace_past_the_worker_stack(
        topology: Topology, server: EchoServer) -> None:
    t = topology
    assert _exchange(t.sandbox(0), SERVER, PORT) is None, "the worker must not route there"
    t.fast.set(SANDBOX_ADDRS[0], t.sandbox_ifindex[0], t.transit_ifindex)
    before, far_before = _ip_counters(t.worker), _far_ip_packets(t)

    assert _exchange(t.sandbox(0), SERVER, PORT) == b"pong:ping"

    after = _ip_counters(t.worker)
    assert after["InReceives"] == before["InReceives"], "worker IP saw the flow"
    assert after["ForwDatagrams"] == before["ForwDatagrams"]
    assert _far_ip_packets(t) - far_before >= 4  # SYN, ACK, data, FIN at least


def test_deleted_entry_is_no_longer_redirected(topology: Topology, server: EchoServer) -> None:
    t = topology
    t.fast.set(SANDBOX_ADDRS[0], t.sandbox_ifindex[0], t.transit_ifindex)
    assert _exchange(t.sandbox(0), SERVER, PORT) == b"pong:ping"
    t.fast.delete(SANDBOX_ADDRS[0])
    t.fast.delete(SANDBOX_ADDRS[0])  # idempotent
    assert _exchange(t.sandbox(0), SERVER, PORT) is None


def test_only_the_sandbox_own_veth_is_redirected(topology: Topology, server: EchoServer) -> None:
    t = topology
    far_before = _far_ip_packets(t)
    # an entry naming another sandbox's veth: slot 0's packets do not match it
    t.fast.set(SANDBOX_ADDRS[0], t.sandbox_ifindex[1], t.transit_ifindex)
    assert _exchange(t.sandbox(0), SERVER, PORT, timeout_s=0.5) is None
    # a correct entry, and slot 1 forging slot 0's address
    t.fast.set(SANDBOX_ADDRS[0], t.sandbox_ifindex[0], t.transit_ifindex)
    assert not connects(t.sandbox(1), SERVER, PORT, source=SANDBOX_ADDRS[0])
    assert _far_ip_packets(t) == far_before, "a spoofed packet reached the far side"
    assert _exchange(t.sandbox(0), SERVER, PORT) == b"pong:ping"


def test_gateway_traffic_stays_in_the_worker(topology: Topology, server: EchoServer) -> None:
    t = topology
    t.fast.set(SANDBOX_ADDRS[0], t.sandbox_ifindex[0], t.transit_ifindex)
    runtime_api = EchoServer(t.worker, GATEWAY, 9001)
    try:
        before, far_before = _ip_counters(t.worker), _far_ip_packets(t)
        assert _exchange(t.sandbox(0), GATEWAY, 9001) == b"pong:ping"
        assert _ip_counters(t.worker)["InReceives"] > before["InReceives"]
        assert _far_ip_packets(t) == far_before
    finally:
        runtime_api.close()


def test_reattaching_replaces_the_program(topology: Topology) -> None:
    t = topology
    second = FastPath.load()
    try:
        with Netlink(t.worker) as wl:
            assert wl.ingress_bpf_ids(t.transit_ifindex) == [bpf.prog_id(t.fast.prog_fd)]
            second.attach(wl, t.transit_ifindex)
            assert wl.ingress_bpf_ids(t.transit_ifindex) == [bpf.prog_id(second.prog_fd)]
            wl.detach_ingress_bpf(t.transit_ifindex)
            wl.detach_ingress_bpf(t.transit_ifindex)  # idempotent
            assert wl.ingress_bpf_ids(t.transit_ifindex) == []
    finally:
        second.close()


def test_map_round_trips() -> None:
    fast = FastPath.load()
    try:
        assert fast.entries() == {}
        fast.set("100.64.0.2", 11, 21)
        fast.set("100.64.3.7", 12, 22)
        fast.set("100.64.0.2", 13, 23)  # replaces
        assert fast.entries() == {"100.64.0.2": (13, 23), "100.64.3.7": (12, 22)}
        fast.delete("100.64.0.2")
        fast.delete("100.64.0.2")
        assert fast.entries() == {"100.64.3.7": (12, 22)}
    finally:
        fast.close()


def test_shared_is_one_per_instance_until_dropped() -> None:
    names = unique_names()
    first = fastpath.shared(names)
    try:
        assert first is not None and fastpath.shared(names) is first
        first.set("100.64.0.2", 1, 2)
        fastpath.drop(names)
        fastpath.drop(names)  # idempotent
        second = fastpath.shared(names)
        assert second is not None and second is not first and second.entries() == {}
    finally:
        fastpath.drop(names)


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs setpriv (util-linux)")
def test_without_privilege_bpf_is_unavailable_and_shared_is_none() -> None:
    script = ("import sys\n"
              "from lambdaplane.net import bpf, fastpath\n"
              "from lambdaplane.net.names import Names\n"
              "try:\n"
              "    fastpath.FastPath.load()\n"
              "    sys.exit('loaded without privilege')\n"
              "except bpf.BpfUnavailable:\n"
              "    pass\n"
              "assert fastpath.shared(Names('x')) is None\n"
              "assert fastpath.shared(Names('x')) is None\n")
    done = subprocess.run(["setpriv", "--inh-caps=-all", "--bounding-set=-all",
                           sys.executable, "-c", script],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("fast path unavailable") == 1  # warned once
