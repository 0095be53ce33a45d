"""VPC gateways out of the host's uplink (serve with the uplink on and no --internet-netns),
with the "host" being a network namespace this test made: the real server runs inside it
(`nsenter --net`), so its root namespace — where it makes the uplink links and the root-side
nft table — is the test's, and that namespace's only link leads to a second test namespace,
the "world". Nothing the server or the test sends can reach the machine's real uplink: no link
joins the test's namespaces to the real root namespace (the test reaches the API through a
loopback proxy whose far socket is opened inside the host namespace).

The world holds a "public host" on a documentation address (203.0.113.10; documentation
ranges are not refused, as for functions) that answers with the address it sees, and a
private host (10.199.0.10) that a VPC must never reach. Checked: the kernel objects (the
internet namespace, its link, routes, both nft tables read back as JSON); a resource with an
Elastic IP and one behind a NAT gateway get out, masqueraded to the host's address; refused
destinations (private, the host's own network, link-local) are dropped in the internet
namespace before they leave (its counter counts them; the world's counter stays at zero);
nothing from the world reaches an Elastic IP, but the host does."""
from __future__ import annotations

import contextlib
import ipaddress
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from lambdaplane.net import host_internet, nft, ns
from lambdaplane.net.names import Names
from lambdaplane.net.netlink import Netlink
from tests.e2e.vpc_support import (
    PUBLIC_HOST,
    cli,
    internet_vpc,
    own_namespaces,
    reconcile_now,
    resource,
    wait_until,
    who_am_i,
)
from tests.harness import LiveServer

pytestmark = pytest.mark.root

PRIVATE_HOST = "10.199.0.10"
HOST_ADDR, WORLD_ADDR = "192.0.2.2", "192.0.2.1"  # the host namespace's link to the world


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def world_and_host() -> Iterator[tuple[str, str]]:
    """Two namespaces of the test's: the world (public and private hosts) and the host."""
    with own_namespaces("w", "h") as (world, host):
        _ip("-n", host, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0",
            "netns", world)
        _ip("-n", host, "addr", "add", f"{HOST_ADDR}/24", "dev", "eth0")
        _ip("-n", world, "addr", "add", f"{WORLD_ADDR}/24", "dev", "eth0")
        for name in (world, host):
            _ip("-n", name, "link", "set", "eth0", "up")
        _ip("-n", host, "route", "add", "default", "via", WORLD_ADDR)
        for a in (PUBLIC_HOST, PRIVATE_HOST):
            _ip("-n", world, "addr", "add", f"{a}/32", "dev", "lo")
        # the world may even route the public pool to the host: nothing may come in that way
        _ip("-n", world, "route", "add", "198.51.100.0/24", "via", HOST_ADDR)
        # what reaches the world for the private host (nothing may)
        nft.apply("table inet seen { counter private { }\n chain pre { type filter hook "
                  "prerouting priority raw; policy accept;\n"
                  f'  ip daddr {{ {PRIVATE_HOST}, {WORLD_ADDR} }} counter name "private"\n }}\n}}\n',
                  world)
        with who_am_i(world, PUBLIC_HOST, PRIVATE_HOST, WORLD_ADDR):
            yield world, host


class _Proxy:
    """127.0.0.1:port here → 127.0.0.1:target inside `netns` (the server's API there)."""

    def __init__(self, netns: str, target: int) -> None:
        self.netns, self.target = netns, target
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._pair, args=(client,), daemon=True).start()

    def _pair(self, client: socket.socket) -> None:
        with ns.entered(self.netns):  # this thread only; the socket stays in that namespace
            far = socket.socket()
        try:
            far.connect(("127.0.0.1", self.target))
        except OSError:
            client.close()
            far.close()
            return
        threading.Thread(target=self._pump, args=(far, client), daemon=True).start()
        self._pump(client, far)

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.sock.close()


class HostNsServer(LiveServer):
    """A LiveServer run inside namespace `host` with the uplink ON (no --no-uplink)."""

    def __init__(self, data_dir: Path, host: str) -> None:
        super().__init__(data_dir)
        self.host = host
        self.proxy = _Proxy(host, self.port)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.proxy.port}"

    def start(self, timeout_s: float = 60.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        cmd = ["nsenter", f"--net=/run/netns/{self.host}", sys.executable, "-m",
               "lambdaplane.cli", "serve", "--port", str(self.port), "--data-dir",
               str(self.data_dir), "--instance", self.instance, "--pool-size", "1",
               "--prefork", "0"]
        self.proc = subprocess.Popen(cmd, stdout=open(self.log_path, "ab"),
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited {self.proc.returncode}:\n{self.log()}")
            try:
                urllib.request.urlopen(self.endpoint + "/_lambdaplane/health", timeout=2).read()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"server did not come up in {timeout_s}s:\n{self.log()}")

    def host_leftovers(self) -> list[str]:
        """What of this instance is left in the host namespace (its 'root')."""
        names = Names(self.instance)
        with Netlink(self.host) as nl:
            found = [f"link {link.name}" for link in nl.links(names.prefix)]
        return found + [f"nft table {f} {t}" for f, t in nft.tables(names.nft_table, self.host)]


@pytest.fixture(scope="module")
def server(world_and_host, tmp_path_factory) -> Iterator[HostNsServer]:
    _world, host = world_and_host
    s = HostNsServer(tmp_path_factory.mktemp("lp") / "data", host)
    try:
        s.start()
        yield s
    finally:
        s.stop(signal.SIGINT)
        s.proxy.close()
        left = s.leftovers() + s.host_leftovers()
        s.backstop_clean()
        assert not left, f"server left behind: {left}\n{s.log()}"


@pytest.fixture(scope="module")
def net(server) -> dict[str, str]:
    ec2 = server.ec2()
    made = internet_vpc(ec2, "10.91")
    vpc, public, group = made["vpc"], made["public"], made["group"]
    private = ec2.create_subnet(VpcId=vpc, CidrBlock="10.91.2.0/24")["Subnet"]["SubnetId"]
    nat_eip = ec2.allocate_address(Domain="vpc")
    nat = ec2.create_nat_gateway(SubnetId=public, AllocationId=nat_eip["AllocationId"])[
        "NatGateway"]["NatGatewayId"]
    private_table = ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"]
    ec2.create_route(RouteTableId=private_table, DestinationCidrBlock="0.0.0.0/0",
                     NatGatewayId=nat)
    ec2.associate_route_table(RouteTableId=private_table, SubnetId=private)
    assert wait_until(lambda: ec2.describe_nat_gateways(NatGatewayIds=[nat])["NatGateways"][0][
        "State"] == "available", timeout_s=30)
    return {"vpc": vpc, "public": public, "private": private, "group": group}


def _refused(server) -> int:
    return host_internet.counters(Names(server.instance)).get(host_internet.REFUSED_COUNTER, 0)


def _world_saw_private(world: str) -> int:
    (c,) = [i["counter"] for i in nft.list_json("counters table inet seen", world)
            if "counter" in i]
    return int(c["packets"])


def _span(elem: object) -> tuple[int, int]:
    """An nft JSON set element (address, prefix or range) as the (first, last) it covers."""
    if isinstance(elem, str):
        return int(ipaddress.IPv4Address(elem)), int(ipaddress.IPv4Address(elem))
    assert isinstance(elem, dict)
    if "prefix" in elem:
        net = ipaddress.IPv4Network(f"{elem['prefix']['addr']}/{elem['prefix']['len']}")
        return int(net[0]), int(net[-1])
    lo, hi = elem["range"]
    return int(ipaddress.IPv4Address(lo)), int(ipaddress.IPv4Address(hi))


def test_kernel_objects(server, world_and_host) -> None:
    names = Names(server.instance)
    inet = names.host_internet_netns
    assert ns.exists(inet)
    plan = host_internet.uplink_plan(names)
    with Netlink(server.host) as root:
        link = root.link(names.host_internet_link)
        assert link is not None and link.up
        assert root.addresses(link.index) == {(plan.host_address, 30)}
    with Netlink(inet) as nl:
        assert nl.addresses(host_internet.UPLINK_IFNAME) == {(plan.worker_address, 30)}
        up = nl.index(host_internet.UPLINK_IFNAME)
        assert ("", 0, up, plan.host_address) in nl.routes()  # the default route
    rules = nft.list_json(f"table inet {names.host_internet_table}", inet)
    (refused,) = [i["set"] for i in rules if i.get("set", {}).get("name") == "refused"]
    spans = [_span(e) for e in refused["elem"]]  # auto-merge may join neighbours
    for wanted in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10",
                   "169.254.0.0/16", "127.0.0.0/8", "224.0.0.0/4", "240.0.0.0/4", "0.0.0.0/8",
                   "192.0.2.0/24", "198.51.100.0/24"):  # + the host's network, the pool
        net = ipaddress.IPv4Network(wanted)
        assert any(lo <= int(net[0]) and int(net[-1]) <= hi for lo, hi in spans), wanted
    assert not any(lo <= int(ipaddress.IPv4Address(PUBLIC_HOST)) <= hi for lo, hi in spans)
    nat = [i["rule"] for i in rules if "rule" in i and i["rule"]["chain"] == "postrouting"]
    assert any("masquerade" in e for r in nat for e in r["expr"])
    # the root side: the functions' uplink rules, for this link
    root_rules = nft.list_json(f"table inet {names.host_internet_table}", server.host)
    assert any("masquerade" in e for i in root_rules if "rule" in i for e in i["rule"]["expr"])
    shown = cli(server, "net", "show")
    assert shown.returncode == 0, shown.stderr
    assert f"internet: the host's uplink (through {inet}" in shown.stdout
    assert "Elastic IPs are reachable only from the host" in shown.stdout


def test_out_through_elastic_ip_and_nat_gateway(server, net) -> None:
    ec2 = server.ec2()
    with resource(server, net["public"], [net["group"]], ports=(80,)) as web, \
            resource(server, net["private"], [net["group"]], ports=(80,)) as app:
        # without a public address: no way out
        assert web.probe(PUBLIC_HOST, 80, timeout=1.5) == "timeout"
        eip = ec2.allocate_address(Domain="vpc")
        ec2.associate_address(AllocationId=eip["AllocationId"], NetworkInterfaceId=web.eni_id)
        # out of the host's "uplink", masqueraded to the host's own address
        assert wait_until(lambda: web.probe(PUBLIC_HOST, 80) == f"you are {HOST_ADDR}",
                          timeout_s=15)
        assert app.probe(PUBLIC_HOST, 80, timeout=3) == f"you are {HOST_ADDR}"
        # the host reaches the Elastic IP from the internet namespace…
        inet = Names(server.instance).host_internet_netns
        out = subprocess.run(["ip", "netns", "exec", inet, sys.executable, "-c",
                              "import socket; s = socket.create_connection(('%s', 80), "
                              "timeout=3); print(s.recv(100).decode())" % eip["PublicIp"]],
                             capture_output=True, text=True, timeout=30)
        assert out.stdout.strip() == f"hello from {web.ip}"


def test_refused_destinations_never_leave(server, net, world_and_host) -> None:
    world, host = world_and_host
    ec2 = server.ec2()
    with resource(server, net["public"], [net["group"]], ports=(80,)) as web, \
            resource(server, net["private"], [net["group"]], ports=(80,)) as app:
        eip = ec2.allocate_address(Domain="vpc")
        ec2.associate_address(AllocationId=eip["AllocationId"], NetworkInterfaceId=web.eni_id)
        assert wait_until(lambda: web.probe(PUBLIC_HOST, 80) == f"you are {HOST_ADDR}",
                          timeout_s=15)
        before = _refused(server)
        # private (the world has it), the host's own network, link-local: all dropped
        for who in (web, app):
            for dst in (PRIVATE_HOST, WORLD_ADDR, "169.254.169.254"):
                assert who.probe(dst, 80, timeout=1.0) == "timeout", (who.ip, dst)
        assert _refused(server) >= before + 6
        assert _world_saw_private(world) == 0
        # the same counter in /metrics and `net show` (read by the server)
        scraped = urllib.request.urlopen(server.endpoint + "/metrics", timeout=30).read()
        (sample,) = [line for line in scraped.decode().splitlines()
                     if line.startswith("lambdaplane_vpc_uplink_refused_packets_total ")]
        assert float(sample.split()[1]) >= before + 6
        shown = cli(server, "net", "show")
        assert shown.returncode == 0, shown.stderr
        (line,) = [line for line in shown.stdout.splitlines()
                   if "refused before the uplink" in line]
        assert int(line.split(": ")[1].split()[0]) >= before + 6
        # nothing from the world reaches an Elastic IP (the world routes the pool to the host)
        out = subprocess.run(["ip", "netns", "exec", world, sys.executable, "-c",
                              "import socket\ntry:\n s = socket.create_connection(('%s', 80), "
                              "timeout=1.5); print(s.recv(100).decode())\nexcept OSError as e:"
                              "\n print('no', e)" % eip["PublicIp"]],
                             capture_output=True, text=True, timeout=30)
        assert out.stdout.startswith("no"), out.stdout


def test_rebuilt_when_it_vanishes(server, net) -> None:
    names = Names(server.instance)
    ec2 = server.ec2()
    with resource(server, net["public"], [net["group"]], ports=(80,)) as web:
        eip = ec2.allocate_address(Domain="vpc")
        ec2.associate_address(AllocationId=eip["AllocationId"], NetworkInterfaceId=web.eni_id)
        assert wait_until(lambda: web.probe(PUBLIC_HOST, 80) == f"you are {HOST_ADDR}",
                          timeout_s=15)
        subprocess.run(["ip", "netns", "del", names.host_internet_netns], check=True)
        assert web.probe(PUBLIC_HOST, 80) in ("timeout", "error 101")  # gone with its link
        changes = reconcile_now(server)  # what the drift timer runs
        assert f"rebuilt the uplink internet namespace {names.host_internet_netns}" in changes
        assert web.probe(PUBLIC_HOST, 80, timeout=3) == f"you are {HOST_ADDR}"
        assert reconcile_now(server) == []  # and nothing left to do


def _host_forwarding(server) -> str:
    """net.ipv4.ip_forward of the test's host namespace (the server's "root"), read there."""
    out = subprocess.run(["ip", "netns", "exec", server.host, "cat",
                          "/proc/sys/net/ipv4/ip_forward"], check=True, capture_output=True,
                         text=True, timeout=30)
    return out.stdout.strip()


def test_forwarding_turned_off_under_the_server_is_put_back(server, net) -> None:
    """The host's ip_forward switched off by hand under the running server — in the test's
    host namespace, never the machine's — is switched on again by the reconciler's worker
    step (what the drift timer runs), recorded in the data dir first so the stop puts back the
    original; the VPC's way out works again."""
    ec2 = server.ec2()
    repaired = "set net.ipv4.ip_forward=1 in the root namespace"
    with resource(server, net["public"], [net["group"]], ports=(80,)) as web:
        eip = ec2.allocate_address(Domain="vpc")
        ec2.associate_address(AllocationId=eip["AllocationId"], NetworkInterfaceId=web.eni_id)
        assert wait_until(lambda: web.probe(PUBLIC_HOST, 80) == f"you are {HOST_ADDR}",
                          timeout_s=15)
        assert _host_forwarding(server) == "1"
        subprocess.run(["ip", "netns", "exec", server.host, "sh", "-c",
                        "echo 0 > /proc/sys/net/ipv4/ip_forward"], check=True, timeout=30)
        changes = reconcile_now(server)
        # the drift timer may have got there first: then its log says so
        assert repaired in changes or repaired in server.log(), changes
        assert _host_forwarding(server) == "1"
        record = (server.data_dir / "host-sysctls").read_text()
        assert "net.ipv4.ip_forward=" in record
        assert web.probe(PUBLIC_HOST, 80, timeout=3) == f"you are {HOST_ADDR}"
        assert repaired not in reconcile_now(server)  # nothing left to do


def test_sigkill_restart_and_clean(server, net) -> None:
    """Made again over what a SIGKILL left; `clean` (run where the server runs) removes it."""
    names = Names(server.instance)
    server.kill()
    assert ns.exists(names.host_internet_netns)  # a SIGKILL leaves it
    server.start()
    ec2 = server.ec2()
    with resource(server, net["public"], [net["group"]], ports=(80,)) as web:
        eip = ec2.allocate_address(Domain="vpc")
        ec2.associate_address(AllocationId=eip["AllocationId"], NetworkInterfaceId=web.eni_id)
        assert wait_until(lambda: web.probe(PUBLIC_HOST, 80) == f"you are {HOST_ADDR}",
                          timeout_s=15)
    assert reconcile_now(server) == []  # the start made it whole: nothing to repair
    server.kill()
    out = subprocess.run(["nsenter", f"--net=/run/netns/{server.host}", sys.executable, "-m",
                          "lambdaplane.cli", "clean", "--data-dir", str(server.data_dir)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert not ns.exists(names.host_internet_netns)
    assert server.host_leftovers() == [] and server.leftovers() == []
    server.start()  # the module's teardown stops it and checks again
