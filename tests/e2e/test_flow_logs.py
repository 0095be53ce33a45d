"""VPC flow logs end to end through boto3: CreateFlowLogs / DescribeFlowLogs / DeleteFlowLogs
with AWS's errors, and records made from the kernel for traffic this test makes — a VPC
function (through its Hyperplane ENI) connecting to a `lambdaplane run` resource: ACCEPT on
both ENIs with the ENI's address as the source, REJECT on the resource's ENI for a port its
group does not open, only REJECTs for TrafficType REJECT, nothing after DeleteFlowLogs.
The server aggregates over 2 s (`--flow-log-interval`) instead of 60 s."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from tests.conftest import live_server
from tests.e2e.vpc_support import resource, wait_until
from tests.harness import LiveServer, create_python_function

pytestmark = pytest.mark.root

INTERVAL_S = 2
WAIT = {"Delay": 0.2, "MaxAttempts": 150}
PROBE = """
import socket

def handler(event, context):
    try:
        s = socket.create_connection((event["host"], event["port"]), timeout=1.5)
        return s.recv(100).decode()
    except socket.timeout:
        return "timeout"
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    yield from live_server(tmp_path_factory.mktemp("lp"), "--flow-log-interval", str(INTERVAL_S))


def _aws(server: LiveServer, service: str, *args: str) -> dict:
    """The AWS CLI v1 (awscli from PyPI) against the server; its JSON output."""
    aws = shutil.which("aws", path=str(Path(sys.executable).parent)) or shutil.which("aws")
    if aws is None:
        pytest.skip("awscli is not installed (pip install -e '.[test]')")
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_CONFIG_FILE": os.devnull,
           "AWS_SHARED_CREDENTIALS_FILE": os.devnull}
    done = subprocess.run([aws, "--endpoint-url", server.endpoint, "--output", "json", service,
                           *args], capture_output=True, text=True, timeout=120, env=env,
                          check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout or "{}")


def _error(call) -> dict:
    with pytest.raises(ClientError) as err:
        call()
    return err.value.response["Error"]


def _records(logs, group: str, stream: str) -> list[list[str]]:
    try:
        events = logs.filter_log_events(logGroupName=group, logStreamNames=[stream])["events"]
    except ClientError:  # the group or stream is not there yet
        return []
    return [e["message"].split() for e in events]


def _has(records: list[list[str]], **want: str) -> bool:
    fields = ("version", "account", "eni", "src", "dst", "sport", "dport", "protocol",
              "packets", "bytes", "start", "end", "action", "status")
    return any(all(dict(zip(fields, r)).get(k) == v for k, v in want.items()) for r in records)


def test_flow_log_api_and_errors(server: LiveServer) -> None:
    ec2 = server.ec2()
    vpc = ec2.create_vpc(CidrBlock="10.80.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.80.1.0/24")["Subnet"]["SubnetId"]
    made = ec2.create_flow_logs(ResourceType="VPC", ResourceIds=[vpc, "vpc-0123456789abcdef0"],
                                TrafficType="ALL", LogGroupName="flows-api",
                                DeliverLogsPermissionArn="arn:aws:iam::000000000000:role/fl",
                                MaxAggregationInterval=60, TagSpecifications=[{
                                    "ResourceType": "vpc-flow-log",
                                    "Tags": [{"Key": "team", "Value": "net"}]}])
    assert len(made["FlowLogIds"]) == 1 and made["FlowLogIds"][0].startswith("fl-")
    assert made["Unsuccessful"] == [{"ResourceId": "vpc-0123456789abcdef0", "Error": {
        "Code": "InvalidVpcID.NotFound",
        "Message": "The vpc ID 'vpc-0123456789abcdef0' does not exist"}}]
    vpc_log = made["FlowLogIds"][0]
    again = ec2.create_flow_logs(ResourceType="VPC", ResourceIds=[vpc], TrafficType="ALL",
                                 LogGroupName="flows-api")
    assert again["FlowLogIds"] == [] and \
        again["Unsuccessful"][0]["Error"]["Code"] == "FlowLogAlreadyExists"
    for kind, code in (("Subnet", "InvalidSubnetID.NotFound"),
                       ("NetworkInterface", "InvalidNetworkInterfaceID.NotFound")):
        rid = {"Subnet": "subnet-", "NetworkInterface": "eni-"}[kind] + "0123456789abcdef0"
        failed = ec2.create_flow_logs(ResourceType=kind, ResourceIds=[rid], TrafficType="ALL",
                                      LogGroupName="flows-api")["Unsuccessful"]
        assert failed[0]["ResourceId"] == rid and failed[0]["Error"]["Code"] == code
    by_arn = ec2.create_flow_logs(
        ResourceType="Subnet", ResourceIds=[subnet], TrafficType="REJECT",
        LogDestinationType="cloud-watch-logs",
        LogDestination="arn:aws:logs:us-east-1:000000000000:log-group:flows-arn:*")
    subnet_log = by_arn["FlowLogIds"][0]
    assert _error(lambda: ec2.create_flow_logs(
        ResourceType="VPC", ResourceIds=[vpc], TrafficType="ALL", LogGroupName="x",
        MaxAggregationInterval=30))["Code"] == "InvalidParameterValue"
    assert _error(lambda: ec2.create_flow_logs(
        ResourceType="VPC", ResourceIds=[vpc], TrafficType="ALL", LogGroupName="x",
        LogFormat="${srcaddr} ${dstaddr}"))["Code"] == "InvalidParameter"
    assert _error(lambda: ec2.create_flow_logs(
        ResourceType="VPC", ResourceIds=[vpc], TrafficType="ALL"))["Code"] == "MissingParameter"
    shown = ec2.describe_flow_logs(FlowLogIds=[vpc_log])["FlowLogs"][0]
    assert shown["ResourceId"] == vpc and shown["TrafficType"] == "ALL"
    assert shown["LogGroupName"] == "flows-api" and shown["MaxAggregationInterval"] == 60
    assert shown["DeliverLogsStatus"] == "SUCCESS" and shown["FlowLogStatus"] == "ACTIVE"
    assert shown["LogDestination"] == \
        "arn:aws:logs:us-east-1:000000000000:log-group:flows-api"
    assert shown["LogFormat"].startswith("${version} ${account-id} ${interface-id}")
    assert shown["Tags"] == [{"Key": "team", "Value": "net"}]
    server.restart()  # durable: the store keeps them
    ec2 = server.ec2()
    assert ec2.describe_flow_logs(FlowLogIds=[vpc_log])["FlowLogs"][0]["FlowLogId"] == vpc_log

    def ids(*filters: tuple[str, str]) -> list[str]:
        return sorted(f["FlowLogId"] for f in ec2.describe_flow_logs(Filters=[
            {"Name": n, "Values": [v]} for n, v in filters])["FlowLogs"])
    assert ids(("resource-id", subnet)) == [subnet_log]
    assert ids(("traffic-type", "REJECT"), ("log-group-name", "flows-arn")) == [subnet_log]
    assert ids(("tag:team", "net")) == [vpc_log]
    assert ids(("flow-log-id", vpc_log), ("deliver-log-status", "SUCCESS")) == [vpc_log]
    assert ids(("resource-id", vpc), ("traffic-type", "REJECT")) == []
    gone = ec2.delete_flow_logs(FlowLogIds=[vpc_log, "fl-0123456789abcdef0"])["Unsuccessful"]
    assert [(u["ResourceId"], u["Error"]["Code"]) for u in gone] == \
        [("fl-0123456789abcdef0", "InvalidFlowLogId.NotFound")]
    assert ids(("resource-id", vpc)) == []
    # a flow log goes with its resource
    ec2.delete_subnet(SubnetId=subnet)
    assert ec2.describe_flow_logs(FlowLogIds=[subnet_log])["FlowLogs"] == []
    ec2.delete_vpc(VpcId=vpc)


def test_records_come_from_the_kernel(server: LiveServer) -> None:
    ec2, lam, logs = server.ec2(), server.lambda_(), server.client("logs")
    vpc = ec2.create_vpc(CidrBlock="10.81.0.0/16")["Vpc"]["VpcId"]
    services = ec2.create_subnet(VpcId=vpc, CidrBlock="10.81.1.0/24")["Subnet"]["SubnetId"]
    apps = ec2.create_subnet(VpcId=vpc, CidrBlock="10.81.2.0/24")["Subnet"]["SubnetId"]
    web = ec2.create_security_group(GroupName="web", Description="web", VpcId=vpc)["GroupId"]
    app = ec2.create_security_group(GroupName="app", Description="app", VpcId=vpc)["GroupId"]
    ec2.authorize_security_group_ingress(GroupId=web, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 8080, "ToPort": 8080,
         "IpRanges": [{"CidrIp": "10.81.0.0/16"}]}])
    all_log = ec2.create_flow_logs(ResourceType="VPC", ResourceIds=[vpc], TrafficType="ALL",
                                   LogGroupName="flows-all")["FlowLogIds"][0]
    reject_log = ec2.create_flow_logs(ResourceType="VPC", ResourceIds=[vpc],
                                      TrafficType="REJECT",
                                      LogGroupName="flows-reject")["FlowLogIds"][0]
    create_python_function(lam, "fl-probe", PROBE, wait=False, Timeout=30,
                           VpcConfig={"SubnetIds": [apps], "SecurityGroupIds": [app]})
    lam.get_waiter("function_active_v2").wait(FunctionName="fl-probe", WaiterConfig=WAIT)
    eni = ec2.describe_network_interfaces(Filters=[
        {"Name": "interface-type", "Values": ["lambda"]},
        {"Name": "subnet-id", "Values": [apps]}])["NetworkInterfaces"][0]
    eni_id, eni_ip = eni["NetworkInterfaceId"], eni["PrivateIpAddress"]
    try:
        with resource(server, services, [web], ports=(8080, 8081), ip="10.81.1.10") as srv:
            def invoke(port: int) -> str:
                resp = lam.invoke(FunctionName="fl-probe",
                                  Payload=json.dumps({"host": srv.ip, "port": port}))
                return json.loads(resp["Payload"].read())
            assert invoke(8080) == f"hello from {srv.ip}"
            assert invoke(8081) == "timeout"  # no rule for 8081: the group drops it
            accept_out = {"src": eni_ip, "dst": srv.ip, "dport": "8080", "protocol": "6",
                          "action": "ACCEPT", "version": "2", "account": "000000000000",
                          "status": "OK"}
            accept_back = {"src": srv.ip, "dst": eni_ip, "sport": "8080", "protocol": "6",
                           "action": "ACCEPT"}
            reject = {"src": eni_ip, "dst": srv.ip, "dport": "8081", "protocol": "6",
                      "action": "REJECT"}
            # the same accepted flow on both ENIs, in both directions; the reject on the
            # resource's ENI (whose group dropped it), the SYN let out on the function's ENI
            assert wait_until(lambda: all(_has(_records(logs, "flows-all", e), eni=e, **want)
                                          for e in (eni_id, srv.eni_id)
                                          for want in (accept_out, accept_back)), 30)
            assert wait_until(lambda: _has(_records(logs, "flows-all", srv.eni_id),
                                           eni=srv.eni_id, **reject), 30)
            assert not _has(_records(logs, "flows-all", eni_id), action="REJECT")
            assert _has(_records(logs, "flows-all", eni_id), eni=eni_id,
                        **{**reject, "action": "ACCEPT"})
            rejected = _records(logs, "flows-reject", srv.eni_id)
            assert _has(rejected, **reject)
            assert {r[12] for r in rejected} <= {"REJECT", "-"}  # "-": NODATA
            # nothing rejected on the function's ENI: intervals without data (NODATA)
            assert {r[13] for r in _records(logs, "flows-reject", eni_id)} <= {"NODATA"}
            assert wait_until(lambda: _has(_records(logs, "flows-reject", eni_id),
                                           eni=eni_id, status="NODATA", src="-"), 30)
            for r in _records(logs, "flows-all", srv.eni_id):
                assert len(r) == 14 and int(r[10]) <= int(r[11])
                assert r[13] == "NODATA" or (int(r[8]) > 0 and int(r[9]) > 0)
            # DeleteFlowLogs stops delivery: traffic after it makes no record
            ec2.delete_flow_logs(FlowLogIds=[all_log, reject_log])
            before = {e: len(_records(logs, "flows-all", e)) for e in (eni_id, srv.eni_id)}
            assert invoke(8080) == f"hello from {srv.ip}"
            assert invoke(8081) == "timeout"
            time.sleep(3 * INTERVAL_S)  # three intervals: a live flow log would have delivered
            assert {e: len(_records(logs, "flows-all", e)) for e in before} == before
    finally:
        lam.delete_function(FunctionName="fl-probe")


def test_interface_flow_log_shows_its_own_egress_rejects(server: LiveServer) -> None:
    """A flow log on one `lambdaplane run` resource's ENI, made and read with the AWS CLI: its
    accepted connection to another resource and the packets its own group does not let out
    (REJECT, on its ENI, with its own address); nothing of the other resource's ENI."""
    ec2, logs = server.ec2(), server.client("logs")
    vpc = ec2.create_vpc(CidrBlock="10.82.0.0/16")["Vpc"]["VpcId"]
    net = ec2.create_subnet(VpcId=vpc, CidrBlock="10.82.1.0/24")["Subnet"]["SubnetId"]
    open_in = ec2.create_security_group(GroupName="in", Description="in", VpcId=vpc)["GroupId"]
    locked = ec2.create_security_group(GroupName="lk", Description="lk", VpcId=vpc)["GroupId"]
    ec2.authorize_security_group_ingress(GroupId=open_in, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 7000, "ToPort": 7001,
         "IpRanges": [{"CidrIp": "10.82.0.0/16"}]}])
    ec2.revoke_security_group_egress(GroupId=locked, IpPermissions=[
        {"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
    ec2.authorize_security_group_egress(GroupId=locked, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 7000, "ToPort": 7000,
         "IpRanges": [{"CidrIp": "10.82.0.0/16"}]}])
    with resource(server, net, [open_in], ports=(7000, 7001)) as srv, \
            resource(server, net, [locked]) as client:
        made = _aws(server, "ec2", "create-flow-logs", "--resource-type", "NetworkInterface",
                    "--resource-ids", client.eni_id, "--traffic-type", "ALL",
                    "--log-group-name", "flows-eni", "--max-aggregation-interval", "60")
        flow_log = made["FlowLogIds"][0]
        assert client.probe(srv.ip, 7000) == f"hello from {srv.ip}"
        assert client.probe(srv.ip, 7001) == "timeout"  # its own group keeps it in
        mine = {"eni": client.eni_id, "src": client.ip, "dst": srv.ip, "protocol": "6"}
        assert wait_until(lambda: _has(_records(logs, "flows-eni", client.eni_id),
                                       dport="7000", action="ACCEPT", **mine), 30)
        assert wait_until(lambda: _has(_records(logs, "flows-eni", client.eni_id),
                                       dport="7001", action="REJECT", **mine), 30)
        assert _records(logs, "flows-eni", srv.eni_id) == []
        shown = _aws(server, "logs", "filter-log-events", "--log-group-name", "flows-eni",
                     "--log-stream-names", client.eni_id, "--filter-pattern", "REJECT")
        assert shown["events"] and all(e["message"].split()[12] == "REJECT"
                                       and e["message"].split()[6] == "7001"
                                       for e in shown["events"])
        streams = logs.describe_log_streams(logGroupName="flows-eni")["logStreams"]
        assert [s["logStreamName"] for s in streams] == [client.eni_id]
    # the interface went with its program: so did its flow log
    assert wait_until(lambda: ec2.describe_flow_logs(FlowLogIds=[flow_log])["FlowLogs"] == [], 30)
