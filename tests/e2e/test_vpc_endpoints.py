"""An interface VPC endpoint for Lambda on real kernel networking, through boto3: a VPC
function in a VPC with no NAT gateway and no internet gateway invokes another function with
boto3's default endpoint (https://lambda.us-east-1.amazonaws.com): the VPC resolver answers
the name with the endpoint interfaces' addresses (private DNS), the endpoint presents a
certificate of lambdaplane's local CA (which the function trusts through AWS_CA_BUNDLE) and
forwards to lambdaplane's own API. The endpoint's security groups decide who reaches it.
Everything survives a SIGKILL of the server; deleting the endpoint removes its interfaces
and its name."""
from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections.abc import Iterator

import pytest
from botocore.exceptions import ClientError

from lambdaplane.net import ns
from tests.e2e.vpc_support import cli, wait_until
from tests.harness import LiveServer, create_python_function

pytestmark = pytest.mark.root

SERVICE = "com.amazonaws.us-east-1.lambda"

TARGET = """
def handler(event, context):
    return {"hello": event.get("who"), "from": context.function_name}
"""

CALLER = """
import json, socket
import boto3, botocore.config
def handler(event, context):
    out = {}
    try:
        out["resolved"] = socket.gethostbyname("lambda.us-east-1.amazonaws.com")
    except OSError as e:
        out["resolved"] = "fails"
    # lambdaplane gives functions no role credentials; the server here does not check them
    lam = boto3.client("lambda", aws_access_key_id="test", aws_secret_access_key="test",
                       config=botocore.config.Config(
        connect_timeout=3, read_timeout=20, retries={"max_attempts": 1}))
    try:
        answer = lam.invoke(FunctionName="target", Payload=json.dumps({"who": "vpc"}))
        out["answer"] = json.loads(answer["Payload"].read())
        out["url"] = lam.meta.endpoint_url
    except Exception as e:
        out["error"] = type(e).__name__
    return out
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[LiveServer]:
    from tests.conftest import live_server
    yield from live_server(tmp_path_factory.mktemp("lp"))


@pytest.fixture(scope="module")
def net(server) -> Iterator[dict[str, str]]:
    ec2 = server.ec2()
    vpc = ec2.create_vpc(CidrBlock="10.94.0.0/16")["Vpc"]["VpcId"]
    a = ec2.create_subnet(VpcId=vpc, CidrBlock="10.94.1.0/24",
                          AvailabilityZone="us-east-1a")["Subnet"]["SubnetId"]
    b = ec2.create_subnet(VpcId=vpc, CidrBlock="10.94.2.0/24",
                          AvailabilityZone="us-east-1b")["Subnet"]["SubnetId"]
    vpce_group = ec2.create_security_group(GroupName="vpce", Description="endpoint",
                                           VpcId=vpc)["GroupId"]
    fn_group = ec2.create_security_group(GroupName="fn", Description="functions",
                                         VpcId=vpc)["GroupId"]
    lam = server.lambda_()
    create_python_function(lam, "target", TARGET)
    try:
        yield {"vpc": vpc, "a": a, "b": b, "vpce_group": vpce_group, "fn_group": fn_group}
    finally:
        for f in lam.list_functions()["Functions"]:
            lam.delete_function(FunctionName=f["FunctionName"])
        for e in ec2.describe_vpc_endpoints()["VpcEndpoints"]:
            ec2.delete_vpc_endpoints(VpcEndpointIds=[e["VpcEndpointId"]])
        wait_until(lambda: ec2.describe_vpc_endpoints()["VpcEndpoints"] == [], timeout_s=60)
        wait_until(lambda: ec2.describe_network_interfaces(Filters=[
            {"Name": "vpc-id", "Values": [vpc]}])["NetworkInterfaces"] == [], timeout_s=60)
        for g in (vpce_group, fn_group):
            ec2.delete_security_group(GroupId=g)
        for s in (a, b):
            ec2.delete_subnet(SubnetId=s)
        ec2.delete_vpc(VpcId=vpc)


def _code(call) -> str:
    with pytest.raises(ClientError) as e:
        call()
    return e.value.response["Error"]["Code"]


def _state(ec2, endpoint_id: str) -> str:
    found = ec2.describe_vpc_endpoints(Filters=[
        {"Name": "vpc-endpoint-id", "Values": [endpoint_id]}])["VpcEndpoints"]
    return found[0]["State"] if found else "gone"


def _call(server) -> dict:
    lam = server.lambda_()
    return json.loads(lam.invoke(FunctionName="caller")["Payload"].read())


def test_endpoint_services_and_errors(server, net) -> None:
    ec2 = server.ec2()
    services = ec2.describe_vpc_endpoint_services()
    assert SERVICE in services["ServiceNames"]
    (detail,) = [d for d in services["ServiceDetails"] if d["ServiceName"] == SERVICE]
    assert detail["PrivateDnsName"] == "lambda.us-east-1.amazonaws.com"
    assert detail["ServiceType"] == [{"ServiceType": "Interface"}]
    assert _code(lambda: ec2.describe_vpc_endpoint_services(
        ServiceNames=["com.amazonaws.us-east-1.nothing"])) == "InvalidServiceName"
    create = dict(VpcId=net["vpc"], ServiceName=SERVICE, VpcEndpointType="Interface",
                  SubnetIds=[net["a"]], SecurityGroupIds=[net["vpce_group"]])
    assert _code(lambda: ec2.create_vpc_endpoint(**{**create, "ServiceName": "com.x.y"})) \
        == "InvalidServiceName"
    assert _code(lambda: ec2.create_vpc_endpoint(**{**create, "VpcEndpointType": "Gateway"})) \
        == "InvalidParameter"
    # private DNS needs both DNS attributes; a new VPC has no DNS hostnames
    assert _code(lambda: ec2.create_vpc_endpoint(**create, PrivateDnsEnabled=True)) \
        == "InvalidParameter"
    assert _code(lambda: ec2.describe_vpc_endpoints(VpcEndpointIds=["vpce-0123456789abcdef0"])) \
        == "InvalidVpcEndpointId.NotFound"
    out = ec2.delete_vpc_endpoints(VpcEndpointIds=["vpce-0123456789abcdef0"])
    assert out["Unsuccessful"][0]["Error"]["Code"] == "InvalidVpcEndpointId.NotFound"


def test_function_without_internet_invokes_through_the_endpoint(server, net) -> None:
    ec2 = server.ec2()
    ec2.modify_vpc_attribute(VpcId=net["vpc"], EnableDnsHostnames={"Value": True})
    ec2.authorize_security_group_ingress(GroupId=net["vpce_group"], IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443,
         "IpRanges": [{"CidrIp": "10.94.0.0/16"}]}])
    endpoint = ec2.create_vpc_endpoint(
        VpcId=net["vpc"], ServiceName=SERVICE, VpcEndpointType="Interface",
        SubnetIds=[net["a"], net["b"]], SecurityGroupIds=[net["vpce_group"]],
        PrivateDnsEnabled=True)["VpcEndpoint"]
    # pending until the kernel has its interfaces, names and listeners (Terraform waits)
    assert endpoint["State"] == "pending" and endpoint["PrivateDnsEnabled"] is True
    assert wait_until(lambda: _state(ec2, endpoint["VpcEndpointId"]) == "available",
                      timeout_s=30)
    assert len(endpoint["NetworkInterfaceIds"]) == 2
    assert {"DnsName": "lambda.us-east-1.amazonaws.com"}.items() <= \
        next(d for d in endpoint["DnsEntries"]
             if d["DnsName"] == "lambda.us-east-1.amazonaws.com").items()
    enis = ec2.describe_network_interfaces(Filters=[
        {"Name": "interface-type", "Values": ["vpc_endpoint"]}])["NetworkInterfaces"]
    assert sorted(e["NetworkInterfaceId"] for e in enis) == \
        sorted(endpoint["NetworkInterfaceIds"])
    for e in enis:
        assert e["RequesterManaged"] is True and e["Status"] == "in-use"
        assert e["Description"] == f"VPC Endpoint Interface {endpoint['VpcEndpointId']}"
        assert [g["GroupId"] for g in e["Groups"]] == [net["vpce_group"]]
    assert _code(lambda: ec2.delete_network_interface(
        NetworkInterfaceId=enis[0]["NetworkInterfaceId"])) == "InvalidNetworkInterface.InUse"
    addresses = {e["PrivateIpAddress"] for e in enis}
    ec2.create_tags(Resources=[endpoint["VpcEndpointId"]], Tags=[{"Key": "team", "Value": "a"}])
    assert ec2.describe_vpc_endpoints(Filters=[{"Name": "tag:team", "Values": ["a"]}])[
        "VpcEndpoints"][0]["Tags"] == [{"Key": "team", "Value": "a"}]
    found = ec2.describe_vpc_endpoints(Filters=[
        {"Name": "service-name", "Values": [SERVICE]},
        {"Name": "vpc-id", "Values": [net["vpc"]]}])["VpcEndpoints"]
    assert [e["VpcEndpointId"] for e in found] == [endpoint["VpcEndpointId"]]

    # no NAT gateway, no internet gateway: the only way to the Lambda API is the endpoint
    assert ec2.describe_nat_gateways()["NatGateways"] == []
    create_python_function(server.lambda_(), "caller", CALLER, Timeout=60,
                           VpcConfig={"SubnetIds": [net["a"]],
                                      "SecurityGroupIds": [net["fn_group"]]})
    out = _call(server)
    assert out.get("answer") == {"hello": "vpc", "from": "target"}, out
    assert out["url"] == "https://lambda.us-east-1.amazonaws.com"
    assert out["resolved"] in addresses

    # the endpoint's groups decide: without the rule, nothing reaches it
    ec2.revoke_security_group_ingress(GroupId=net["vpce_group"], IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443,
         "IpRanges": [{"CidrIp": "10.94.0.0/16"}]}])
    out = _call(server)
    assert out.get("error") == "ConnectTimeoutError", out
    ec2.authorize_security_group_ingress(GroupId=net["vpce_group"], IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443,
         "IpRanges": [{"CidrIp": "10.94.0.0/16"}]}])
    assert _call(server).get("answer") == {"hello": "vpc", "from": "target"}

    shown = cli(server, "net", "show")
    assert endpoint["VpcEndpointId"] in shown.stdout, shown.stdout


def test_endpoint_survives_sigkill_and_delete_removes_it(server, net) -> None:
    ec2 = server.ec2()
    (endpoint,) = ec2.describe_vpc_endpoints()["VpcEndpoints"]
    server.kill()
    server.start()
    assert _call(server).get("answer") == {"hello": "vpc", "from": "target"}
    # killed again, `clean` removes the endpoint's namespaces with the rest; the next start
    # makes them anew from the store
    server.kill()
    prefix = f"lp{server.instance}-"
    assert any(n.startswith(prefix + "r-" + endpoint["NetworkInterfaceIds"][0])
               for n in ns.list_named(prefix))
    out = subprocess.run([sys.executable, "-m", "lambdaplane.cli", "clean", "--data-dir",
                          str(server.data_dir)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert not ns.list_named(prefix) and server.leftovers() == []
    server.start()
    assert _call(server).get("answer") == {"hello": "vpc", "from": "target"}
    assert ec2.delete_vpc_endpoints(VpcEndpointIds=[endpoint["VpcEndpointId"]])[
        "Unsuccessful"] == []
    assert _state(ec2, endpoint["VpcEndpointId"]) in ("deleting", "gone")
    assert wait_until(lambda: _state(ec2, endpoint["VpcEndpointId"]) == "gone", timeout_s=30)
    assert ec2.describe_network_interfaces(Filters=[
        {"Name": "interface-type", "Values": ["vpc_endpoint"]}])["NetworkInterfaces"] == []
    out = _call(server)
    assert out["resolved"] == "fails" and "answer" not in out, out
    leftover = subprocess.run(["ip", "netns"], capture_output=True, text=True).stdout
    for eni in endpoint["NetworkInterfaceIds"]:
        assert eni[4:] not in leftover


def _groups_of(ec2, eni_ids: list[str]) -> list[list[str]]:
    enis = ec2.describe_network_interfaces(NetworkInterfaceIds=eni_ids)["NetworkInterfaces"]
    return [[g["GroupId"] for g in e["Groups"]] for e in enis]


def test_modify_vpc_endpoint(server, net) -> None:
    ec2 = server.ec2()
    ec2.modify_vpc_attribute(VpcId=net["vpc"], EnableDnsHostnames={"Value": False})
    c = ec2.create_subnet(VpcId=net["vpc"], CidrBlock="10.94.3.0/24",
                          AvailabilityZone="us-east-1a")["Subnet"]["SubnetId"]
    e = ec2.create_vpc_endpoint(VpcId=net["vpc"], ServiceName=SERVICE,
                                VpcEndpointType="Interface", SubnetIds=[net["a"]],
                                SecurityGroupIds=[net["vpce_group"]],
                                PrivateDnsEnabled=False)["VpcEndpoint"]
    eid = e["VpcEndpointId"]
    try:
        # not while it is pending (AWS: OperationInProgress, unit-tested); available soon after
        assert wait_until(lambda: _state(ec2, eid) == "available", timeout_s=30)
        # a subnet more, in another zone: an interface more, with the endpoint's groups
        assert ec2.modify_vpc_endpoint(VpcEndpointId=eid, AddSubnetIds=[net["b"]])["Return"]
        (shown,) = ec2.describe_vpc_endpoints(VpcEndpointIds=[eid])["VpcEndpoints"]
        assert shown["SubnetIds"] == [net["a"], net["b"]]
        assert len(shown["NetworkInterfaceIds"]) == 2
        assert _groups_of(ec2, shown["NetworkInterfaceIds"]) == [[net["vpce_group"]]] * 2
        # one subnet per zone; only subnets and groups of the endpoint's VPC
        assert _code(lambda: ec2.modify_vpc_endpoint(VpcEndpointId=eid, AddSubnetIds=[c])) \
            == "DuplicateSubnetsInSameZone"
        assert _code(lambda: ec2.modify_vpc_endpoint(
            VpcEndpointId=eid, RemoveSubnetIds=[c])) == "InvalidParameter"
        assert _code(lambda: ec2.modify_vpc_endpoint(
            VpcEndpointId=eid, AddSubnetIds=["subnet-0123456789abcdef0"])) \
            == "InvalidSubnetID.NotFound"
        assert _code(lambda: ec2.modify_vpc_endpoint(
            VpcEndpointId=eid, AddRouteTableIds=["rtb-0123456789abcdef0"])) \
            == "InvalidParameter"
        assert _code(lambda: ec2.modify_vpc_endpoint(
            VpcEndpointId="vpce-0123456789abcdef0", AddSubnetIds=[c])) \
            == "InvalidVpcEndpointId.NotFound"
        # swap the zone's subnet in one call: a's interface goes, c's comes
        first = shown["NetworkInterfaceIds"][0]
        ec2.modify_vpc_endpoint(VpcEndpointId=eid, RemoveSubnetIds=[net["a"]],
                                AddSubnetIds=[c])
        (shown,) = ec2.describe_vpc_endpoints(VpcEndpointIds=[eid])["VpcEndpoints"]
        assert shown["SubnetIds"] == [net["b"], c]
        assert first not in shown["NetworkInterfaceIds"]
        assert first not in {x["NetworkInterfaceId"] for x in ec2.describe_network_interfaces(
            Filters=[{"Name": "interface-type", "Values": ["vpc_endpoint"]}])[
            "NetworkInterfaces"]}
        # groups: on the endpoint and on each of its interfaces; never none
        ec2.modify_vpc_endpoint(VpcEndpointId=eid, AddSecurityGroupIds=[net["fn_group"]],
                                RemoveSecurityGroupIds=[net["vpce_group"]])
        (shown,) = ec2.describe_vpc_endpoints(VpcEndpointIds=[eid])["VpcEndpoints"]
        assert [g["GroupId"] for g in shown["Groups"]] == [net["fn_group"]]
        assert _groups_of(ec2, shown["NetworkInterfaceIds"]) == [[net["fn_group"]]] * 2
        assert _code(lambda: ec2.modify_vpc_endpoint(
            VpcEndpointId=eid, RemoveSecurityGroupIds=[net["fn_group"]])) == "InvalidParameter"
        # private DNS needs the VPC's DNS hostnames, as at create
        assert _code(lambda: ec2.modify_vpc_endpoint(
            VpcEndpointId=eid, PrivateDnsEnabled=True)) == "InvalidParameter"
        ec2.modify_vpc_attribute(VpcId=net["vpc"], EnableDnsHostnames={"Value": True})
        ec2.modify_vpc_endpoint(VpcEndpointId=eid, PrivateDnsEnabled=True,
                                PolicyDocument='{"Statement":[]}')
        (shown,) = ec2.describe_vpc_endpoints(VpcEndpointIds=[eid])["VpcEndpoints"]
        assert shown["PrivateDnsEnabled"] is True
        assert shown["PolicyDocument"] == '{"Statement":[]}'
        ec2.modify_vpc_endpoint(VpcEndpointId=eid, ResetPolicy=True)
        (shown,) = ec2.describe_vpc_endpoints(VpcEndpointIds=[eid])["VpcEndpoints"]
        assert '"Effect":"Allow"' in shown["PolicyDocument"]
        # deleting: no more changes; then gone with its interfaces
        ec2.delete_vpc_endpoints(VpcEndpointIds=[eid])
        state = _state(ec2, eid)
        assert state in ("deleting", "gone")
        if state == "deleting":
            with contextlib.suppress(ClientError):  # it may be gone by now
                assert _code(lambda: ec2.modify_vpc_endpoint(
                    VpcEndpointId=eid, PrivateDnsEnabled=False)) in (
                    "IncorrectState", "InvalidVpcEndpointId.NotFound")
        assert wait_until(lambda: _state(ec2, eid) == "gone", timeout_s=30)
    finally:
        with contextlib.suppress(ClientError):
            ec2.delete_vpc_endpoints(VpcEndpointIds=[eid])
        wait_until(lambda: _state(ec2, eid) == "gone", timeout_s=30)
        wait_until(lambda: ec2.describe_network_interfaces(Filters=[
            {"Name": "subnet-id", "Values": [c]}])["NetworkInterfaces"] == [], timeout_s=30)
        ec2.delete_subnet(SubnetId=c)
