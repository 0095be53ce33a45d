"""VPC functions on agents across the EVPN fabric (issue 20, deliverables 3+4 wired):
`serve --no-data-plane` on PostgreSQL makes a VPC function's Hyperplane ENI in the store only
(interface, address, row: no kernel object on the API host); two agents, each in a namespace
standing in for a host and in the fabric (`--underlay-address`, their own FRR), build every
VPC's namespace and the ENI's kernel half with their leased port block. A `lambdaplane run
--host host-a` resource (agent A builds its namespace and port) answers the function pinned to
host B, and sees the ENI's address as the source, the SNAT port in B's block. Then: a
resource in a security group that lets nothing in is not reached from B until a rule lets the
function's group in (each host judges from the same rows); a second VPC with the
same CIDR and a resource at the same address on A stays apart (its own VNI: VPC 1's function is
refused by VPC 1's resource, VPC 2's function reaches VPC 2's); the same function pinned to A
(B keeps its environment) is seen with the same address and a port in A's block, and on B again
in B's block (the replies steered to the host that translated), and the function on A reaches
a resource on B; a `run` CLI SIGKILLed: its agent releases the interface; agent B SIGKILLed: A
keeps serving, B's blocks and B's resource go with its lease row, `clean` of B leaves nothing,
and A stopped removes everything of its own; the function deleted, its ENI leaves the store and
A's kernel."""
from __future__ import annotations

import contextlib
import json
import os
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
from tests.e2e.vpc_support import Resource, resource, stop, wait_until
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


def run_on(stack: contextlib.ExitStack, server: LiveServer, host: str, subnet_id: str,
           groups: list[str], address: str, port: int) -> Resource:
    """`lambdaplane run --host HOST` of the WHO listener on `port`, on that agent's host (this
    machine); ready once it listens, stopped (SIGTERM to the CLI) when `stack` closes."""
    return stack.enter_context(resource(
        server, subnet_id, groups, ip=address, host=host, listens=True,
        argv=[sys.executable, "-u", "-c", WHO, str(port)]))


def interface_gone(ec2, eni_id: str) -> bool:
    return not ec2.describe_network_interfaces(Filters=[
        {"Name": "network-interface-id", "Values": [eni_id]}])["NetworkInterfaces"]


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
    resources = contextlib.ExitStack()
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
        resource_id = run_on(resources, server, "host-a", subnet_id, [group_id], "10.60.1.10",
                             8080).eni_id
        assert has_address(Names(a.instance).resource_netns(resource_id), "10.60.1.10")
        assert not Path(f"/run/netns/{Names(b.instance).resource_netns(resource_id)}").exists()

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
        closed_resource = run_on(resources, server, "host-a", subnet_id, [closed],
                                 "10.60.1.11", 8080)
        for _ in range(2):
            assert "error" in invoke(lam, {"host": "10.60.1.11", "port": 8080})
        ec2.authorize_security_group_ingress(GroupId=closed, IpPermissions=[{
            "IpProtocol": "tcp", "FromPort": 8080, "ToPort": 8080,
            "UserIdGroupPairs": [{"GroupId": group_id}]}])
        out = until_said(lam, {"host": "10.60.1.11", "port": 8080})
        assert out.get("said", "").split(":")[0] == eni_ip, out

        # its `run` CLI SIGKILLed: agent A sees the CLI gone and releases the interface (its
        # next VPC pass), then removes its namespace
        closed_resource.proc.kill()
        closed_resource.proc.wait()
        os.kill(closed_resource.program_pid, signal.SIGKILL)
        closed_netns = closed_resource.netns
        assert wait_until(lambda: interface_gone(ec2, closed_resource.eni_id) and
                          not Path(f"/run/netns/{closed_netns}").exists(),
                          timeout_s=30, interval_s=0.5), a.log()[-3000:]

        # a second VPC with the same CIDR stays apart across hosts (its own VNI): its resource
        # at the same address on A listens on 8081 only; VPC 1's function gets a refusal from
        # its own VPC's 10.60.1.10, VPC 2's function (on B) reaches VPC 2's
        vpc2 = ec2.create_vpc(CidrBlock="10.60.0.0/16")["Vpc"]["VpcId"]
        subnet2 = ec2.create_subnet(VpcId=vpc2, CidrBlock="10.60.1.0/24")["Subnet"]["SubnetId"]
        group2 = ec2.describe_security_groups(Filters=[
            {"Name": "vpc-id", "Values": [vpc2]}])["SecurityGroups"][0]["GroupId"]
        run_on(resources, server, "host-a", subnet2, [group2], "10.60.1.10", 8081)
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

        # pinned to A, the function reaches a resource on B (`run --host host-b`); SIGKILL
        # agent B: A keeps serving; B's blocks and B's resource go with its lease (the
        # resource's CLI still runs: B's host is alive); clean leaves nothing
        server.extra_args[-1] = "pin:host-a"
        server.restart()
        lam = server.lambda_()
        on_b = run_on(resources, server, "host-b", subnet_id, [group_id], "10.60.1.12", 8082)
        source, port = until_said(lam, {"host": "10.60.1.12", "port": 8082})["said"].split(":")
        assert source == eni_ip and a_lo <= int(port) <= a_hi, (port, a_lo, runs(a), runs(b))
        b.stop(signal.SIGKILL)
        source, port = until_said(lam, {"host": "10.60.1.10", "port": 8080})["said"].split(":")
        assert source == eni_ip and a_lo <= int(port) <= a_hi, (port, a_lo, runs(a), runs(b))
        assert wait_until(lambda: f"lp{b.instance}" not in port_blocks(database, eni_id)
                          and interface_gone(ec2, on_b.eni_id),
                          timeout_s=30, interval_s=0.5), port_blocks(database, eni_id)
        assert on_b.proc.poll() is None
        stop(on_b.proc)
        b.clean()
        assert b.leftovers() == []
        source, port = until_said(lam, {"host": "10.60.1.10", "port": 8080})["said"].split(":")
        assert source == eni_ip

        # the function deleted: its ENI leaves the store (the server), then A's kernel half
        # and A's block (A's next run)
        lam.delete_function(FunctionName="in-vpc")
        assert wait_until(lambda: interface_gone(ec2, eni_id), timeout_s=30, interval_s=0.5)
        worker = Names(a.instance).worker_netns
        assert wait_until(lambda: port_blocks(database, eni_id) == {} and subprocess.run(
            ["ip", "-n", worker, "link", "show", Names(a.instance).transit_veth(1)],
            capture_output=True).returncode != 0, timeout_s=30, interval_s=0.5)
    finally:
        resources.close()
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
