"""VPC functions through Hyperplane ENIs, end to end through boto3: real functions in sandboxes
reaching real programs (`lambdaplane run`: PostgreSQL, TCP servers) in private subnets.

Shown here: functions with the same subnet + groups share one ENI and one address while 20 of
their environments hold connections at once (PostgreSQL sees all 20 from that address); another
group set gets another ENI; security groups decide reachability both ways (the database's
ingress, the function's egress); two VPCs with one CIDR stay apart; nothing in the VPC can open
a connection to a sandbox; a non-VPC function cannot reach the VPC; ENIs are protected and
deleted when unused; and the states, errors and waiters of AWS (Pending, InProgress with the old
configuration serving, Failed with reason codes, Inactive → 502 → Restoring → Active)."""
from __future__ import annotations

import concurrent.futures
import contextlib
import json
import pwd
import sqlite3
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import botocore.config
import pytest
from botocore.exceptions import ClientError, WaiterError

from lambdaplane.net import ns
from lambdaplane.net.names import Names
from tests.conftest import live_server
from tests.e2e.vpc_support import PG_BIN, Resource, postgres_cluster, resource, wait_until
from tests.harness import LiveServer, create_python_function

pytestmark = pytest.mark.root

DB_IP, SVC_IP = "10.70.1.10", "10.70.1.20"
LABEL_PORT, CALLBACK_PORT = 8080, 9100
WAIT = {"Delay": 0.2, "MaxAttempts": 150}

# A TCP server answering "<label> <peer address>", then holding the connection until the
# client closes it (so held connections stay tracked flows).
LABEL_SERVER = r"""
import socket, sys, threading
label, port = sys.argv[1], int(sys.argv[2])
srv = socket.create_server(("0.0.0.0", port), backlog=256)
def serve(conn, peer):
    with conn:
        try:
            conn.sendall(f"{label} {peer[0]}".encode())
            conn.recv(10)
        except OSError:
            pass
print("listening", flush=True)
while True:
    conn, peer = srv.accept()
    threading.Thread(target=serve, args=(conn, peer), daemon=True).start()
"""

# Told "<port> <sandbox address>" by a function, tries to open a connection back to the
# address it saw (the ENI) and to the sandbox's own address, and answers what happened.
CALLBACK_SERVER = r"""
import socket, sys, threading
def try_connect(host, port):
    try:
        socket.create_connection((host, port), timeout=1.5).close()
        return "connected"
    except socket.timeout:
        return "timeout"
    except OSError as e:
        return f"error{e.errno}"
def serve(conn, peer):
    with conn:
        port, sandbox = conn.recv(100).decode().split()
        conn.sendall(f"{try_connect(peer[0], int(port))} {try_connect(sandbox, int(port))}"
                     .encode())
srv = socket.create_server(("0.0.0.0", int(sys.argv[1])))
print("listening", flush=True)
while True:
    conn, peer = srv.accept()
    threading.Thread(target=serve, args=(conn, peer), daemon=True).start()
"""

HANDLER = r"""
import os, socket, subprocess, time

def tcp(host, port, timeout):
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            return s.recv(200).decode()
    except socket.timeout:
        return "timeout"
    except OSError as e:
        return f"error{e.errno}"

def hold(host, port, count, seconds):
    socks = [socket.create_connection((host, port), timeout=5) for _ in range(count)]
    answers = [s.recv(200).decode() for s in socks]
    time.sleep(seconds)
    for s in socks:
        s.close()
    return answers

def psql(host, want):
    # Every environment holds its connection until it has seen `want` connections from its
    # own address open at once. A psql script, one statement per round: pg_stat_activity is a
    # snapshot per transaction, so the waiting cannot be one server-side loop.
    round_ = (f"SELECT count(*) >= {want} AS done, count(*) AS n FROM pg_stat_activity "
              "WHERE client_addr = inet_client_addr() \\gset\n"
              "\\if :done\n\\echo seen :addr :n\nSELECT pg_sleep(2);\n\\q\n\\endif\n"
              "SELECT pg_sleep(0.05);\n")
    script = "SELECT host(inet_client_addr()) AS addr \\gset\n" + round_ * 800
    args = ["psql", "-X", "-qtA", "-h", host, "-U", "postgres", "-v", "ON_ERROR_STOP=1",
            "-f", "-"]
    env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "PGCONNECT_TIMEOUT": "5"}
    out = subprocess.run(args, input=script, capture_output=True, text=True, timeout=55,
                         env=env)
    seen = [line.split() for line in out.stdout.splitlines() if line.startswith("seen ")]
    if out.returncode or not seen:
        return {"error": out.stderr.strip() or "never saw enough connections"}
    return {"address": seen[0][1], "count": int(seen[0][2])}

def callback(host, port):
    listener = socket.create_server(("0.0.0.0", 7000))
    listener.setblocking(False)
    with socket.create_connection((host, port), timeout=5) as s:
        me = s.getsockname()[0]
        s.sendall(f"7000 {me}".encode())
        s.settimeout(10)
        reply = s.recv(200).decode()
    try:
        listener.accept()
        accepted = True
    except BlockingIOError:
        accepted = False
    return {"me": me, "reply": reply, "accepted": accepted}

def handler(event, context):
    kind = event["kind"]
    if kind == "tcp":
        return tcp(event["host"], event["port"], event.get("timeout", 1.5))
    if kind == "hold":
        return hold(event["host"], event["port"], event["count"], event["seconds"])
    if kind == "psql":
        return psql(event["host"], event["want"])
    if kind == "callback":
        return callback(event["host"], event["port"])
    return "unknown"
"""


@dataclass
class Net:
    vpc: str
    db_subnet: str
    apps: str
    apps2: str
    tiny: str
    app: str  # function group the database admits
    other: str  # function group the database does not admit
    closed: str  # function group without egress rules
    db: str
    svc: str
    database: Resource | None = None


def _subnet(ec2, vpc: str, cidr: str) -> str:
    return ec2.create_subnet(VpcId=vpc, CidrBlock=cidr)["Subnet"]["SubnetId"]


def _group(ec2, vpc: str, name: str) -> str:
    return ec2.create_security_group(GroupName=name, Description=name, VpcId=vpc)["GroupId"]


def _python(server: LiveServer, name: str, **kwargs: object) -> dict:
    return create_python_function(server.lambda_(), name, HANDLER, wait=False, Timeout=60,
                                  **kwargs)


def _vpc_config(subnets: list[str], groups: list[str]) -> dict:
    return {"VpcConfig": {"SubnetIds": subnets, "SecurityGroupIds": groups}}


def _invoke(lam, name: str, event: dict) -> object:
    resp = lam.invoke(FunctionName=name, Payload=json.dumps(event))
    body = json.loads(resp["Payload"].read())
    assert "FunctionError" not in resp, body
    return body


def _error(call) -> dict:
    with pytest.raises(ClientError) as err:
        call()
    return err.value.response


def _lambda_enis(ec2, **filters: str) -> list[dict]:
    wanted = [{"Name": "interface-type", "Values": ["lambda"]}]
    wanted += [{"Name": k.replace("_", "-"), "Values": [v]} for k, v in filters.items()]
    return ec2.describe_network_interfaces(Filters=wanted)["NetworkInterfaces"]


def _free_ips(ec2, subnet: str) -> int:
    return ec2.describe_subnets(SubnetIds=[subnet])["Subnets"][0]["AvailableIpAddressCount"]


@pytest.fixture(scope="module")
def pg_data() -> Iterator[Path]:
    with postgres_cluster() as data:
        yield data


def _started(found: Resource) -> Resource:
    assert found.proc.stdout is not None and found.proc.stdout.readline().strip() == "listening"
    return found


@pytest.fixture(scope="module")
def net(server: LiveServer, pg_data: Path) -> Iterator[Net]:
    """One VPC: a database subnet running PostgreSQL (admits group `app` on 5432) and the
    label/callback servers (admit the whole VPC), and subnets for functions."""
    ec2 = server.ec2()
    vpc = ec2.create_vpc(CidrBlock="10.70.0.0/16")["Vpc"]["VpcId"]
    n = Net(vpc, _subnet(ec2, vpc, "10.70.1.0/24"), _subnet(ec2, vpc, "10.70.2.0/24"),
            _subnet(ec2, vpc, "10.70.3.0/24"), _subnet(ec2, vpc, "10.70.4.0/28"),
            _group(ec2, vpc, "app"), _group(ec2, vpc, "other"), _group(ec2, vpc, "closed"),
            _group(ec2, vpc, "db"), _group(ec2, vpc, "svc"))
    ec2.authorize_security_group_ingress(GroupId=n.db, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 5432, "ToPort": 5432,
         "UserIdGroupPairs": [{"GroupId": n.app}]}])
    ec2.authorize_security_group_ingress(GroupId=n.svc, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": LABEL_PORT, "ToPort": CALLBACK_PORT,
         "IpRanges": [{"CidrIp": "10.70.0.0/16"}]}])
    ec2.revoke_security_group_egress(GroupId=n.closed, IpPermissions=[
        {"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
    pg = pwd.getpwnam("postgres")
    postgres = ["setpriv", f"--reuid={pg.pw_uid}", f"--regid={pg.pw_gid}", "--init-groups",
                str(PG_BIN / "postgres"), "-D", str(pg_data), "-k", str(pg_data),
                "-c", f"listen_addresses={DB_IP}", "-c", "max_connections=100"]
    label = [sys.executable, "-u", "-c", LABEL_SERVER, "svc", str(LABEL_PORT)]
    callback = [sys.executable, "-u", "-c", CALLBACK_SERVER, str(CALLBACK_PORT)]
    with resource(server, n.db_subnet, [n.db], ip=DB_IP, argv=postgres, name="pg") as db, \
            resource(server, n.db_subnet, [n.svc], ip=SVC_IP, argv=label, name="label") as svc, \
            resource(server, n.db_subnet, [n.svc], ip="10.70.1.30", argv=callback,
                     name="callback") as cb:
        _started(svc)
        _started(cb)
        n.database = db
        yield n


def test_vpc_config_errors_are_aws_s(server: LiveServer, net: Net) -> None:
    lam, ec2 = server.lambda_(), server.ec2()
    missing = "subnet-0123456789abcdef0"
    err = _error(lambda: _python(server, "bad", **_vpc_config([missing], [net.app])))
    assert err["Error"]["Code"] == "InvalidParameterValueException"
    assert err["Error"]["Message"] == (
        "Error occurred while DescribeSubnets. EC2 Error Code: InvalidSubnetID.NotFound. "
        f"EC2 Error Message: The subnet ID '{missing}' does not exist")
    err = _error(lambda: _python(server, "bad",
                                 **_vpc_config([net.apps], ["sg-0123456789abcdef0"])))
    assert err["Error"]["Message"] == (
        "Error occurred while DescribeSecurityGroups. EC2 Error Code: InvalidGroup.NotFound. "
        "EC2 Error Message: The security group 'sg-0123456789abcdef0' does not exist")
    err = _error(lambda: _python(server, "bad", **_vpc_config([net.apps], [])))
    assert err["Error"]["Message"] == \
        "SubnetIds and SecurityIds must coexist or be both empty list."
    elsewhere = ec2.create_vpc(CidrBlock="10.71.0.0/16")["Vpc"]["VpcId"]
    foreign_subnet = _subnet(ec2, elsewhere, "10.71.1.0/24")
    foreign_group = _group(ec2, elsewhere, "foreign")
    try:
        err = _error(lambda: _python(server, "bad",
                                     **_vpc_config([net.apps, foreign_subnet], [net.app])))
        assert err["Error"]["Code"] == "InvalidParameterValueException"
        err = _error(lambda: _python(server, "bad", **_vpc_config([net.apps], [foreign_group])))
        assert err["Error"]["Code"] == "InvalidParameterValueException"
        assert "same VPC" in err["Error"]["Message"]
    finally:
        ec2.delete_subnet(SubnetId=foreign_subnet)
        ec2.delete_security_group(GroupId=foreign_group)
        ec2.delete_vpc(VpcId=elsewhere)
    too_many = [f"subnet-{i:017x}" for i in range(17)]
    err = _error(lambda: _python(server, "bad", **_vpc_config(too_many, [net.app])))
    assert err["Error"]["Code"] == "ValidationException"
    assert "Member must have length less than or equal to 16" in err["Error"]["Message"]
    err = _error(lambda: _python(server, "bad", **_vpc_config(
        [net.apps], [net.app, net.other, net.closed, net.db, net.svc, "sg-0123456789abcdef0"])))
    assert "Member must have length less than or equal to 5" in err["Error"]["Message"]
    assert _error(lambda: lam.get_function(FunctionName="bad"))["Error"]["Code"] == \
        "ResourceNotFoundException"


def test_pending_then_active_and_one_shared_eni_for_twenty_environments(
        server: LiveServer, net: Net) -> None:
    lam, ec2 = server.lambda_(), server.ec2()
    free_before = _free_ips(ec2, net.apps)
    created = _python(server, "hp-a", **_vpc_config([net.apps], [net.app]))
    assert (created["State"], created["StateReasonCode"]) == ("Pending", "Creating")
    assert created["StateReason"] == "The function is being created."
    assert created["VpcConfig"]["VpcId"] == net.vpc
    err = _error(lambda: lam.invoke(FunctionName="hp-a", Payload=b"{}"))
    assert err["ResponseMetadata"]["HTTPStatusCode"] == 409
    assert err["Error"]["Code"] == "ResourceConflictException"
    assert err["Error"]["Message"] == ("The operation cannot be performed at this time. The "
                                       "function is currently in the following state: Pending")
    lam.get_waiter("function_active_v2").wait(FunctionName="hp-a", WaiterConfig=WAIT)
    # the same subnet and the same groups in another order: the same ENI
    _python(server, "hp-b", **_vpc_config([net.apps], [net.app]))
    lam.get_waiter("function_active_v2").wait(FunctionName="hp-b", WaiterConfig=WAIT)
    config = lam.get_function_configuration(FunctionName="hp-b")
    assert config["State"] == "Active" and config["VpcConfig"] == {
        "SubnetIds": [net.apps], "SecurityGroupIds": [net.app], "VpcId": net.vpc,
        "Ipv6AllowedForDualStack": False}
    enis = _lambda_enis(ec2, subnet_id=net.apps)
    assert len(enis) == 1
    eni = enis[0]
    assert eni["Description"].startswith("AWS Lambda VPC ENI-hp-a-")
    assert eni["RequesterManaged"] is True and eni["Status"] == "in-use"
    assert [g["GroupId"] for g in eni["Groups"]] == [net.app]
    assert _free_ips(ec2, net.apps) == free_before - 1

    def run(name: str) -> dict:
        return _invoke(server.lambda_(), name, {"kind": "psql", "host": DB_IP, "want": 20})

    names = ["hp-a", "hp-b"] * 10
    with concurrent.futures.ThreadPoolExecutor(len(names)) as pool:
        results = list(pool.map(run, names))
    assert all("error" not in r for r in results), results
    # every environment's connection came from the ENI's one address, 20 of them at once
    assert {r["address"] for r in results} == {eni["PrivateIpAddress"]}
    assert min(r["count"] for r in results) >= 20
    assert len(_lambda_enis(ec2, subnet_id=net.apps)) == 1
    assert _free_ips(ec2, net.apps) == free_before - 1


def test_another_group_set_gets_another_eni_and_groups_decide_reachability(
        server: LiveServer, net: Net) -> None:
    lam, ec2 = server.lambda_(), server.ec2()
    _python(server, "hp-other", **_vpc_config([net.apps], [net.other, net.app]))
    _python(server, "hp-only-other", **_vpc_config([net.apps], [net.other]))
    _python(server, "hp-closed", **_vpc_config([net.apps], [net.closed]))
    for name in ("hp-other", "hp-only-other", "hp-closed"):
        lam.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig=WAIT)
    by_groups = {tuple(sorted(g["GroupId"] for g in e["Groups"])): e
                 for e in _lambda_enis(ec2, subnet_id=net.apps)}
    assert tuple(sorted([net.other, net.app])) in by_groups and (net.other,) in by_groups
    assert len({e["PrivateIpAddress"] for e in by_groups.values()}) == len(by_groups)
    two_groups = by_groups[tuple(sorted([net.other, net.app]))]["PrivateIpAddress"]
    # the database admits members of `app`: an ENI with app (and other) gets in, other alone not
    assert _invoke(lam, "hp-other", {"kind": "psql", "host": DB_IP, "want": 1}) == \
        {"address": two_groups, "count": 1}
    refused = _invoke(lam, "hp-only-other", {"kind": "psql", "host": DB_IP, "want": 1})
    assert "timeout" in refused["error"]
    # the label server admits the whole VPC; `closed` has no egress rule until one is added
    probe = {"kind": "tcp", "host": SVC_IP, "port": LABEL_PORT}
    assert _invoke(lam, "hp-only-other", probe) == \
        f"svc {by_groups[(net.other,)]['PrivateIpAddress']}"
    assert _invoke(lam, "hp-closed", probe) == "timeout"
    ec2.authorize_security_group_egress(GroupId=net.closed, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": LABEL_PORT, "ToPort": LABEL_PORT,
         "IpRanges": [{"CidrIp": "10.70.1.0/24"}]}])
    assert _invoke(lam, "hp-closed", probe).startswith("svc 10.70.2.")


def test_nothing_in_the_vpc_opens_a_connection_to_a_sandbox(server: LiveServer, net: Net) -> None:
    lam = server.lambda_()
    _python(server, "hp-listen", **_vpc_config([net.apps], [net.app]))
    lam.get_waiter("function_active_v2").wait(FunctionName="hp-listen", WaiterConfig=WAIT)
    result = _invoke(lam, "hp-listen", {"kind": "callback", "host": "10.70.1.30",
                                        "port": CALLBACK_PORT})
    assert result["me"].startswith("100.64.")  # the sandbox's own address, never seen outside
    to_eni, to_sandbox = result["reply"].split()
    assert to_eni != "connected" and to_sandbox != "connected"
    assert result["accepted"] is False


def test_non_vpc_function_cannot_reach_the_vpc(server: LiveServer, net: Net) -> None:
    lam = server.lambda_()
    _python(server, "hp-plain")
    lam.get_waiter("function_active_v2").wait(FunctionName="hp-plain", WaiterConfig=WAIT)
    answer = _invoke(lam, "hp-plain", {"kind": "tcp", "host": SVC_IP, "port": LABEL_PORT})
    assert not answer.startswith("svc"), answer


def test_environments_spread_over_the_function_subnets(server: LiveServer, net: Net) -> None:
    lam, ec2 = server.lambda_(), server.ec2()
    _python(server, "hp-spread", **_vpc_config([net.apps, net.apps2], [net.app]))
    lam.get_waiter("function_active_v2").wait(FunctionName="hp-spread", WaiterConfig=WAIT)
    eni2 = _lambda_enis(ec2, subnet_id=net.apps2)
    assert len(eni2) == 1

    def run(_i: int) -> list[str]:
        return _invoke(server.lambda_(), "hp-spread", {"kind": "hold", "host": SVC_IP,
                                                       "port": LABEL_PORT, "count": 1,
                                                       "seconds": 1.5})
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        seen = {answer for answers in pool.map(run, range(4)) for answer in answers}
    eni1 = [e for e in _lambda_enis(ec2, subnet_id=net.apps)
            if [g["GroupId"] for g in e["Groups"]] == [net.app]]
    assert len(eni1) == 1  # shared with every other function on (apps, {app})
    assert {s.split()[1] for s in seen} == {eni1[0]["PrivateIpAddress"],
                                            eni2[0]["PrivateIpAddress"]}


def test_lambda_enis_are_protected_and_go_when_unused(server: LiveServer, net: Net) -> None:
    lam, ec2 = server.lambda_(), server.ec2()
    subnet = _subnet(ec2, net.vpc, "10.70.9.0/24")
    group = _group(ec2, net.vpc, "short-lived")
    _python(server, "hp-gone", **_vpc_config([subnet], [group]))
    lam.get_waiter("function_active_v2").wait(FunctionName="hp-gone", WaiterConfig=WAIT)
    (eni,) = _lambda_enis(ec2, subnet_id=subnet)
    err = _error(lambda: ec2.delete_network_interface(NetworkInterfaceId=eni["NetworkInterfaceId"]))
    assert err["Error"]["Code"] == "InvalidNetworkInterface.InUse"
    err = _error(lambda: ec2.delete_subnet(SubnetId=subnet))
    assert err["Error"]["Code"] == "DependencyViolation"
    err = _error(lambda: ec2.delete_security_group(GroupId=group))
    assert err["Error"]["Code"] == "DependencyViolation"
    assert err["Error"]["Message"] == f"resource {group} has a dependent object"
    assert _invoke(lam, "hp-gone", {"kind": "tcp", "host": SVC_IP, "port": LABEL_PORT}) == \
        f"svc {eni['PrivateIpAddress']}"
    # empty lists detach; the ENI goes once no function (and no environment) uses it
    updated = lam.update_function_configuration(FunctionName="hp-gone", VpcConfig={
        "SubnetIds": [], "SecurityGroupIds": []})
    assert updated["LastUpdateStatus"] == "InProgress"
    lam.get_waiter("function_updated_v2").wait(FunctionName="hp-gone", WaiterConfig=WAIT)
    config = lam.get_function_configuration(FunctionName="hp-gone")
    assert config["VpcConfig"]["SubnetIds"] == [] and config["VpcConfig"]["VpcId"] == ""
    assert wait_until(lambda: _lambda_enis(ec2, subnet_id=subnet) == [], timeout_s=20)
    ec2.delete_subnet(SubnetId=subnet)
    ec2.delete_security_group(GroupId=group)
    lam.delete_function(FunctionName="hp-gone")


def test_update_serves_the_old_configuration_until_it_ends(server: LiveServer, net: Net) -> None:
    lam, ec2 = server.lambda_(), server.ec2()
    _python(server, "hp-move", **_vpc_config([net.apps], [net.app]))
    lam.get_waiter("function_active_v2").wait(FunctionName="hp-move", WaiterConfig=WAIT)
    db_probe = {"kind": "psql", "host": DB_IP, "want": 1}
    assert "address" in _invoke(lam, "hp-move", db_probe)
    group = _group(ec2, net.vpc, "moved")  # a new group set: a new ENI is made
    updated = lam.update_function_configuration(FunctionName="hp-move", VpcConfig={
        "SubnetIds": [net.apps], "SecurityGroupIds": [group]})
    assert (updated["State"], updated["LastUpdateStatus"]) == ("Active", "InProgress")
    err = _error(lambda: lam.update_function_configuration(FunctionName="hp-move", Timeout=30))
    assert err["Error"]["Code"] == "ResourceConflictException"
    assert "An update is in progress for resource: " in err["Error"]["Message"]
    # meanwhile the old configuration (group app, admitted by the database) serves invokes
    assert "address" in _invoke(lam, "hp-move", db_probe)
    lam.get_waiter("function_updated_v2").wait(FunctionName="hp-move", WaiterConfig=WAIT)
    assert lam.get_function_configuration(FunctionName="hp-move")["LastUpdateStatus"] == \
        "Successful"
    assert "timeout" in _invoke(lam, "hp-move", db_probe)["error"]  # `moved` is not admitted
    lam.delete_function(FunctionName="hp-move")
    assert wait_until(lambda: _lambda_enis(ec2, group_id=group) == [], timeout_s=20)
    ec2.delete_security_group(GroupId=group)


def test_no_free_address_fails_with_aws_reason_codes(server: LiveServer, net: Net) -> None:
    lam, ec2 = server.lambda_(), server.ec2()
    for _ in range(_free_ips(ec2, net.tiny)):  # fill the /28 with plain interfaces
        ec2.create_network_interface(SubnetId=net.tiny)
    try:
        _python(server, "hp-full", **_vpc_config([net.tiny], [net.app]))
        with pytest.raises(WaiterError):
            lam.get_waiter("function_active_v2").wait(FunctionName="hp-full", WaiterConfig=WAIT)
        config = lam.get_function_configuration(FunctionName="hp-full")
        assert (config["State"], config["StateReasonCode"]) == ("Failed",
                                                                "SubnetOutOfIPAddresses")
        err = _error(lambda: lam.invoke(FunctionName="hp-full", Payload=b"{}"))
        assert err["Error"]["Message"].endswith("in the following state: Failed")

        _python(server, "hp-stays", **_vpc_config([net.apps], [net.app]))
        lam.get_waiter("function_active_v2").wait(FunctionName="hp-stays", WaiterConfig=WAIT)
        lam.update_function_configuration(FunctionName="hp-stays", VpcConfig={
            "SubnetIds": [net.tiny], "SecurityGroupIds": [net.other]})
        with pytest.raises(WaiterError):
            lam.get_waiter("function_updated_v2").wait(FunctionName="hp-stays",
                                                       WaiterConfig=WAIT)
        config = lam.get_function_configuration(FunctionName="hp-stays")
        assert (config["State"], config["LastUpdateStatus"],
                config["LastUpdateStatusReasonCode"]) == ("Active", "Failed",
                                                          "SubnetOutOfIPAddresses")
        assert config["VpcConfig"]["SubnetIds"] == [net.apps]  # still the old configuration
        assert "address" in _invoke(lam, "hp-stays", {"kind": "psql", "host": DB_IP, "want": 1})
        assert _lambda_enis(ec2, subnet_id=net.tiny) == []
    finally:
        for name in ("hp-full", "hp-stays"):
            lam.delete_function(FunctionName=name)
        for eni in ec2.describe_network_interfaces(Filters=[
                {"Name": "subnet-id", "Values": [net.tiny]}])["NetworkInterfaces"]:
            ec2.delete_network_interface(NetworkInterfaceId=eni["NetworkInterfaceId"])


def test_two_vpcs_with_one_cidr_stay_apart(server: LiveServer) -> None:
    lam, ec2 = server.lambda_(), server.ec2()
    made = []
    for label in ("x", "y"):
        vpc = ec2.create_vpc(CidrBlock="10.80.0.0/16")["Vpc"]["VpcId"]
        subnet = _subnet(ec2, vpc, "10.80.1.0/24")
        group = ec2.describe_security_groups(Filters=[
            {"Name": "vpc-id", "Values": [vpc]}, {"Name": "group-name", "Values": ["default"]}
        ])["SecurityGroups"][0]["GroupId"]  # members reach each other
        made.append((label, vpc, subnet, group))
    with resource(server, made[0][2], [made[0][3]], ip="10.80.1.50", name="x", argv=[
            sys.executable, "-u", "-c", LABEL_SERVER, "x", str(LABEL_PORT)]) as rx, \
            resource(server, made[1][2], [made[1][3]], ip="10.80.1.50", name="y", argv=[
                sys.executable, "-u", "-c", LABEL_SERVER, "y", str(LABEL_PORT)]) as ry:
        _started(rx)
        _started(ry)
        for label, _vpc, subnet, group in made:
            _python(server, f"hp-{label}", **_vpc_config([subnet], [group]))
        for label, _vpc, subnet, _group_id in made:
            lam.get_waiter("function_active_v2").wait(FunctionName=f"hp-{label}",
                                                      WaiterConfig=WAIT)
            (eni,) = _lambda_enis(ec2, subnet_id=subnet)
            answer = _invoke(lam, f"hp-{label}", {"kind": "tcp", "host": "10.80.1.50",
                                                  "port": LABEL_PORT})
            assert answer == f"{label} {eni['PrivateIpAddress']}"
        for label, *_ in made:
            lam.delete_function(FunctionName=f"hp-{label}")
    for _label, vpc, subnet, _group_id in made:
        assert wait_until(lambda s=subnet: _lambda_enis(ec2, subnet_id=s) == [], timeout_s=20)
        ec2.delete_subnet(SubnetId=subnet)
        ec2.delete_vpc(VpcId=vpc)


def _vpc_with_a_service(ec2: Any, prefix: str) -> tuple[str, str, str, str]:
    """A VPC `<prefix>.0.0/16` with subnet `<prefix>.1.0/24`, a function group and a service
    group that admits the label port from it: (vpc, subnet, function group, service group)."""
    vpc = ec2.create_vpc(CidrBlock=f"{prefix}.0.0/16")["Vpc"]["VpcId"]
    subnet = _subnet(ec2, vpc, f"{prefix}.1.0/24")
    group, svc = _group(ec2, vpc, "fn"), _group(ec2, vpc, "svc")
    ec2.authorize_security_group_ingress(GroupId=svc, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": LABEL_PORT, "ToPort": LABEL_PORT,
         "UserIdGroupPairs": [{"GroupId": group}]}])
    return vpc, subnet, group, svc


@contextlib.contextmanager
def _label_service(server: LiveServer, subnet: str, group: str, ip: str) -> Iterator[None]:
    """The label server as a `lambdaplane run` resource at `ip`, started."""
    with resource(server, subnet, [group], ip=ip, name="label", argv=[
            sys.executable, "-u", "-c", LABEL_SERVER, "svc", str(LABEL_PORT)]) as label:
        _started(label)
        yield


@pytest.fixture
def idle_server(tmp_path: Path) -> Iterator[LiveServer]:
    # long enough that a restart (stop, start, the first requests) stays inside it: with 3 s,
    # a server that took longer to come up found the function Inactive again
    yield from live_server(tmp_path, "--inactive-after", "8", "--eni-flow-limit", "3")


def test_idle_inactive_restore_flow_limit_and_restart(idle_server: LiveServer) -> None:
    server = idle_server
    lam, ec2 = server.lambda_(), server.ec2()
    _vpc, subnet, group, svc = _vpc_with_a_service(ec2, "10.90")
    with _label_service(server, subnet, svc, "10.90.1.10"):
        _python(server, "hp-idle", **_vpc_config([subnet], [group]))
        lam.get_waiter("function_active_v2").wait(FunctionName="hp-idle", WaiterConfig=WAIT)
        probe = {"kind": "tcp", "host": "10.90.1.10", "port": LABEL_PORT}
        (eni,) = _lambda_enis(ec2, subnet_id=subnet)
        assert _invoke(lam, "hp-idle", probe) == f"svc {eni['PrivateIpAddress']}"

        # idle past --inactive-after: Inactive/Idle, its ENI released
        assert wait_until(lambda: lam.get_function_configuration(
            FunctionName="hp-idle")["State"] == "Inactive", timeout_s=20)
        config = lam.get_function_configuration(FunctionName="hp-idle")
        assert config["StateReasonCode"] == "Idle"
        assert wait_until(lambda: _lambda_enis(ec2, subnet_id=subnet) == [], timeout_s=10)
        once = boto3.client("lambda", endpoint_url=server.endpoint, region_name="us-east-1",
                            aws_access_key_id="test", aws_secret_access_key="test",
                            config=botocore.config.Config(retries={"total_max_attempts": 1}))
        # (botocore would retry a 502, and the retry meets the function Pending)
        err = _error(lambda: once.invoke(FunctionName="hp-idle", Payload=b"{}"))
        assert err["ResponseMetadata"]["HTTPStatusCode"] == 502
        assert err["Error"]["Code"] == "ResourceNotReadyException"
        config = lam.get_function_configuration(FunctionName="hp-idle")
        assert config["State"] in ("Pending", "Active")
        if config["State"] == "Pending":
            assert config["StateReasonCode"] == "Restoring"
        lam.get_waiter("function_active_v2").wait(FunctionName="hp-idle", WaiterConfig=WAIT)
        (eni,) = _lambda_enis(ec2, subnet_id=subnet)
        assert _invoke(lam, "hp-idle", probe) == f"svc {eni['PrivateIpAddress']}"

        # past --eni-flow-limit 3 flows on the ENI, a further ENI for the same key
        def hold(_i: int) -> list[str]:
            return _invoke(server.lambda_(), "hp-idle", {**probe, "kind": "hold", "count": 4,
                                                        "seconds": 4})
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            first = pool.submit(hold, 0)
            time.sleep(2.5)  # its 4 held flows are open and have been sampled (every 1 s)
            second = pool.submit(hold, 1)
            answers = first.result() + second.result()
        enis = _lambda_enis(ec2, subnet_id=subnet)
        assert len(enis) == 2
        assert {a.split()[1] for a in answers} == {e["PrivateIpAddress"] for e in enis}

        # a restart rebuilds the same ENIs and data path from the store
        server.restart()
        lam = server.lambda_()
        assert {e["NetworkInterfaceId"] for e in _lambda_enis(server.ec2(), subnet_id=subnet)} \
            == {e["NetworkInterfaceId"] for e in enis}
        assert _invoke(lam, "hp-idle", probe).startswith("svc 10.90.1.")
        lam.delete_function(FunctionName="hp-idle")
        assert wait_until(lambda: _lambda_enis(server.ec2(), subnet_id=subnet) == [],
                          timeout_s=20)


def test_a_store_of_the_old_layout_moves_to_the_vpc_namespace(server: LiveServer) -> None:
    """A server from before 2026-12-06 kept each ENI's far end as `e<n>` in a namespace per
    VPC (`lp<i>-h-<vpc>`). Started on such a store, a server points the interfaces at their
    transits, removes the old namespaces, and the function reaches its VPC as before."""
    lam, ec2 = server.lambda_(), server.ec2()
    vpc, subnet, group, svc = _vpc_with_a_service(ec2, "10.91")
    names = Names(server.instance)
    old_plane = f"{names.prefix}-h-{vpc}"
    try:
        with _label_service(server, subnet, svc, "10.91.1.10"):
            _python(server, "hp-old", **_vpc_config([subnet], [group]))
            lam.get_waiter("function_active_v2").wait(FunctionName="hp-old", WaiterConfig=WAIT)
            probe = {"kind": "tcp", "host": "10.91.1.10", "port": LABEL_PORT}
            (eni,) = _lambda_enis(ec2, subnet_id=subnet)
            address = eni["PrivateIpAddress"]
            assert _invoke(lam, "hp-old", probe) == f"svc {address}"

            server.stop()
            with sqlite3.connect(server.data_dir / "lambdaplane.sqlite3") as db:
                (transit,) = db.execute("SELECT far_ifname FROM ec2_enis WHERE id=?",
                                        (eni["NetworkInterfaceId"],)).fetchone()
                n = int(transit.removeprefix(names.transit_veth(0)[:-1]))
                db.execute("UPDATE ec2_enis SET far_netns=?, far_ifname=? WHERE id=?",
                           (old_plane, f"e{n}", eni["NetworkInterfaceId"]))
            ns.create(old_plane)  # as the old server left it

            server.start()
            lam = server.lambda_()
            assert _invoke(lam, "hp-old", probe) == f"svc {address}"
            assert not ns.exists(old_plane)
            with sqlite3.connect(server.data_dir / "lambdaplane.sqlite3") as db:
                assert db.execute("SELECT far_netns, far_ifname FROM ec2_enis WHERE id=?",
                                  (eni["NetworkInterfaceId"],)).fetchone() \
                    == (names.worker_netns, names.transit_veth(n))
            lam.delete_function(FunctionName="hp-old")
            assert wait_until(lambda: _lambda_enis(server.ec2(), subnet_id=subnet) == [],
                              timeout_s=20)
    finally:
        ns.delete(old_plane)
