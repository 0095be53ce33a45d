"""VPC functions on agents across the EVPN fabric (issue 20, deliverables 3+4 wired):
`serve --no-data-plane` on PostgreSQL makes a VPC function's Hyperplane ENI in the store only
(interface, address, row: no kernel object on the API host); two agents, each in a namespace
standing in for a host and in the fabric (`--underlay-address`, their own FRR), build every
VPC's namespace and the ENI's kernel half with their leased port block. A resource on host A
(an interface whose far end is agent A's: agent A builds its namespace and port) answers the
function pinned to host B, and sees the ENI's address as the source, the SNAT port in B's
block. Then: a resource in a security group that lets nothing in is not reached from B until a
rule lets the function's group in (each host judges from the same rows); a second VPC with the
same CIDR and a resource at the same address on A stays apart (its own VNI: VPC 1's function is
refused by VPC 1's resource, VPC 2's function reaches VPC 2's); the same function pinned to A
(B keeps its environment) is seen with the same address and a port in A's block, and on B again
in B's block (the replies steered to the host that translated); agent B SIGKILLed: A keeps
serving, B's blocks go with its lease row, `clean` of B leaves nothing, and A stopped removes
everything of its own; the function deleted, its ENI leaves the store and A's kernel.

The resource's placement on host A is written to the store by the test (the interface's far
end names agent A's resource namespace): `lambdaplane run` places its resources on the API
server's host, which is not in the fabric."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from lambdaplane.bench.fabric_lab import UNDERLAY, join_hosts
from lambdaplane.cleanup import clean_instance, fresh_instance
from lambdaplane.net import frr
from lambdaplane.net.names import Names
from tests.e2e.test_agents_fabric import established, fabric_agent
from tests.e2e.vpc_support import wait_until
from tests.harness import LiveServer, create_python_function
from tests.pg_server import PgServer

pytestmark = [pytest.mark.root,
              pytest.mark.skipif(not frr.installed(), reason="needs Debian's frr")]

# answers every TCP connection with the peer's address and port
WHO = r"""
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(64)
print("listening", flush=True)
while True:
    c, peer = s.accept()
    try:
        c.sendall(f"{peer[0]}:{peer[1]}".encode())
    finally:
        c.close()
"""

APP = """
import socket
def handler(event, context):
    try:
        s = socket.create_connection((event["host"], event["port"]), timeout=3)
        return {"said": s.recv(100).decode()}
    except OSError as e:
        return {"error": repr(e)}
"""


@pytest.fixture(scope="module")
def database(pg_server: PgServer) -> Iterator[str]:
    with pg_server.database() as url:
        yield url


def place_on(database: str, eni_id: str, names: Names) -> None:
    """The interface's far end: a namespace of its own, made by the agent of `names`."""
    with psycopg.connect(database) as conn:
        conn.execute("UPDATE ec2_enis SET far_netns=%s, far_ifname='eth0', owns_netns=1 "
                     "WHERE id=%s", (names.resource_netns(eni_id), eni_id))


def listen(netns: str, port: int) -> subprocess.Popen[str]:
    listener = subprocess.Popen(["ip", "netns", "exec", netns, sys.executable, "-u", "-c", WHO,
                                 str(port)], stdout=subprocess.PIPE, text=True)
    assert listener.stdout is not None and listener.stdout.readline().strip() == "listening"
    return listener


def resource_on(ec2, database: str, agent_names: Names, subnet_id: str, groups: list[str],
                address: str) -> str:
    """An interface made through EC2, its port placed on the host of `agent_names`; its
    namespace's name once the agent built it with the address."""
    eni_id = ec2.create_network_interface(SubnetId=subnet_id, Groups=groups,
                                          PrivateIpAddress=address)["NetworkInterface"][
        "NetworkInterfaceId"]
    place_on(database, eni_id, agent_names)
    netns = agent_names.resource_netns(eni_id)
    assert wait_until(lambda: has_address(netns, address), timeout_s=30, interval_s=0.2)
    return netns


def until_said(lam, payload: dict, function: str = "in-vpc", timeout_s: float = 60) -> dict:
    """Invoke until the function reached its peer (the agents' reconcile runs every few
    seconds: a rule or an ENI just written may not be in the kernel yet)."""
    deadline = time.monotonic() + timeout_s
    while True:
        out = invoke(lam, payload, function)
        if "said" in out or time.monotonic() > deadline:
            return out
        time.sleep(1)


def runs(agent) -> int:
    """Invokes of in-vpc the agent ran (its function log's START lines)."""
    path = agent.data_dir / "logs" / "us-east-1" / "in-vpc.log"
    return path.read_text(errors="replace").count("START RequestId") if path.exists() else 0


def port_blocks(database: str, eni_id: str) -> dict[str, str]:
    """Host id → the range of its block of the ENI."""
    with psycopg.connect(database) as conn:
        return dict(conn.execute("SELECT host_id, first_port || '-' || last_port "
                                 "FROM hyperplane_port_blocks WHERE eni_id = %s",
                                 (eni_id,)).fetchall())


def has_address(netns: str, address: str) -> bool:
    out = subprocess.run(["ip", "-n", netns, "-j", "addr"], capture_output=True, text=True)
    return out.returncode == 0 and f'"{address}"' in out.stdout


def invoke(lam, payload: dict, function: str = "in-vpc") -> dict:
    out = lam.invoke(FunctionName=function, Payload=json.dumps(payload).encode())
    assert "FunctionError" not in out, out["Payload"].read()
    return json.loads(out["Payload"].read())


def test_a_vpc_function_on_host_b_reaches_a_resource_on_host_a(
        tmp_path: Path, database: str) -> None:
    tid = fresh_instance("n")
    namespaces = [f"lp{tid}hA", f"lp{tid}hB"]
    server = LiveServer(tmp_path / "api", "--database", database, "--no-data-plane",
                        "--placement", "pin:host-b")
    agents = [fabric_agent(tmp_path / "agent-a", database, "host-a", namespaces[0], 0),
              fabric_agent(tmp_path / "agent-b", database, "host-b", namespaces[1], 1)]
    a, b = agents
    listeners: list[subprocess.Popen[str]] = []
    try:
        for netns in namespaces:
            subprocess.run(["ip", "netns", "add", netns], check=True)
        join_hosts(namespaces, f"lp{tid}")
        server.start()
        ec2, lam = server.ec2(), server.lambda_()
        vpc_id = ec2.create_vpc(CidrBlock="10.60.0.0/16")["Vpc"]["VpcId"]
        subnet_id = ec2.create_subnet(VpcId=vpc_id, CidrBlock="10.60.1.0/24")["Subnet"][
            "SubnetId"]
        group_id = ec2.describe_security_groups(Filters=[
            {"Name": "vpc-id", "Values": [vpc_id]}])["SecurityGroups"][0]["GroupId"]

        # the ENI's store half on the API server: an interface and an address, no kernel
        create_python_function(lam, "in-vpc", APP, Timeout=10, VpcConfig={
            "SubnetIds": [subnet_id], "SecurityGroupIds": [group_id]})
        enis = ec2.describe_network_interfaces(Filters=[
            {"Name": "interface-type", "Values": ["lambda"]}])["NetworkInterfaces"]
        assert len(enis) == 1 and enis[0]["RequesterManaged"]
        eni_ip, eni_id = enis[0]["PrivateIpAddress"], enis[0]["NetworkInterfaceId"]
        assert eni_ip.startswith("10.60.1.") and eni_ip != "10.60.1.10"

        for agent in agents:
            agent.start()
        assert wait_until(lambda: established(a, UNDERLAY[1]) and established(b, UNDERLAY[0]),
                          timeout_s=90, interval_s=0.5), a.log()[-3000:]
        resource_netns = resource_on(ec2, database, Names(a.instance), subnet_id, [group_id],
                                     "10.60.1.10")
        resource_id = resource_netns.removeprefix(Names(a.instance).resource_netns(""))
        assert not Path(f"/run/netns/{Names(b.instance).resource_netns(resource_id)}").exists()
        listeners.append(listen(resource_netns, 8080))

        # both agents leased a block of the ENI; B's range is what the resource sees
        assert wait_until(lambda: set(port_blocks(database, eni_id)) == {f"lp{a.instance}",
                                                                  f"lp{b.instance}"},
                          timeout_s=30, interval_s=0.5), port_blocks(database, eni_id)
        blocks = port_blocks(database, eni_id)
        lo, hi = map(int, blocks[f"lp{b.instance}"].split("-"))

        deadline = time.monotonic() + 60
        while True:  # the first invokes may come before B's reconcile took the ENI up
            out = invoke(lam, {"host": "10.60.1.10", "port": 8080})
            if "said" in out or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert "said" in out, (out, b.log()[-4000:])
        source, port = out["said"].split(":")
        assert source == eni_ip
        assert lo <= int(port) <= hi, (port, blocks)
        assert wait_until(lambda: _host_rows_with(database, "in-vpc") == ["host-b"],
                          timeout_s=10)  # the lease row lists it at the next renewal

        # a security group's deny holds across hosts: a resource on A in a group that lets
        # nothing in is not reached from B until a rule lets the function's group in
        closed = ec2.create_security_group(GroupName="closed", Description="nothing in",
                                           VpcId=vpc_id)["GroupId"]
        closed_netns = resource_on(ec2, database, Names(a.instance), subnet_id, [closed],
                                   "10.60.1.11")
        listeners.append(listen(closed_netns, 8080))
        for _ in range(2):
            assert "error" in invoke(lam, {"host": "10.60.1.11", "port": 8080})
        ec2.authorize_security_group_ingress(GroupId=closed, IpPermissions=[{
            "IpProtocol": "tcp", "FromPort": 8080, "ToPort": 8080,
            "UserIdGroupPairs": [{"GroupId": group_id}]}])
        out = until_said(lam, {"host": "10.60.1.11", "port": 8080})
        assert out.get("said", "").split(":")[0] == eni_ip, out

        # a second VPC with the same CIDR stays apart across hosts (its own VNI): its resource
        # at the same address on A listens on 8081 only; VPC 1's function gets a refusal from
        # its own VPC's 10.60.1.10, VPC 2's function (on B) reaches VPC 2's
        vpc2 = ec2.create_vpc(CidrBlock="10.60.0.0/16")["Vpc"]["VpcId"]
        subnet2 = ec2.create_subnet(VpcId=vpc2, CidrBlock="10.60.1.0/24")["Subnet"]["SubnetId"]
        group2 = ec2.describe_security_groups(Filters=[
            {"Name": "vpc-id", "Values": [vpc2]}])["SecurityGroups"][0]["GroupId"]
        other_netns = resource_on(ec2, database, Names(a.instance), subnet2, [group2],
                                  "10.60.1.10")
        listeners.append(listen(other_netns, 8081))
        create_python_function(lam, "in-vpc2", APP, Timeout=10, VpcConfig={
            "SubnetIds": [subnet2], "SecurityGroupIds": [group2]})
        eni2_ip = ec2.describe_network_interfaces(Filters=[
            {"Name": "interface-type", "Values": ["lambda"]},
            {"Name": "vpc-id", "Values": [vpc2]}])["NetworkInterfaces"][0]["PrivateIpAddress"]
        out = until_said(lam, {"host": "10.60.1.10", "port": 8081}, "in-vpc2")
        assert out.get("said", "").split(":")[0] == eni2_ip, (out, b.log()[-3000:])
        refused = invoke(lam, {"host": "10.60.1.10", "port": 8081})
        assert "ConnectionRefused" in refused.get("error", ""), refused

        # the same function on both hosts at once: pinned to A now (B keeps its environment),
        # one ENI address, A's block; then B again, B's block: replies reach the right host
        server.extra_args[-1] = "pin:host-a"
        server.restart()
        lam = server.lambda_()
        a_lo, a_hi = map(int, port_blocks(database, eni_id)[f"lp{a.instance}"].split("-"))
        source, port = until_said(lam, {"host": "10.60.1.10", "port": 8080})["said"].split(":")
        assert source == eni_ip and a_lo <= int(port) <= a_hi, (port, a_lo, runs(a), runs(b))
        assert wait_until(lambda: set(_host_rows_with(database, "in-vpc")) == {
            "host-a", "host-b"}, timeout_s=10)
        server.extra_args[-1] = "pin:host-b"
        server.restart()
        lam = server.lambda_()
        source, port = until_said(lam, {"host": "10.60.1.10", "port": 8080})["said"].split(":")
        assert source == eni_ip and lo <= int(port) <= hi

        # SIGKILL agent B: A keeps serving; B's blocks go with its lease; clean leaves nothing
        server.extra_args[-1] = "pin:host-a"
        server.restart()
        lam = server.lambda_()
        b.stop(signal.SIGKILL)
        source, port = until_said(lam, {"host": "10.60.1.10", "port": 8080})["said"].split(":")
        assert source == eni_ip and a_lo <= int(port) <= a_hi, (port, a_lo, runs(a), runs(b))
        assert wait_until(lambda: f"lp{b.instance}" not in port_blocks(database, eni_id),
                          timeout_s=30, interval_s=0.5), port_blocks(database, eni_id)
        b.clean()
        assert b.leftovers() == []
        source, port = until_said(lam, {"host": "10.60.1.10", "port": 8080})["said"].split(":")
        assert source == eni_ip

        # the function deleted: its ENI leaves the store (the server), then A's kernel half
        # and A's block (A's next run)
        lam.delete_function(FunctionName="in-vpc")
        assert wait_until(lambda: not ec2.describe_network_interfaces(Filters=[
            {"Name": "network-interface-id", "Values": [eni_id]}])["NetworkInterfaces"],
            timeout_s=30, interval_s=0.5)
        worker = Names(a.instance).worker_netns
        assert wait_until(lambda: port_blocks(database, eni_id) == {} and subprocess.run(
            ["ip", "-n", worker, "link", "show", Names(a.instance).transit_veth(1)],
            capture_output=True).returncode != 0, timeout_s=30, interval_s=0.5)
    finally:
        for listener in listeners:
            listener.kill()
            listener.wait()
        server.stop()
        for agent in agents:
            agent.stop(signal.SIGINT)
        left = [x for agent in agents for x in agent.leftovers()]
        for agent in agents:
            if agent.data_dir.exists():
                agent.clean()
            clean_instance(agent.instance)
        for netns in namespaces:
            subprocess.run(["ip", "netns", "del", netns], capture_output=True)
    assert left == []


def _host_rows_with(database: str, function: str) -> list[str]:
    with psycopg.connect(database) as conn:
        return [r[0] for r in conn.execute(
            "SELECT h.name FROM hosts h JOIN host_warm_functions w ON w.host_id = h.id "
            "WHERE w.function = %s", (function,)).fetchall()]
