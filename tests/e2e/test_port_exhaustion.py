"""Port exhaustion of a Hyperplane ENI, end to end through boto3 on a live server whose ENIs are
narrowed to two SNAT ports (`serve --eni-snat-ports 2000-2001`, the testing knob).

Shown here: a VPC function's environment holds two connections to a program in its subnet (a
`lambdaplane run` resource); its third connection to the same destination is refused at once
(not a connect timeout); GET /metrics counts the port-allocation error on that ENI; the next
new environment of the function is put on a second ENI of the same subnet and groups (visible
in DescribeNetworkInterfaces, and as the source address the program sees) while the first
environment stays on the first ENI."""
from __future__ import annotations

import concurrent.futures
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import live_server
from tests.e2e.test_metrics import scrape, value
from tests.e2e.vpc_support import resource, wait_until
from tests.harness import LiveServer, create_python_function

pytestmark = pytest.mark.root

SVC_IP, PORT = "10.72.1.20", 8080
WAIT = {"Delay": 0.2, "MaxAttempts": 150}
ERRORS = "lambdaplane_eni_port_allocation_errors_total"

# Answers each connection with the address it came from, then holds it until the client closes.
PEER_SERVER = r"""
import socket, sys, threading
srv = socket.create_server(("0.0.0.0", int(sys.argv[1])), backlog=64)
def serve(conn, peer):
    with conn:
        try:
            conn.sendall(peer[0].encode())
            conn.recv(10)
        except OSError:
            pass
print("listening", flush=True)
while True:
    conn, peer = srv.accept()
    threading.Thread(target=serve, args=(conn, peer), daemon=True).start()
"""

HANDLER = r"""
import socket, time

HELD = []  # connections kept open across invocations: this environment's flows stay

def connect(host, port):
    try:
        s = socket.create_connection((host, port), timeout=5)
    except socket.timeout:
        return "timeout", None
    except ConnectionRefusedError:
        return "refused", None
    except OSError as e:
        return f"error{e.errno}", None
    s.settimeout(5)
    return "ok " + s.recv(100).decode(), s

def handler(event, context):
    time.sleep(event.get("sleep", 0))
    outcomes = []
    for _ in range(event["count"]):
        started = time.monotonic()
        outcome, sock = connect(event["host"], event["port"])
        outcomes.append({"outcome": outcome, "seconds": time.monotonic() - started})
        if sock is not None:
            HELD.append(sock)
    return outcomes
"""


@pytest.fixture(scope="module")
def narrow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    yield from live_server(tmp_path_factory.mktemp("lp"), "--eni-snat-ports", "2000-2001")


def _invoke(server: LiveServer, event: dict) -> list[dict]:
    resp = server.lambda_().invoke(FunctionName="ports", Payload=json.dumps(event))
    body = json.loads(resp["Payload"].read())
    assert "FunctionError" not in resp, body
    return body


def _lambda_enis(ec2, subnet: str) -> list[dict]:
    return ec2.describe_network_interfaces(Filters=[
        {"Name": "interface-type", "Values": ["lambda"]},
        {"Name": "subnet-id", "Values": [subnet]}])["NetworkInterfaces"]


def test_exhausted_eni_refuses_counts_and_sends_new_environments_to_a_second_eni(
        narrow_server: LiveServer, tmp_path: Path) -> None:
    server = narrow_server
    lam, ec2 = server.lambda_(), server.ec2()
    vpc = ec2.create_vpc(CidrBlock="10.72.0.0/16")["Vpc"]["VpcId"]
    services = ec2.create_subnet(VpcId=vpc, CidrBlock="10.72.1.0/24")["Subnet"]["SubnetId"]
    apps = ec2.create_subnet(VpcId=vpc, CidrBlock="10.72.2.0/24")["Subnet"]["SubnetId"]
    fn_group = ec2.create_security_group(GroupName="fn", Description="fn", VpcId=vpc)["GroupId"]
    svc_group = ec2.create_security_group(GroupName="svc", Description="svc",
                                          VpcId=vpc)["GroupId"]
    ec2.authorize_security_group_ingress(GroupId=svc_group, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": PORT, "ToPort": PORT,
         "IpRanges": [{"CidrIp": "10.72.0.0/16"}]}])
    argv = [sys.executable, "-u", "-c", PEER_SERVER, str(PORT)]
    with resource(server, services, [svc_group], ip=SVC_IP, argv=argv, name="peer") as svc:
        assert svc.proc.stdout is not None and svc.proc.stdout.readline().strip() == "listening"
        create_python_function(lam, "ports", HANDLER, wait=False, Timeout=30, VpcConfig={
            "SubnetIds": [apps], "SecurityGroupIds": [fn_group]})
        lam.get_waiter("function_active_v2").wait(FunctionName="ports", WaiterConfig=WAIT)
        [first] = _lambda_enis(ec2, apps)
        first_ip = first["PrivateIpAddress"]
        assert scrape(server).get((ERRORS, (("eni", first["NetworkInterfaceId"]),
                                            ("subnet", apps), ("vpc", vpc)))) == 0

        # one environment: two ports, so two connections to the program fit; the third is
        # refused at once by the ENI (the function's 5 s connect timeout does not run out)
        outcomes = _invoke(server, {"host": SVC_IP, "port": PORT, "count": 3})
        assert [o["outcome"] for o in outcomes] == [f"ok {first_ip}"] * 2 + ["refused"]
        assert outcomes[2]["seconds"] < 4

        labels = {"eni": first["NetworkInterfaceId"], "subnet": apps, "vpc": vpc}
        assert wait_until(lambda: value(scrape(server), ERRORS, **labels) > 0, timeout_s=15)
        assert len(_lambda_enis(ec2, apps)) == 1  # an ENI is made for new environments only

        # two at once: the first environment (warm, still holding both ports) and a new one,
        # which must land on a further ENI of the same subnet and groups
        event = {"host": SVC_IP, "port": PORT, "count": 1, "sleep": 1}
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            results = [r[0]["outcome"] for r in pool.map(lambda e: _invoke(server, e),
                                                         [event, event])]
        enis = _lambda_enis(ec2, apps)
        assert len(enis) == 2
        [second] = [e for e in enis if e["NetworkInterfaceId"] != first["NetworkInterfaceId"]]
        assert [g["GroupId"] for g in second["Groups"]] == [fn_group]
        assert second["SubnetId"] == apps and second["RequesterManaged"] is True
        assert second["PrivateIpAddress"] != first_ip
        # the old environment stayed on the exhausted ENI; the new one reached the program
        # from the second ENI's address
        assert sorted(results) == sorted(["refused", f"ok {second['PrivateIpAddress']}"])

        # the second refusal is counted too (errors are sampled every second), on the first
        # ENI only
        assert wait_until(lambda: value(scrape(server), ERRORS, **labels) >= 2, timeout_s=15)
        assert value(scrape(server), ERRORS, eni=second["NetworkInterfaceId"], subnet=apps,
                     vpc=vpc) == 0
        lam.delete_function(FunctionName="ports")
