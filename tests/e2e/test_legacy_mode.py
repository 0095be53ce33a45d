"""Legacy (pre-2019) VPC mode through boto3 against `serve --vpc-mode legacy`: creating a VPC
function makes no ENI; every execution environment takes an address of its own during its cold
start and is seen by the VPC from that address; a /28 subnet (11 usable addresses) runs out at
the 12th concurrent environment with a 502 SubnetIPAddressLimitReachedException, and the
addresses come back when the environments are reaped."""
from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Iterator

import pytest
from botocore.exceptions import ClientError

from tests.conftest import live_server
from tests.e2e.vpc_support import resource, wait_until
from tests.harness import LiveServer, create_python_function

pytestmark = pytest.mark.root

KEEP_ALIVE_S = 3
HANDLER = """
import socket, time

def handler(event, context):
    if "connect" in event:
        host, port = event["connect"]
        with socket.create_connection((host, port), timeout=3) as s:
            return {"reply": s.recv(100).decode()}
    while time.time() < event.get("until", 0):  # hold the environment busy until then
        time.sleep(0.05)
    return {"ok": True}
"""
# A listener that tells each client the address it came from (what the VPC sees).
PEER_LISTENER = r"""
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(64)
print("listening", flush=True)
while True:
    c, peer = s.accept()
    c.sendall(("peer " + peer[0]).encode()); c.close()
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    yield from live_server(tmp_path_factory.mktemp("lp"), "--vpc-mode", "legacy",
                           "--keep-alive", str(KEEP_ALIVE_S), "--pool-size", "4")


@pytest.fixture(scope="module")
def net(server: LiveServer) -> dict[str, str]:
    """A VPC with a /28 for the function, a /24 for a service, and their groups."""
    ec2 = server.ec2()
    vpc = ec2.create_vpc(CidrBlock="10.60.0.0/16")["Vpc"]["VpcId"]
    small = ec2.create_subnet(VpcId=vpc, CidrBlock="10.60.1.0/28")["Subnet"]["SubnetId"]
    services = ec2.create_subnet(VpcId=vpc, CidrBlock="10.60.2.0/24")["Subnet"]["SubnetId"]
    fn = ec2.create_security_group(GroupName="fn", Description="fn", VpcId=vpc)["GroupId"]
    svc = ec2.create_security_group(GroupName="svc", Description="svc", VpcId=vpc)["GroupId"]
    ec2.authorize_security_group_ingress(GroupId=svc, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 7000, "ToPort": 7000,
         "UserIdGroupPairs": [{"GroupId": fn}]}])
    return {"vpc": vpc, "small": small, "services": services, "fn": fn, "svc": svc}


def _available(ec2, subnet: str) -> int:
    return ec2.describe_subnets(SubnetIds=[subnet])["Subnets"][0]["AvailableIpAddressCount"]


def _lambda_enis(ec2, subnet: str) -> list[dict]:
    return ec2.describe_network_interfaces(Filters=[
        {"Name": "subnet-id", "Values": [subnet]},
        {"Name": "interface-type", "Values": ["lambda"]}])["NetworkInterfaces"]


def _function(server: LiveServer, net: dict[str, str], name: str) -> None:
    create_python_function(server.lambda_(), name, HANDLER, Timeout=60, VpcConfig={
        "SubnetIds": [net["small"]], "SecurityGroupIds": [net["fn"]]})


def _invoke(lam, name: str, event: dict) -> dict:
    resp = lam.invoke(FunctionName=name, Payload=json.dumps(event).encode())
    body = json.loads(resp["Payload"].read())
    assert "FunctionError" not in resp, body
    return body


def test_create_makes_no_eni_and_each_environment_has_its_own_address(
        server: LiveServer, net: dict[str, str]) -> None:
    ec2, lam = server.ec2(), server.lambda_()
    _function(server, net, "legacy-peer")
    conf = lam.get_function_configuration(FunctionName="legacy-peer")
    assert conf["State"] == "Active" and conf["VpcConfig"]["VpcId"] == net["vpc"]
    assert _lambda_enis(ec2, net["small"]) == [] and _available(ec2, net["small"]) == 11
    listener = [sys.executable, "-u", "-c", PEER_LISTENER, "7000"]
    with resource(server, net["services"], [net["svc"]], argv=listener) as svc:
        assert svc.proc.stdout is not None and svc.proc.stdout.readline().strip() == "listening"
        reply = _invoke(lam, "legacy-peer", {"connect": [svc.ip, 7000]})["reply"]
        enis = _lambda_enis(ec2, net["small"])
        assert len(enis) == 1 and _available(ec2, net["small"]) == 10
        eni = enis[0]
        # The service sees the environment's own ENI address, nothing else.
        assert reply == f"peer {eni['PrivateIpAddress']}"
        assert eni["Description"].startswith("AWS Lambda VPC ENI: ")
        assert eni["RequesterManaged"] is True and eni["Status"] == "in-use"
        assert [g["GroupId"] for g in eni["Groups"]] == [net["fn"]]
        # Reaped after the keep-alive: the ENI goes and its address is free again.
        assert wait_until(lambda: _lambda_enis(ec2, net["small"]) == [], KEEP_ALIVE_S + 15)
        assert _available(ec2, net["small"]) == 11
    lam.delete_function(FunctionName="legacy-peer")


def test_subnet_runs_out_of_addresses_then_recovers(server: LiveServer,
                                                    net: dict[str, str]) -> None:
    ec2, lam = server.ec2(), server.lambda_()
    _function(server, net, "legacy-burst")
    assert wait_until(lambda: _available(ec2, net["small"]) == 11, KEEP_ALIVE_S + 15)
    until = time.time() + 20  # every environment stays busy until then
    errors: list[BaseException] = []

    def hold() -> None:
        try:
            _invoke(server.lambda_(), "legacy-burst", {"until": until})
        except BaseException as e:  # reported by the main thread
            errors.append(e)

    threads: list[threading.Thread] = []
    try:
        for k in range(1, 12):
            threads.append(threading.Thread(target=hold, daemon=True))
            threads[-1].start()
            # one more environment, one address less
            assert wait_until(lambda: _available(ec2, net["small"]) == 11 - k, 10), \
                (k, _available(ec2, net["small"]), errors)
        assert time.time() < until, "the ramp outlived the environments' hold"
        enis = _lambda_enis(ec2, net["small"])
        assert len(enis) == 11 and len({e["PrivateIpAddress"] for e in enis}) == 11
        with pytest.raises(ClientError) as failed:
            lam.invoke(FunctionName="legacy-burst", Payload=b"{}")
        err = failed.value.response
        assert err["Error"]["Code"] == "SubnetIPAddressLimitReachedException"
        assert err["ResponseMetadata"]["HTTPStatusCode"] == 502
        assert err["Error"]["Message"] == (
            "Lambda was not able to set up VPC access for the Lambda function because one or "
            "more configured subnets has no available IP addresses.")
    finally:
        for t in threads:
            t.join(60)
    assert errors == []
    # Idle environments are reaped; every address comes back.
    assert wait_until(lambda: _available(ec2, net["small"]) == 11, KEEP_ALIVE_S + 15)
    assert _lambda_enis(ec2, net["small"]) == []
    assert _invoke(lam, "legacy-burst", {}) == {"ok": True}
    lam.delete_function(FunctionName="legacy-burst")
