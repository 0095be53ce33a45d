"""A NAT gateway's connections per destination (address, port, protocol): AWS allows 55,000
simultaneous ones; the next fail and count as ErrorPortAllocation. The server here is
started with `--nat-connection-limit 3` so a handful of held connections reach the limit.
Other destinations still get through, and freed connections make room again."""
from __future__ import annotations

import contextlib
import secrets
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.conftest import live_server
from tests.e2e.test_gateways import PUBLIC_HOST, WHO_AM_I, _nat_metrics, _nat_state
from tests.e2e.vpc_support import resource, wait_until
from tests.harness import LiveServer

pytestmark = pytest.mark.root

# Accepts on port 81 and keeps every connection open until its client closes it.
HOLD = r"""
import socket, threading
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("203.0.113.10", 81)); s.listen(64)
def hold(c):
    with c:
        while c.recv(100):
            pass
print("listening", flush=True)
while True:
    c, _ = s.accept()
    threading.Thread(target=hold, args=(c,), daemon=True).start()
"""

# From inside the resource: hold N connections to port 81, then one to port 80; report.
CLIENT = r"""
import socket, sys
n = int(sys.argv[1])
held, results = [], []
for _ in range(n):
    try:
        held.append(socket.create_connection(("203.0.113.10", 81), timeout=1.5))
        results.append("ok")
    except OSError:
        results.append("fail")
try:
    results.append(socket.create_connection(("203.0.113.10", 80), timeout=1.5).recv(100).decode())
except OSError:
    results.append("fail")
print(" ".join(results))
"""


@pytest.fixture(scope="module")
def internet() -> Iterator[str]:
    name = "lpt" + secrets.token_hex(3)
    subprocess.run(["ip", "netns", "add", name], check=True)
    hosts: list[subprocess.Popen[str]] = []
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        subprocess.run(["ip", "-n", name, "addr", "add", f"{PUBLIC_HOST}/32", "dev", "lo"],
                       check=True)
        for script in (WHO_AM_I, HOLD):
            host = subprocess.Popen(["ip", "netns", "exec", name, sys.executable, "-u", "-c",
                                     script], stdout=subprocess.PIPE, text=True)
            hosts.append(host)
            assert host.stdout is not None and host.stdout.readline().strip() == "listening"
        yield name
    finally:
        for host in hosts:
            host.kill()
            host.wait()
        subprocess.run(["ip", "netns", "del", name], check=False)


@pytest.fixture(scope="module")
def server(internet, tmp_path_factory) -> Iterator[LiveServer]:
    yield from live_server(tmp_path_factory.mktemp("lp"), "--internet-netns", internet,
                           "--nat-connection-limit", "3")


def test_connections_per_destination_run_out(server) -> None:
    ec2 = server.ec2()
    vpc = ec2.create_vpc(CidrBlock="10.92.0.0/16")["Vpc"]["VpcId"]
    public = ec2.create_subnet(VpcId=vpc, CidrBlock="10.92.1.0/24")["Subnet"]["SubnetId"]
    private = ec2.create_subnet(VpcId=vpc, CidrBlock="10.92.2.0/24")["Subnet"]["SubnetId"]
    igw = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    ec2.attach_internet_gateway(InternetGatewayId=igw, VpcId=vpc)
    (main,) = ec2.describe_route_tables(Filters=[{"Name": "vpc-id", "Values": [vpc]}])[
        "RouteTables"]
    ec2.create_route(RouteTableId=main["RouteTableId"], DestinationCidrBlock="0.0.0.0/0",
                     GatewayId=igw)
    table = ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"]
    assoc = ec2.associate_route_table(RouteTableId=table, SubnetId=private)["AssociationId"]
    a = ec2.allocate_address(Domain="vpc")
    nat = ec2.create_nat_gateway(SubnetId=public, AllocationId=a["AllocationId"])[
        "NatGateway"]["NatGatewayId"]
    group = ec2.describe_security_groups(Filters=[{"Name": "vpc-id", "Values": [vpc]}])[
        "SecurityGroups"][0]["GroupId"]
    try:
        assert wait_until(lambda: _nat_state(ec2, nat) == "available", timeout_s=30)
        ec2.create_route(RouteTableId=table, DestinationCidrBlock="0.0.0.0/0", NatGatewayId=nat)
        with resource(server, private, [group], ports=(80,)) as r:
            out = subprocess.run(["ip", "netns", "exec", r.netns, sys.executable, "-c", CLIENT,
                                  "4"], capture_output=True, text=True, timeout=60).stdout.split()
            # three held to 203.0.113.10:81, the fourth finds no port; port 80 is another
            # destination
            assert out == ["ok", "ok", "ok", "fail", "you", "are", a["PublicIp"]], out
            metrics = _nat_metrics(server, nat)
            assert metrics["ErrorPortAllocation"] >= 1
            assert metrics["ActiveConnectionCount"] >= 0
            # the held connections are gone with the client: there is room again
            out = subprocess.run(["ip", "netns", "exec", r.netns, sys.executable, "-c", CLIENT,
                                  "1"], capture_output=True, text=True, timeout=60).stdout.split()
            assert out[0] == "ok", out
    finally:
        ec2.delete_nat_gateway(NatGatewayId=nat)
        wait_until(lambda: _nat_state(ec2, nat) == "deleted", timeout_s=30)
        ec2.disassociate_route_table(AssociationId=assoc)
        ec2.delete_route_table(RouteTableId=table)
        ec2.delete_route(RouteTableId=main["RouteTableId"], DestinationCidrBlock="0.0.0.0/0")
        ec2.release_address(AllocationId=a["AllocationId"])
        wait_until(lambda: ec2.describe_network_interfaces(Filters=[
            {"Name": "vpc-id", "Values": [vpc]}])["NetworkInterfaces"] == [], timeout_s=30)
        ec2.detach_internet_gateway(InternetGatewayId=igw, VpcId=vpc)
        ec2.delete_internet_gateway(InternetGatewayId=igw)
        for subnet in (public, private):
            with contextlib.suppress(Exception):
                ec2.delete_subnet(SubnetId=subnet)
        ec2.delete_vpc(VpcId=vpc)
