"""The Hyperplane data path on real namespaces: the real worker (net/worker.py) and pooled
sandboxes (sandbox/pool.py), planes from net/hyperplane.py, and a stand-in VPC per plane (a
routed netns: the ENI's port, whose peer is the ENI's transit in the worker, and a resource
netns running a TCP server).

Two VPCs deliberately have the same CIDR and the same addresses; only the server's label tells
them apart. Run with -s to see the latency numbers."""
from __future__ import annotations

import contextlib
import dataclasses
import socket
import statistics
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest

from lambdaplane.cleanup import fresh_instance, clean_instance, leftovers
from lambdaplane.net import fastpath, nft, ns
from lambdaplane.net import hyperplane as hp
from lambdaplane.net.names import Names
from lambdaplane.net.netlink import Netlink
from lambdaplane.net.worker import GATEWAY, WorkerNet
from lambdaplane.sandbox.pool import Sandbox, build_sandbox

pytestmark = pytest.mark.root

ENI_ADDR, GW, RESOURCE, PORT = "10.0.1.10", "10.0.1.1", "10.0.1.20", 8080
IP_TRANSPARENT = 19  # <linux/in.h>: send from a non-local source address


class Server:
    """A TCP server whose socket lives in `netns`; answers '<label> <peer address>' and keeps
    the connection open until the client closes it."""

    def __init__(self, netns: str, label: str, host: str = "0.0.0.0", port: int = PORT) -> None:
        self.label = label
        with ns.entered(netns):
            self.sock = socket.create_server((host, port))
        self.peers: list[str] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, (peer, _port) = self.sock.accept()
            except OSError:
                return
            self.peers.append(peer)
            conn.sendall(f"{self.label} {peer}\n".encode())
            threading.Thread(target=self._drain, args=(conn,), daemon=True).start()

    @staticmethod
    def _drain(conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):  # a client closing unread resets
            while conn.recv(1024):
                pass

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self.thread.join(2)


def connect(netns: str, host: str, port: int = PORT, timeout: float = 2.0) -> socket.socket:
    with ns.entered(netns):
        sock = socket.socket()
    sock.settimeout(timeout)
    try:
        sock.connect((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


def ask(netns: str, host: str = RESOURCE) -> str:
    with connect(netns, host) as sock:
        return sock.recv(100).decode().strip()


def cannot_connect(netns: str, host: str, port: int = PORT) -> bool:
    try:
        connect(netns, host, port, timeout=0.5).close()
    except OSError:
        return True
    return False


@dataclasses.dataclass
class Vpc:
    vpc_id: str
    eni: hp.HyperplaneEni
    netns: str
    resource_netns: str
    server: Server | None = None


@dataclasses.dataclass
class Env:
    names: Names
    boxes: list[Sandbox]
    vpcs: dict[str, Vpc]


def build_vpc_standin(names: Names, vpc_id: str, n: int, label: str) -> Vpc:
    """What net/vpc.py and net/reconcile.py do in production, reduced: a routed VPC netns whose
    port p<n> is the peer of the worker's transit lp<i>t<n>, with the subnet gateway on every
    port."""
    eni = hp.HyperplaneEni(n, vpc_id, ENI_ADDR, GW, f"p{n}")
    vpc = Vpc(vpc_id, eni, names.vpc_netns(vpc_id),
              names.resource_netns(f"r{n}"))
    ns.create(vpc.netns)
    ns.create(vpc.resource_netns)
    with ns.entered(vpc.netns):
        ns.set_sysctl("net.ipv4.ip_forward", "1")
    with Netlink(vpc.netns) as v:
        v.add_veth(f"p{n}", names.transit_veth(n), peer_netns=names.worker_netns)
        v.add_veth("q0", "eth0", peer_netns=vpc.resource_netns)
    with ns.entered(vpc.netns):
        for port in (f"p{n}", "q0"):  # the gateway answers ARP for the whole subnet
            ns.set_sysctl(f"net.ipv4.conf.{port}.proxy_arp", "1")
    with Netlink(vpc.netns) as v:
        for port, host in ((f"p{n}", ENI_ADDR), ("q0", RESOURCE)):
            v.add_address(port, GW, 32)
            v.set_up(port)
            v.add_route(f"{host}/32", port, scope_link=True)
        # a hostile VPC: route the sandboxes' range at the ENI, to prove the plane refuses it
        v.add_route("100.64.0.0/10", f"p{n}", gateway=ENI_ADDR)
    with Netlink(vpc.resource_netns) as r:
        r.set_up("lo")
        r.add_address("eth0", RESOURCE, 24)
        r.set_up("eth0")
        r.add_route("0.0.0.0/0", "eth0", gateway=GW)
    vpc.server = Server(vpc.resource_netns, label)
    return vpc


@contextlib.contextmanager
def environment(sandboxes: int = 3) -> Iterator[Env]:
    names = Names(fresh_instance("t"))
    worker = WorkerNet(names, uplink=False)
    env = Env(names, [], {})
    try:
        worker.setup()
        with Netlink(names.worker_netns) as wl:
            env.boxes = [build_sandbox(names, wl, slot) for slot in range(sandboxes)]
        hp.ensure_steering(names)
        for vpc_id, n, label in (("vpc-a", 1, "A"), ("vpc-b", 2, "B")):
            env.vpcs[vpc_id] = build_vpc_standin(names, vpc_id, n, label)
            hp.ensure_vpc_plane(names, vpc_id)
            hp.ensure_eni(names, env.vpcs[vpc_id].eni)
        yield env
    finally:
        for vpc in env.vpcs.values():
            if vpc.server:
                vpc.server.close()
        hp.remove_all(names)
        for vpc in env.vpcs.values():
            ns.delete(vpc.netns)
            ns.delete(vpc.resource_netns)
        worker.teardown()
        clean_instance(names.instance)
        assert leftovers(names.instance) == []


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    with environment() as e:
        yield e


def _settled_counters(names: Names, vpc_id: str, n: int) -> hp.EniCounters:
    """ENI n's counters once packets still in flight (a close's last ACKs) have passed."""
    last = hp.eni_counters(names, vpc_id, n)
    for _ in range(50):
        time.sleep(0.1)
        now = hp.eni_counters(names, vpc_id, n)
        if now == last:
            break
        last = now
    return last


def test_steered_sandboxes_reach_vpc_as_the_eni_address(env: Env) -> None:
    a, b = env.vpcs["vpc-a"], env.vpcs["vpc-b"]
    box0, box1 = env.boxes[0], env.boxes[1]
    hp.attach(env.names, box0.address, a.eni.n)
    hp.attach(env.names, box1.address, a.eni.n)
    try:
        before = hp.eni_counters(env.names, "vpc-a", a.eni.n)
        held = [connect(box.netns, RESOURCE) for box in (box0, box1, box0)]
        try:
            answers = {s.recv(100).decode().strip() for s in held}
            assert answers == {f"A {ENI_ADDR}"}  # three flows, two sandboxes, one address
            assert hp.flow_count(env.names, "vpc-a", ENI_ADDR) == 3
            assert hp.flow_count(env.names, "vpc-b", ENI_ADDR) == 0
        finally:
            for s in held:
                s.close()
        after = _settled_counters(env.names, "vpc-a", a.eni.n)  # the closes' FIN/ACKs
        assert after.tx_packets > before.tx_packets and after.rx_packets > before.rx_packets
        assert after.tx_bytes > before.tx_bytes
        hp.ensure_eni(env.names, a.eni)  # a repair rewrites the chains, not the counts
        assert hp.eni_counters(env.names, "vpc-a", a.eni.n) == after
        assert b.server is not None and a.server is not None
        assert b.server.peers == [] and set(a.server.peers) == {ENI_ADDR}
        assert hp.list_attachments(env.names) == {box0.address: 1, box1.address: 1}
    finally:
        hp.detach(env.names, box0.address)
        hp.detach(env.names, box1.address)


def test_same_cidr_in_two_vpcs_stays_apart(env: Env) -> None:
    box0, box2 = env.boxes[0], env.boxes[2]
    hp.attach(env.names, box0.address, 1)
    hp.attach(env.names, box2.address, 2)
    try:
        assert ask(box0.netns) == f"A {ENI_ADDR}"
        assert ask(box2.netns) == f"B {ENI_ADDR}"
        hp.attach(env.names, box0.address, 2)  # re-steer: replaces the element
        assert ask(box0.netns) == f"B {ENI_ADDR}"
    finally:
        hp.detach(env.names, box0.address)
        hp.detach(env.names, box2.address)


def _forwarded_by_worker(names: Names) -> int:
    """IP datagrams the worker's own stack has forwarded (Ip: ForwDatagrams)."""
    with ns.entered(names.worker_netns), open("/proc/thread-self/net/snmp") as f:
        header, values = [line.split() for line in f if line.startswith("Ip:")][:2]
    return int(values[header.index("ForwDatagrams")])


def test_steered_flows_skip_the_worker_and_fall_back_to_its_routes(env: Env) -> None:
    """The fast path (net/fastpath.py) carries a steered sandbox's packets between its veth
    and the ENI's transit without the worker's IP stack; without its entry (a kernel without
    BPF) the marked route takes them to the same ENI, and reconcile puts the entry back."""
    names, box = env.names, env.boxes[0]
    fast = fastpath.loaded(names)
    assert fast is not None
    hp.attach(names, box.address, 1)
    try:
        before = _forwarded_by_worker(names)
        assert ask(box.netns) == f"A {ENI_ADDR}"
        assert _forwarded_by_worker(names) == before
        fast.delete(box.address)
        assert ask(box.netns) == f"A {ENI_ADDR}"
        assert _forwarded_by_worker(names) > before
        enis = [v.eni for v in env.vpcs.values()]
        assert hp.reconcile(names, enis, {box.address: 1}) == [f"fast path: {box.address}"]
        assert box.address in fast.entries()
    finally:
        hp.detach(names, box.address)
    assert box.address not in fast.entries()


def test_unsteered_and_detached_sandboxes_cannot_reach_the_vpc(env: Env) -> None:
    box = env.boxes[1]
    assert cannot_connect(box.netns, RESOURCE)
    hp.attach(env.names, box.address, 1)
    held = connect(box.netns, RESOURCE)
    hp.detach(env.names, box.address)
    hp.detach(env.names, box.address)  # idempotent
    try:
        assert cannot_connect(box.netns, RESOURCE)
        assert box.address not in hp.list_attachments(env.names)
    finally:
        held.close()


def test_a_sandbox_cannot_borrow_a_steered_sandbox_address(env: Env) -> None:
    """Steering keys on the source address, so forging a steered sandbox's address would be
    a way into someone else's VPC: the worker's anti-spoofing must stop it. UDP, because a
    forged TCP SYN is answered to the real owner and fails either way."""
    a = env.vpcs["vpc-a"]
    steered, forger = env.boxes[0], env.boxes[1]
    hp.attach(env.names, steered.address, 1)
    with ns.entered(a.resource_netns):
        inbox = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with ns.entered(forger.netns):
        forged = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with ns.entered(steered.netns):
        honest = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        inbox.bind(("0.0.0.0", 5353))
        inbox.settimeout(0.5)
        forged.setsockopt(socket.SOL_IP, IP_TRANSPARENT, 1)
        forged.bind((steered.address, 4000))
        forged.sendto(b"forged", (RESOURCE, 5353))
        with pytest.raises(TimeoutError):
            inbox.recvfrom(100)
        honest.sendto(b"honest", (RESOURCE, 5353))  # the real owner gets through, NATed
        data, (source, _port) = inbox.recvfrom(100)
        assert (data, source) == (b"honest", ENI_ADDR)
    finally:
        for sock in (inbox, forged, honest):
            sock.close()
        hp.detach(env.names, steered.address)


def test_vpc_cannot_open_a_connection_to_a_sandbox(env: Env) -> None:
    a = env.vpcs["vpc-a"]
    box = env.boxes[0]
    hp.attach(env.names, box.address, 1)
    listener = Server(box.netns, "sandbox", host=box.address, port=7000)
    try:
        assert ask(box.netns) == f"A {ENI_ADDR}"  # the path works outbound
        dropped = hp.eni_counters(env.names, "vpc-a", 1).dropped_packets
        # the hostile VPC routes 100.64.0.0/10 at the ENI; the plane drops the new flow
        assert cannot_connect(a.resource_netns, box.address, 7000)
        assert hp.eni_counters(env.names, "vpc-a", 1).dropped_packets > dropped
        # the ENI address itself serves nothing either
        assert cannot_connect(a.resource_netns, ENI_ADDR, 7000)
        assert listener.peers == []
    finally:
        listener.close()
        hp.detach(env.names, box.address)


def _snapshot(env: Env) -> dict[str, str]:
    """Everything the data path has in the kernel, as text (counters excluded)."""
    out: dict[str, str] = {}
    spaces = [env.names.worker_netns] + [vpc.netns for vpc in env.vpcs.values()]
    for netns in spaces:
        for cmd in (["ip", "-4", "rule"], ["ip", "-4", "route", "show", "table", "all"],
                    ["ip", "-4", "addr"], ["nft", "list", "ruleset"]):
            text = subprocess.run(["ip", "netns", "exec", netns, *cmd], check=True,
                                  capture_output=True, text=True).stdout
            lines = [line for line in text.splitlines()
                     if "packets" not in line and "valid_lft" not in line]
            out[f"{netns} {' '.join(cmd)}"] = "\n".join(lines)
    return out


def test_reconcile_converges_and_a_second_run_changes_nothing(env: Env) -> None:
    names = env.names
    enis = [v.eni for v in env.vpcs.values()]
    wanted = {env.boxes[0].address: 1, env.boxes[2].address: 2}
    # drift: a stray attachment, a wrongly steered sandbox, a broken ENI (route gone), an ENI
    # whose transit runs another server's fast-path program
    hp.attach(names, "100.64.9.9", 1)
    hp.attach(names, env.boxes[2].address, 1)
    with Netlink(names.worker_netns) as wl:
        wl.delete_route("0.0.0.0/0", table=hp.out_table(1))
        other = fastpath.FastPath.load()
        try:
            other.attach(wl, names.transit_veth(2))
        finally:
            other.close()
    assert hp.eni_state(names, "vpc-a", 1) is None and hp.eni_state(names, "vpc-b", 2) is None
    try:
        first = hp.reconcile(names, enis, wanted)
        assert "eni 1" in first and "eni 2" in first
        assert "detached 100.64.9.9" in first
        assert hp.list_attachments(names) == wanted
        assert hp.eni_state(names, "vpc-a", 1) == env.vpcs["vpc-a"].eni
        before = _snapshot(env)
        assert hp.reconcile(names, enis, wanted) == []
        assert _snapshot(env) == before
        assert ask(env.boxes[0].netns) == f"A {ENI_ADDR}"
        assert ask(env.boxes[2].netns) == f"B {ENI_ADDR}"
    finally:
        hp.reconcile(names, enis, {})
    assert hp.list_attachments(names) == {}


def test_measure_attach_and_connect_latency(env: Env) -> None:
    names, box = env.names, env.boxes[0]
    attach_s, detach_s, oneshot_s = [], [], []
    steering = hp.Steering(names)  # as the invoke path holds it
    try:
        for i in range(300):
            addr = f"100.64.{100 + i // 250}.{i % 250 + 1}"
            t0 = time.perf_counter()
            steering.attach(addr, 1)
            t1 = time.perf_counter()
            steering.detach(addr)
            attach_s.append(t1 - t0)
            detach_s.append(time.perf_counter() - t1)
    finally:
        steering.close()
    for i in range(20):
        t0 = time.perf_counter()
        hp.attach(names, "100.64.99.1", 1)
        hp.detach(names, "100.64.99.1")
        oneshot_s.append(time.perf_counter() - t0)
    assert hp.list_attachments(names) == {}

    direct = Server(names.worker_netns, "worker", host=GATEWAY, port=9001)
    hp.attach(names, box.address, 1)
    try:
        def connect_ms(host: str, port: int) -> list[float]:
            times = []
            for _ in range(200):
                t0 = time.perf_counter()
                sock = connect(box.netns, host, port)
                times.append((time.perf_counter() - t0) * 1e3)
                sock.close()
            return times
        nat = connect_ms(RESOURCE, PORT)
        veth = connect_ms(GATEWAY, 9001)
    finally:
        hp.detach(names, box.address)
        direct.close()
    assert len(nat) == len(veth) == 200

    def show(label: str, values_ms: list[float]) -> None:
        values_ms = sorted(values_ms)
        print(f"{label}: median {statistics.median(values_ms):.3f} ms, "
              f"p99 {values_ms[int(len(values_ms) * 0.99) - 1]:.3f} ms")
    print()
    show("Steering.attach() (nft element + fast-path entry)", [s * 1e3 for s in attach_s])
    show("Steering.detach()", [s * 1e3 for s in detach_s])
    show("one-shot attach()+detach() (fresh nft context each)", [s * 1e3 for s in oneshot_s])
    show("TCP connect via Hyperplane NAT (sandbox→VPC, SNAT there→resource)", nat)
    show("TCP connect over the direct veth (sandbox→worker 169.254.1.1)", veth)


def test_removing_everything_leaves_nothing() -> None:
    with environment(sandboxes=1) as e:
        names = e.names
        hp.attach(names, e.boxes[0].address, 1)
        assert ask(e.boxes[0].netns) == f"A {ENI_ADDR}"
        hp.remove_eni(names, "vpc-a", 1)
        hp.remove_eni(names, "vpc-a", 1)  # idempotent
        assert hp.list_attachments(names) == {}  # its sandboxes were unsteered with it
        assert cannot_connect(e.boxes[0].netns, RESOURCE)
        hp.remove_all(names)
        assert hp.list_vpc_planes(names) == [] and hp.list_enis(names) == {}
        with Netlink(names.worker_netns) as wl:
            assert [r for r in wl.rules() if r.fwmark] == []
            assert wl.table_routes(hp.out_table(1)) == [] == wl.table_routes(hp.out_table(2))
        assert nft.tables(names.steer_table, names.worker_netns) == []
        for vpc in e.vpcs.values():  # the VPC namespaces are the VPC code's: only ours went
            assert nft.tables(names.prefix, vpc.netns) == []
            with Netlink(vpc.netns) as vl:
                assert [r for r in vl.rules() if r.fwmark] == []
        hp.remove_all(names)  # idempotent


def test_eni_stats_count_new_flows_port_exhaustion_and_idle_expiry(env: Env) -> None:
    """On vpc-b's ENI, narrowed to two source ports and a 2 s idle timeout: two flows to one
    destination fit, a third gets a connect error and is counted as a port-allocation error;
    an idle established flow expires and is counted."""
    names, b, box = env.names, env.vpcs["vpc-b"], env.boxes[1]
    hp.ensure_vpc_plane(names, "vpc-b", idle_timeout_s=2)
    hp.ensure_eni(names, b.eni, ports="2000-2001")
    hp.attach(names, box.address, b.eni.n)
    held: list[socket.socket] = []
    try:
        before = hp.eni_stats(names, "vpc-b", b.eni.n)
        held = [connect(box.netns, RESOURCE) for _ in range(2)]
        assert {s.recv(100).decode().strip() for s in held} == {f"B {ENI_ADDR}"}
        with pytest.raises(OSError):  # no port left for this destination: the SYN is dropped
            connect(box.netns, RESOURCE, timeout=1.5)
        mid = hp.eni_stats(names, "vpc-b", b.eni.n)
        assert mid["new_connections"] >= before["new_connections"] + 3
        assert mid["port_allocation_errors"] > before["port_allocation_errors"]
        assert mid["idle_timeouts"] == before["idle_timeouts"]
        # both flows stay silent past the idle timeout: their bindings expire, freeing ports
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            after = hp.eni_stats(names, "vpc-b", b.eni.n)
            if after["idle_timeouts"] >= mid["idle_timeouts"] + 2:
                break
            time.sleep(0.5)
        assert after["idle_timeouts"] == mid["idle_timeouts"] + 2
        assert ask(box.netns) == f"B {ENI_ADDR}"  # the freed ports serve a new flow
        assert _idle_timeouts(names, b.netns) == [2]
    finally:
        for s in held:
            s.close()
        hp.detach(names, box.address)
        hp.ensure_eni(names, b.eni)
        hp.ensure_vpc_plane(names, "vpc-b")
    assert _idle_timeouts(names, b.netns) == [hp.FLOW_IDLE_TIMEOUT_S]


def _idle_timeouts(names: Names, netns: str) -> list[int]:
    """The established-TCP timeouts the plane gives its flows (ct timeout objects)."""
    return [item["ct timeout"]["policy"]["established"]
            for item in nft.list_json(f"table ip {names.plane_table}", netns)
            if "ct timeout" in item]
