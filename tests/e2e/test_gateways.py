"""Internet gateways and Elastic IPs on real kernel networking, through boto3. The test makes
the internet: a namespace with a "public host" on a documentation address (203.0.113.10)
that answers TCP with the address it sees; the server links its gateways into it
(`serve --internet-netns`) and takes public addresses from 198.51.100.0/24. No packet leaves
the machine. The classic cases: a resource in a subnet routed to the internet gateway is
reached on the ports its groups open and reaches out from its Elastic IP; without one it does
neither; a VPC function there has no internet (its Hyperplane ENI has no public address).
Route changes take effect at once; a route whose gateway is gone is a blackhole; everything
survives a restart with nothing to change."""
from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import urllib.request
from collections.abc import Iterator

import pytest
from botocore.exceptions import ClientError

from tests.conftest import live_server
from tests.e2e.vpc_support import (  # noqa: F401 (WHO_AM_I: for other modules)
    PUBLIC_HOST,
    WHO_AM_I,
    an_internet_vpc,
    cli,
    own_namespaces,
    reconcile_now,
    resource,
    wait_until,
    who_am_i,
)
from tests.harness import LiveServer, create_python_function

pytestmark = pytest.mark.root

PUBLIC_POOL = "198.51.100.0/24"

# A TCP probe from a given source address: the first bytes of the answer, or "timeout".
PROBE = r"""
import socket, sys
src, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
try:
    s = socket.create_connection((host, port), timeout=1.5,
                                 source_address=(src, 0) if src else None)
    print(s.recv(100).decode() or "empty")
except socket.timeout:
    print("timeout")
except OSError as e:
    print("error", e.errno)
"""


def probe(netns: str, host: str, port: int, src: str = "") -> str:
    out = subprocess.run(["ip", "netns", "exec", netns, sys.executable, "-c", PROBE, src, host,
                          str(port)], capture_output=True, text=True, timeout=30)
    return out.stdout.strip() or out.stderr.strip()


@pytest.fixture(scope="module")
def internet() -> Iterator[str]:
    with own_namespaces("") as (name,):
        subprocess.run(["ip", "-n", name, "addr", "add", f"{PUBLIC_HOST}/32", "dev", "lo"],
                       check=True)
        with who_am_i(name, PUBLIC_HOST):
            yield name


@pytest.fixture(scope="module")
def server(internet, tmp_path_factory) -> Iterator[LiveServer]:
    yield from live_server(tmp_path_factory.mktemp("lp"), "--internet-netns", internet,
                           "--public-cidr", PUBLIC_POOL)


@pytest.fixture(scope="module")
def net(server) -> Iterator[dict[str, str]]:
    ec2 = server.ec2()
    with an_internet_vpc(ec2, "10.90") as made:
        try:
            yield made
        finally:  # the addresses first, once the interfaces they went to are gone
            wait_until(lambda: ec2.describe_network_interfaces(Filters=[
                {"Name": "vpc-id", "Values": [made["vpc"]]}])["NetworkInterfaces"] == [],
                timeout_s=30)
            for a in ec2.describe_addresses()["Addresses"]:
                if a.get("AssociationId"):
                    ec2.disassociate_address(AssociationId=a["AssociationId"])
                ec2.release_address(AllocationId=a["AllocationId"])


def _code(call) -> str:
    with pytest.raises(ClientError) as e:
        call()
    return e.value.response["Error"]["Code"]


def test_internet_gateway_api(server, net) -> None:
    ec2 = server.ec2()
    (g,) = ec2.describe_internet_gateways(InternetGatewayIds=[net["igw"]])["InternetGateways"]
    assert g["Attachments"] == [{"State": "available", "VpcId": net["vpc"]}]
    found = ec2.describe_internet_gateways(Filters=[
        {"Name": "attachment.vpc-id", "Values": [net["vpc"]]}])["InternetGateways"]
    assert [x["InternetGatewayId"] for x in found] == [net["igw"]]
    other = ec2.create_internet_gateway(TagSpecifications=[{
        "ResourceType": "internet-gateway", "Tags": [{"Key": "Name", "Value": "spare"}]}])[
        "InternetGateway"]["InternetGatewayId"]
    try:
        assert ec2.describe_internet_gateways(Filters=[
            {"Name": "tag:Name", "Values": ["spare"]}])["InternetGateways"][0][
            "InternetGatewayId"] == other
        assert ec2.describe_internet_gateways(Filters=[
            {"Name": "attachment.state", "Values": ["available"]},
            {"Name": "internet-gateway-id", "Values": [other]}])["InternetGateways"] == []
        # one gateway per VPC, one VPC per gateway
        assert _code(lambda: ec2.attach_internet_gateway(
            InternetGatewayId=other, VpcId=net["vpc"])) == "Resource.AlreadyAssociated"
        assert _code(lambda: ec2.attach_internet_gateway(
            InternetGatewayId=net["igw"], VpcId=net["vpc"])) == "Resource.AlreadyAssociated"
        assert _code(lambda: ec2.detach_internet_gateway(
            InternetGatewayId=other, VpcId=net["vpc"])) == "Gateway.NotAttached"
        assert _code(lambda: ec2.delete_internet_gateway(
            InternetGatewayId=net["igw"])) == "DependencyViolation"
        assert _code(lambda: ec2.delete_vpc(VpcId=net["vpc"])) == "DependencyViolation"
        # a route may lead only to the VPC's own gateway
        assert _code(lambda: ec2.create_route(
            RouteTableId=net["table"], DestinationCidrBlock="192.0.2.0/24",
            GatewayId=other)) == "InvalidParameterValue"
        assert _code(lambda: ec2.create_route(
            RouteTableId=net["table"], DestinationCidrBlock="192.0.2.0/24",
            GatewayId="igw-0123456789abcdef0")) == "InvalidGatewayID.NotFound"
        assert _code(lambda: ec2.describe_internet_gateways(
            InternetGatewayIds=["igw-0123456789abcdef0"])) == "InvalidInternetGatewayID.NotFound"
    finally:
        ec2.delete_internet_gateway(InternetGatewayId=other)


def test_address_api(server, net) -> None:
    ec2 = server.ec2()
    a = ec2.allocate_address(Domain="vpc")
    assert a["PublicIp"].startswith("198.51.100.") and a["Domain"] == "vpc"
    try:
        (shown,) = ec2.describe_addresses(AllocationIds=[a["AllocationId"]])["Addresses"]
        assert shown["PublicIp"] == a["PublicIp"] and "AssociationId" not in shown
        assert ec2.describe_addresses(Filters=[{"Name": "public-ip",
                                                "Values": [a["PublicIp"]]}])["Addresses"]
        assert _code(lambda: ec2.describe_addresses(
            AllocationIds=["eipalloc-0123456789abcdef0"])) == "InvalidAllocationID.NotFound"
        assert _code(lambda: ec2.disassociate_address(
            AssociationId="eipassoc-0123456789abcdef0")) == "InvalidAssociationID.NotFound"
        with resource(server, net["public"], [net["group"]], ports=(80,)) as r:
            assoc = ec2.associate_address(AllocationId=a["AllocationId"],
                                          NetworkInterfaceId=r.eni_id)["AssociationId"]
            (shown,) = ec2.describe_addresses(Filters=[{"Name": "network-interface-id",
                                                        "Values": [r.eni_id]}])["Addresses"]
            assert shown["AssociationId"] == assoc and shown["PrivateIpAddress"] == r.ip
            assert _code(lambda: ec2.release_address(
                AllocationId=a["AllocationId"])) == "InvalidIPAddress.InUse"
            assert _code(lambda: ec2.detach_internet_gateway(
                InternetGatewayId=net["igw"], VpcId=net["vpc"])) == "DependencyViolation"
            ec2.disassociate_address(AssociationId=assoc)
    finally:
        ec2.release_address(AllocationId=a["AllocationId"])
    assert ec2.describe_addresses()["Addresses"] == []


def test_elastic_ip_is_reached_and_reaches_out(server, net, internet) -> None:
    ec2 = server.ec2()
    with resource(server, net["public"], [net["group"]], ports=(80, 81)) as withip, \
            resource(server, net["public"], [net["group"]], ports=(80,)) as without:
        # without a public address: neither out nor in, though routed to the gateway
        assert without.probe(PUBLIC_HOST, 80) == "timeout"
        assert withip.probe(PUBLIC_HOST, 80) == "timeout"
        a = ec2.allocate_address(Domain="vpc")
        eip = a["PublicIp"]
        ec2.associate_address(AllocationId=a["AllocationId"], NetworkInterfaceId=withip.eni_id)
        # out from its Elastic IP (1:1 NAT at the gateway)
        assert withip.probe(PUBLIC_HOST, 80) == f"you are {eip}"
        # in on the ports its groups open, and only those
        assert probe(internet, eip, 80, src=PUBLIC_HOST) == f"hello from {withip.ip}"
        assert probe(internet, eip, 81, src=PUBLIC_HOST) == "timeout"
        # the private addresses are not reachable from the internet
        assert probe(internet, without.ip, 80, src=PUBLIC_HOST) != f"hello from {without.ip}"
        assert without.probe(PUBLIC_HOST, 80) == "timeout"

        # route changes take effect at once
        ec2.delete_route(RouteTableId=net["table"], DestinationCidrBlock="0.0.0.0/0")
        assert withip.probe(PUBLIC_HOST, 80) == "timeout"
        assert probe(internet, eip, 80, src=PUBLIC_HOST) == "timeout"
        ec2.create_route(RouteTableId=net["table"], DestinationCidrBlock="0.0.0.0/0",
                         GatewayId=net["igw"])
        assert withip.probe(PUBLIC_HOST, 80) == f"you are {eip}"
        # a more specific route to an interface that goes: blackhole, and it drops
        with resource(server, net["public"], [net["group"]], ports=(80,)) as hop:
            ec2.create_route(RouteTableId=net["table"], DestinationCidrBlock="203.0.113.0/24",
                             NetworkInterfaceId=hop.eni_id)
        assert _route_state(ec2, net["table"], "203.0.113.0/24") == "blackhole"
        reconcile_now(server)  # the interface's release reconciles on its own; be sure
        assert withip.probe(PUBLIC_HOST, 80) == "timeout"
        ec2.delete_route(RouteTableId=net["table"], DestinationCidrBlock="203.0.113.0/24")
        assert withip.probe(PUBLIC_HOST, 80) == f"you are {eip}"
        assert reconcile_now(server) == []

        # a restart with nothing changed: everything is still there and works
        server.restart()
        assert withip.probe(PUBLIC_HOST, 80) == f"you are {eip}"
        assert probe(internet, eip, 80, src=PUBLIC_HOST) == f"hello from {withip.ip}"
        assert reconcile_now(server) == []
        assert ec2.describe_addresses(AllocationIds=[a["AllocationId"]])["Addresses"][0][
            "NetworkInterfaceId"] == withip.eni_id
        # and after SIGKILL: the kernel state kept, the next start finds it right
        server.kill()
        server.start()
        assert probe(internet, eip, 80, src=PUBLIC_HOST) == f"hello from {withip.ip}"
        assert withip.probe(PUBLIC_HOST, 80) == f"you are {eip}"
        assert without.probe(PUBLIC_HOST, 80) == "timeout"
        assert reconcile_now(server) == []


def _route_state(ec2, table: str, destination: str) -> str:
    (t,) = ec2.describe_route_tables(RouteTableIds=[table])["RouteTables"]
    return next(r["State"] for r in t["Routes"] if r["DestinationCidrBlock"] == destination)


FUNCTION = r"""
import socket

def handler(event, context):
    try:
        with socket.create_connection(("203.0.113.10", 80), timeout=1.5) as s:
            return s.recv(100).decode()
    except socket.timeout:
        return "timeout"
    except OSError as e:
        return f"error{e.errno}"
"""


def test_a_function_in_a_subnet_routed_to_the_gateway_has_no_internet(server, net) -> None:
    """Its Hyperplane ENI has no public address, as on AWS: the gateway lets nothing out."""
    lam = server.lambda_()
    create_python_function(lam, "igw-probe", FUNCTION, Timeout=30, VpcConfig={
        "SubnetIds": [net["public"]], "SecurityGroupIds": [net["group"]]})
    try:
        out = json.loads(lam.invoke(FunctionName="igw-probe")["Payload"].read())
        assert out in ("timeout",) or out.startswith("error"), out
    finally:
        lam.delete_function(FunctionName="igw-probe")


def test_blackhole_when_the_gateway_goes(server, net) -> None:
    ec2 = server.ec2()
    vpc = ec2.create_vpc(CidrBlock="10.91.0.0/16")["Vpc"]["VpcId"]
    igw = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    ec2.attach_internet_gateway(InternetGatewayId=igw, VpcId=vpc)
    (main,) = ec2.describe_route_tables(Filters=[{"Name": "vpc-id", "Values": [vpc]}])[
        "RouteTables"]
    table = main["RouteTableId"]
    ec2.create_route(RouteTableId=table, DestinationCidrBlock="0.0.0.0/0", GatewayId=igw)
    assert _route_state(ec2, table, "0.0.0.0/0") == "active"
    ec2.detach_internet_gateway(InternetGatewayId=igw, VpcId=vpc)
    assert _route_state(ec2, table, "0.0.0.0/0") == "blackhole"
    ec2.delete_internet_gateway(InternetGatewayId=igw)
    assert _route_state(ec2, table, "0.0.0.0/0") == "blackhole"
    assert ec2.describe_route_tables(Filters=[
        {"Name": "route.state", "Values": ["blackhole"]},
        {"Name": "vpc-id", "Values": [vpc]}])["RouteTables"][0]["RouteTableId"] == table
    netns = f"lp{server.instance}-{vpc}"
    kernel = subprocess.run(["ip", "-n", netns, "route", "show", "table", "all"],
                            capture_output=True, text=True).stdout
    assert "blackhole 0.0.0.0/0" in kernel or "blackhole default" in kernel, kernel
    ec2.delete_route(RouteTableId=table, DestinationCidrBlock="0.0.0.0/0")
    ec2.delete_vpc(VpcId=vpc)


def _nat_metrics(server, nat: str) -> dict[str, float]:
    with urllib.request.urlopen(server.endpoint + "/metrics", timeout=30) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith("lambdaplane_natgateway_") and f'nat_gateway="{nat}"' in line:
            name = line.split("{")[0].removeprefix("lambdaplane_natgateway_")
            out[name.removesuffix("_total")] = float(line.rsplit(" ", 1)[1])
    return out


def _nat_state(ec2, nat: str) -> str:
    return ec2.describe_nat_gateways(NatGatewayIds=[nat])["NatGateways"][0]["State"]


def test_nat_gateway_lets_a_private_subnet_out(server, net, internet) -> None:
    """A function and a resource in a private subnet whose default route is a NAT gateway (in
    the public subnet) get out; the public host sees the NAT gateway's address; nothing comes
    in through it; once it is deleted the route is a blackhole."""
    ec2, lam = server.ec2(), server.lambda_()
    private = ec2.create_subnet(VpcId=net["vpc"], CidrBlock="10.90.2.0/24")["Subnet"]["SubnetId"]
    table = ec2.create_route_table(VpcId=net["vpc"])["RouteTable"]["RouteTableId"]
    assoc = ec2.associate_route_table(RouteTableId=table, SubnetId=private)["AssociationId"]
    a = ec2.allocate_address(Domain="vpc")
    assert _code(lambda: ec2.create_nat_gateway(SubnetId=net["public"])) == "MissingParameter"
    nat = ec2.create_nat_gateway(SubnetId=net["public"], AllocationId=a["AllocationId"],
                                 TagSpecifications=[{"ResourceType": "natgateway", "Tags": [
                                     {"Key": "Name", "Value": "egress"}]}])["NatGateway"]
    nat_id = nat["NatGatewayId"]
    assert nat["State"] == "pending" and nat["NatGatewayAddresses"][0]["PublicIp"] == \
        a["PublicIp"]
    assert _code(lambda: ec2.create_nat_gateway(
        SubnetId=net["public"], AllocationId=a["AllocationId"])) == "Resource.AlreadyAssociated"
    try:
        assert wait_until(lambda: _nat_state(ec2, nat_id) == "available", timeout_s=30)
        assert ec2.describe_nat_gateways(Filter=[{"Name": "tag:Name", "Values": ["egress"]},
                                                 {"Name": "state", "Values": ["available"]}])[
            "NatGateways"][0]["NatGatewayId"] == nat_id
        (eni,) = ec2.describe_network_interfaces(Filters=[
            {"Name": "interface-type", "Values": ["nat_gateway"]},
            {"Name": "vpc-id", "Values": [net["vpc"]]}])["NetworkInterfaces"]
        assert eni["RequesterManaged"] and eni["SubnetId"] == net["public"]
        assert _code(lambda: ec2.release_address(
            AllocationId=a["AllocationId"])) == "InvalidIPAddress.InUse"
        (held,) = ec2.describe_addresses(AllocationIds=[a["AllocationId"]])["Addresses"]
        assert held["NetworkInterfaceId"] == eni["NetworkInterfaceId"]
        assert _code(lambda: ec2.disassociate_address(
            AssociationId=held["AssociationId"])) == "InvalidParameterValue"
        ec2.create_route(RouteTableId=table, DestinationCidrBlock="0.0.0.0/0",
                         NatGatewayId=nat_id)
        with resource(server, private, [net["group"]], ports=(80,)) as r:
            assert r.probe(PUBLIC_HOST, 80) == f"you are {a['PublicIp']}"
            # no inbound connections through a NAT gateway
            assert probe(internet, a["PublicIp"], 80, src=PUBLIC_HOST) == "timeout"
            create_python_function(lam, "nat-probe", FUNCTION, Timeout=30, VpcConfig={
                "SubnetIds": [private], "SecurityGroupIds": [net["group"]]})
            try:
                out = json.loads(lam.invoke(FunctionName="nat-probe")["Payload"].read())
                assert out == f"you are {a['PublicIp']}"
            finally:
                lam.delete_function(FunctionName="nat-probe")
            # its CloudWatch metrics, by AWS's names
            metrics = _nat_metrics(server, nat_id)
            assert metrics["ConnectionAttemptCount"] >= 2  # the resource's and the function's
            assert metrics["BytesOutToDestination"] > 0 and metrics["PacketsDropCount"] >= 1
            assert metrics["ErrorPortAllocation"] == 0 and "ActiveConnectionCount" in metrics
            # once the function's ENI is released, the kernel already matches the store
            assert wait_until(lambda: ec2.describe_network_interfaces(Filters=[
                {"Name": "interface-type", "Values": ["lambda"]},
                {"Name": "subnet-id", "Values": [private]}])["NetworkInterfaces"] == [],
                timeout_s=30)
            assert reconcile_now(server) == []
            # `net show` says who gets out, and why not with the fix
            shown = cli(server, "net", "show")
            assert shown.returncode == 0, shown.stderr
            lines = shown.stdout.splitlines()
            private_at = lines.index(next(x for x in lines if f"subnet {private}" in x))
            public_at = lines.index(next(x for x in lines if f"subnet {net['public']}" in x))
            assert lines[private_at + 1].strip().startswith(
                f"functions and resources: internet: through NAT gateway {nat_id}")
            assert "resources: internet only with a public address" in lines[public_at + 3]
            assert "functions: NO internet: routed straight to internet gateway" in \
                lines[public_at + 1]
            assert "fix: put the function in private subnets" in lines[public_at + 2]
            assert f"NAT gateway {nat_id} available public" in shown.stdout
            # a restart with nothing changed: the NAT gateway translates as before
            server.restart()
            assert _nat_state(ec2, nat_id) == "available"
            assert r.probe(PUBLIC_HOST, 80) == f"you are {a['PublicIp']}"
            assert reconcile_now(server) == []
            ec2.delete_nat_gateway(NatGatewayId=nat_id)
            assert wait_until(lambda: _nat_state(ec2, nat_id) == "deleted", timeout_s=30)
            assert _route_state(ec2, table, "0.0.0.0/0") == "blackhole"
            assert r.probe(PUBLIC_HOST, 80) == "timeout"
    finally:
        with contextlib.suppress(ClientError):
            ec2.delete_nat_gateway(NatGatewayId=nat_id)
        wait_until(lambda: _nat_state(ec2, nat_id) == "deleted", timeout_s=30)
        wait_until(lambda: ec2.describe_network_interfaces(Filters=[
            {"Name": "subnet-id", "Values": [private]}])["NetworkInterfaces"] == [],
            timeout_s=30)
        ec2.disassociate_route_table(AssociationId=assoc)
        ec2.delete_route_table(RouteTableId=table)
        ec2.release_address(AllocationId=a["AllocationId"])
        ec2.delete_subnet(SubnetId=private)
