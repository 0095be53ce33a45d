"""VPC functions on agents across the EVPN fabric (issue 20, deliverables 3+4 wired):
`serve --no-data-plane` on PostgreSQL makes a VPC function's Hyperplane ENI in the store only
(interface, address, row: no kernel object on the API host); two agents, each in a namespace
standing in for a host and in the fabric (`--underlay-address`, their own FRR), build every
VPC's namespace and the ENI's kernel half with their leased port block. A resource on host A
(an interface whose far end is agent A's: agent A builds its namespace and port) answers the
function pinned to host B, and sees the ENI's address as the source, the SNAT port in B's
block.

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

from lambdaplane.cleanup import clean_instance, fresh_instance
from lambdaplane.net import frr
from lambdaplane.net.names import Names
from tests.e2e.test_agents_fabric import established, fabric_agent, join_hosts, UNDERLAY
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


def port_blocks(database: str) -> dict[str, str]:
    """Host id → the range of its block, of every port block leased."""
    with psycopg.connect(database) as conn:
        return dict(conn.execute("SELECT host_id, first_port || '-' || last_port "
                                 "FROM hyperplane_port_blocks").fetchall())


def has_address(netns: str, address: str) -> bool:
    out = subprocess.run(["ip", "-n", netns, "-j", "addr"], capture_output=True, text=True)
    return out.returncode == 0 and f'"{address}"' in out.stdout


def invoke(lam, payload: dict) -> dict:
    out = lam.invoke(FunctionName="in-vpc", Payload=json.dumps(payload).encode())
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
    listener: subprocess.Popen[str] | None = None
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
        resource = ec2.create_network_interface(SubnetId=subnet_id, Groups=[group_id],
                                                PrivateIpAddress="10.60.1.10")
        resource_id = resource["NetworkInterface"]["NetworkInterfaceId"]

        # the ENI's store half on the API server: an interface and an address, no kernel
        create_python_function(lam, "in-vpc", APP, Timeout=10, VpcConfig={
            "SubnetIds": [subnet_id], "SecurityGroupIds": [group_id]})
        enis = ec2.describe_network_interfaces(Filters=[
            {"Name": "interface-type", "Values": ["lambda"]}])["NetworkInterfaces"]
        assert len(enis) == 1 and enis[0]["RequesterManaged"]
        eni_ip = enis[0]["PrivateIpAddress"]
        assert eni_ip.startswith("10.60.1.") and eni_ip != "10.60.1.10"

        for agent in agents:
            agent.start()
        assert wait_until(lambda: established(a, UNDERLAY[1]) and established(b, UNDERLAY[0]),
                          timeout_s=90, interval_s=0.5), a.log()[-3000:]
        resource_netns = Names(a.instance).resource_netns(resource_id)
        place_on(database, resource_id, Names(a.instance))
        assert wait_until(lambda: has_address(resource_netns, "10.60.1.10"), timeout_s=30,
                          interval_s=0.2), a.log()[-3000:]
        assert not Path(f"/run/netns/{Names(b.instance).resource_netns(resource_id)}").exists()
        listener = subprocess.Popen(["ip", "netns", "exec", resource_netns, sys.executable,
                                     "-u", "-c", WHO, "8080"], stdout=subprocess.PIPE,
                                    text=True)
        assert listener.stdout is not None and listener.stdout.readline().strip() == "listening"

        # both agents leased a block of the ENI; B's range is what the resource sees
        assert wait_until(lambda: set(port_blocks(database)) == {f"lp{a.instance}",
                                                                  f"lp{b.instance}"},
                          timeout_s=30, interval_s=0.5), port_blocks(database)
        blocks = port_blocks(database)
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
        assert "host-b" in _host_rows_with(database, "in-vpc")
    finally:
        if listener is not None:
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
