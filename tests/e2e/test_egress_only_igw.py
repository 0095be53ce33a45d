"""Egress-only internet gateways and IPv6 routes to gateways, through boto3, on real kernel
networking. The test makes the internet: a namespace with an IPv6 "public host" on a
documentation address (2001:db8::10) that answers TCP with the address it sees; the server
links its gateways into it (`serve --internet-netns`). IPv6 is not translated (as on AWS): the
host sees the resource's own address. A resource in a subnet routed `::/0` to an egress-only
gateway reaches the host, and the host cannot reach it; routed to an internet gateway instead,
the host reaches it on the ports its security group opens; deleting the gateway turns the
route into a blackhole. An IPv6 route to a network interface leads to it. No packet leaves the
machine."""
from __future__ import annotations

import contextlib
import ipaddress
import subprocess
import sys
from collections.abc import Iterator

import pytest
from botocore.exceptions import ClientError

from tests.conftest import live_server
from tests.e2e.test_ipv6 import LISTENER6
from tests.e2e.vpc_support import (
    own_namespaces,
    probe_from,
    reconcile_now,
    resource,
    who_am_i,
)
from tests.harness import LiveServer

pytestmark = pytest.mark.root

PUBLIC_HOST6 = "2001:db8::10"

def answer(netns: str, host: str, port: int, expected: str, tries: int = 5) -> str:
    """`probe_from` until it answers `expected`, at most `tries` times: what should connect is
    given a few SYNs, as a client would retry (one lost first packet is not a wrong route);
    what should not connect is probed once, with its own one-second timeout."""
    got = ""
    for _ in range(tries):
        got = probe_from(netns, host, port)
        if got == expected:
            break
    return got


def error_code(call, **kwargs) -> str:
    with pytest.raises(ClientError) as e:
        call(**kwargs)
    return str(e.value.response["Error"]["Code"])


@pytest.fixture(scope="module")
def internet() -> Iterator[str]:
    with own_namespaces("") as (name,):
        subprocess.run(["ip", "-n", name, "-6", "addr", "add", f"{PUBLIC_HOST6}/128", "dev",
                        "lo", "nodad"], check=True)
        with who_am_i(name, PUBLIC_HOST6):
            yield name


@pytest.fixture(scope="module")
def server(internet, tmp_path_factory) -> Iterator[LiveServer]:
    yield from live_server(tmp_path_factory.mktemp("lp"), "--internet-netns", internet)


@pytest.fixture()
def net(server) -> Iterator[dict]:
    """A dual-stack VPC, one subnet in its own route table, a group opening port 80 to ::/0."""
    ec2 = server.ec2()
    vpc = ec2.create_vpc(CidrBlock="10.93.0.0/16",
                         AmazonProvidedIpv6CidrBlock=True)["Vpc"]["VpcId"]
    (block,) = ec2.describe_vpcs(VpcIds=[vpc])["Vpcs"][0]["Ipv6CidrBlockAssociationSet"]
    first = next(ipaddress.IPv6Network(block["Ipv6CidrBlock"]).subnets(new_prefix=64))
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.93.1.0/24",
                               Ipv6CidrBlock=str(first))["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName="web", Description="w", VpcId=vpc)["GroupId"]
    ec2.authorize_security_group_ingress(GroupId=group, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80,
         "Ipv6Ranges": [{"CidrIpv6": "::/0"}]}])
    table = ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"]
    assoc = ec2.associate_route_table(RouteTableId=table, SubnetId=subnet)["AssociationId"]
    try:
        yield {"vpc": vpc, "subnet": subnet, "group": group, "table": table,
               "block": block["Ipv6CidrBlock"]}
    finally:
        ec2.disassociate_route_table(AssociationId=assoc)
        ec2.delete_route_table(RouteTableId=table)
        for g in ec2.describe_egress_only_internet_gateways()["EgressOnlyInternetGateways"]:
            ec2.delete_egress_only_internet_gateway(
                EgressOnlyInternetGatewayId=g["EgressOnlyInternetGatewayId"])
        for igw in ec2.describe_internet_gateways(Filters=[
                {"Name": "attachment.vpc-id", "Values": [vpc]}])["InternetGateways"]:
            ec2.detach_internet_gateway(InternetGatewayId=igw["InternetGatewayId"], VpcId=vpc)
            ec2.delete_internet_gateway(InternetGatewayId=igw["InternetGatewayId"])
        with contextlib.suppress(ClientError):
            ec2.delete_security_group(GroupId=group)
        ec2.delete_subnet(SubnetId=subnet)
        ec2.delete_vpc(VpcId=vpc)


def _listener(server, net: dict):
    return resource(server, net["subnet"], [net["group"]], ip="10.93.1.10",
                    argv=[sys.executable, "-u", "-c", LISTENER6, "80", "81"])


def _ipv6_of(ec2, eni_id: str) -> str:
    (eni,) = ec2.describe_network_interfaces(NetworkInterfaceIds=[eni_id])["NetworkInterfaces"]
    (address,) = [a["Ipv6Address"] for a in eni["Ipv6Addresses"]]
    return address


def _ipv6_routes(ec2, table: str) -> list[dict]:
    (t,) = ec2.describe_route_tables(RouteTableIds=[table])["RouteTables"]
    return [r for r in t["Routes"] if "DestinationIpv6CidrBlock" in r]


def test_egress_only_gateway_api(server, net) -> None:
    ec2 = server.ec2()
    made = ec2.create_egress_only_internet_gateway(
        VpcId=net["vpc"], ClientToken="t1", TagSpecifications=[
            {"ResourceType": "egress-only-internet-gateway",
             "Tags": [{"Key": "Name", "Value": "out"}]}])
    g = made["EgressOnlyInternetGateway"]
    eigw = g["EgressOnlyInternetGatewayId"]
    assert eigw.startswith("eigw-") and made["ClientToken"] == "t1"
    assert g["Attachments"] == [{"State": "attached", "VpcId": net["vpc"]}]
    assert g["Tags"] == [{"Key": "Name", "Value": "out"}]
    described = ec2.describe_egress_only_internet_gateways(
        EgressOnlyInternetGatewayIds=[eigw])["EgressOnlyInternetGateways"]
    assert described == [g]
    assert ec2.describe_egress_only_internet_gateways(Filters=[
        {"Name": "tag:Name", "Values": ["out"]}])["EgressOnlyInternetGateways"] == [g]
    assert ec2.describe_egress_only_internet_gateways(Filters=[
        {"Name": "tag-key", "Values": ["nope"]}])["EgressOnlyInternetGateways"] == []
    assert error_code(ec2.describe_egress_only_internet_gateways, Filters=[
        {"Name": "vpc-id", "Values": ["x"]}]) == "InvalidParameterValue"
    assert error_code(ec2.describe_egress_only_internet_gateways,
                      EgressOnlyInternetGatewayIds=["eigw-0123456789abcdef0"]) == \
        "InvalidEgressOnlyInternetGatewayId.NotFound"
    assert error_code(ec2.delete_egress_only_internet_gateway,
                      EgressOnlyInternetGatewayId="eigw-nothex") == \
        "InvalidEgressOnlyInternetGatewayId.Malformed"
    assert error_code(ec2.create_egress_only_internet_gateway,
                      VpcId="vpc-0123456789abcdef0") == "InvalidVpcID.NotFound"
    ec2.create_tags(Resources=[eigw], Tags=[{"Key": "team", "Value": "a"}])
    # IPv6 routes: to it, shown, filtered, checked
    ec2.create_route(RouteTableId=net["table"], DestinationIpv6CidrBlock="::/0",
                     EgressOnlyInternetGatewayId=eigw)
    assert {"DestinationIpv6CidrBlock": "::/0", "EgressOnlyInternetGatewayId": eigw,
            "Origin": "CreateRoute", "State": "active"} in _ipv6_routes(ec2, net["table"])
    assert {"DestinationIpv6CidrBlock": net["block"], "GatewayId": "local",
            "Origin": "CreateRouteTable", "State": "active"} in _ipv6_routes(ec2, net["table"])
    found = ec2.describe_route_tables(Filters=[
        {"Name": "route.egress-only-internet-gateway-id", "Values": [eigw]}])["RouteTables"]
    assert [t["RouteTableId"] for t in found] == [net["table"]]
    found = ec2.describe_route_tables(Filters=[
        {"Name": "route.destination-ipv6-cidr-block", "Values": ["::/0"]}])["RouteTables"]
    assert [t["RouteTableId"] for t in found] == [net["table"]]
    assert error_code(ec2.create_route, RouteTableId=net["table"],
                      DestinationIpv6CidrBlock="::/0",
                      EgressOnlyInternetGatewayId=eigw) == "RouteAlreadyExists"
    assert error_code(ec2.create_route, RouteTableId=net["table"],
                      DestinationIpv6CidrBlock="2001:db8::/32",
                      EgressOnlyInternetGatewayId="eigw-0123456789abcdef0") == \
        "InvalidGatewayID.NotFound"
    assert error_code(ec2.create_route, RouteTableId=net["table"],
                      DestinationIpv6CidrBlock="not-a-cidr",
                      EgressOnlyInternetGatewayId=eigw) == "InvalidParameterValue"
    assert error_code(ec2.create_route, RouteTableId=net["table"],
                      DestinationCidrBlock="0.0.0.0/0",
                      EgressOnlyInternetGatewayId=eigw) == "InvalidParameterValue"
    assert error_code(ec2.create_route, RouteTableId=net["table"],
                      DestinationCidrBlock="0.0.0.0/0", DestinationIpv6CidrBlock="::/0",
                      EgressOnlyInternetGatewayId=eigw) == "InvalidParameterCombination"
    assert error_code(ec2.delete_route, RouteTableId=net["table"],
                      DestinationIpv6CidrBlock=net["block"]) == "InvalidParameterValue"
    assert error_code(ec2.delete_route, RouteTableId=net["table"],
                      DestinationIpv6CidrBlock="2001:db8::/32") == "InvalidRoute.NotFound"
    assert error_code(ec2.replace_route, RouteTableId=net["table"],
                      DestinationIpv6CidrBlock="2001:db8::/32",
                      EgressOnlyInternetGatewayId=eigw) == "InvalidParameterValue"
    # its VPC is kept while it lives; deleting it leaves a blackhole route
    assert error_code(ec2.delete_vpc, VpcId=net["vpc"]) == "DependencyViolation"
    assert ec2.delete_egress_only_internet_gateway(
        EgressOnlyInternetGatewayId=eigw)["ReturnCode"] is True
    assert {"DestinationIpv6CidrBlock": "::/0", "EgressOnlyInternetGatewayId": eigw,
            "Origin": "CreateRoute", "State": "blackhole"} in _ipv6_routes(ec2, net["table"])
    ec2.delete_route(RouteTableId=net["table"], DestinationIpv6CidrBlock="::/0")
    assert [r["DestinationIpv6CidrBlock"] for r in _ipv6_routes(ec2, net["table"])] == \
        [net["block"]]


def test_egress_only_out_not_in_and_internet_gateway_both_ways(server, net, internet) -> None:
    ec2 = server.ec2()
    eigw = ec2.create_egress_only_internet_gateway(
        VpcId=net["vpc"])["EgressOnlyInternetGateway"]["EgressOnlyInternetGatewayId"]
    with _listener(server, net) as r:
        mine = _ipv6_of(ec2, r.eni_id)
        # no route: nothing goes out, nothing comes in
        assert probe_from(r.netns, PUBLIC_HOST6, 80) == "timeout"
        assert probe_from(internet, mine, 80) == "timeout"
        # ::/0 to the egress-only gateway: out (untranslated) and the replies back, never in
        ec2.create_route(RouteTableId=net["table"], DestinationIpv6CidrBlock="::/0",
                         EgressOnlyInternetGatewayId=eigw)
        assert answer(r.netns, PUBLIC_HOST6, 80, f"you are {mine}") == f"you are {mine}"
        assert probe_from(internet, mine, 80) == "timeout"
        # ::/0 to an internet gateway: in too, on the ports the security group opens
        igw = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
        ec2.attach_internet_gateway(InternetGatewayId=igw, VpcId=net["vpc"])
        ec2.replace_route(RouteTableId=net["table"], DestinationIpv6CidrBlock="::/0",
                          GatewayId=igw)
        assert {"DestinationIpv6CidrBlock": "::/0", "GatewayId": igw, "Origin": "CreateRoute",
                "State": "active"} in _ipv6_routes(ec2, net["table"])
        assert answer(internet, mine, 80, f"hello from {mine}") == f"hello from {mine}"
        assert probe_from(internet, mine, 81) == "timeout"  # the group opens port 80 only
        assert answer(r.netns, PUBLIC_HOST6, 80, f"you are {mine}") == f"you are {mine}"
        assert reconcile_now(server) == []  # read back in full: the kernel matches already
        # back to the egress-only gateway; deleting it turns the route into a blackhole
        ec2.replace_route(RouteTableId=net["table"], DestinationIpv6CidrBlock="::/0",
                          EgressOnlyInternetGatewayId=eigw)
        assert probe_from(internet, mine, 80) == "timeout"
        assert answer(r.netns, PUBLIC_HOST6, 80, f"you are {mine}") == f"you are {mine}"
        ec2.delete_egress_only_internet_gateway(EgressOnlyInternetGatewayId=eigw)
        (route,) = [x for x in _ipv6_routes(ec2, net["table"])
                    if x["DestinationIpv6CidrBlock"] == "::/0"]
        assert route["State"] == "blackhole"
        assert probe_from(r.netns, PUBLIC_HOST6, 80) == "timeout"
        ec2.delete_route(RouteTableId=net["table"], DestinationIpv6CidrBlock="::/0")


def test_ipv6_route_to_a_network_interface(server, net) -> None:
    """An IPv6 route to an interface of the VPC (an appliance) sends the subnet's traffic for
    that destination to it; the route goes when the interface goes (blackhole)."""
    ec2 = server.ec2()
    behind = "2001:db8:1::10"  # an address only the appliance holds
    with _listener(server, net) as appliance, \
            resource(server, net["subnet"], [net["group"]], ip="10.93.1.20",
                     argv=[sys.executable, "-u", "-c", LISTENER6, "80"]) as client:
        subprocess.run(["ip", "-n", appliance.netns, "-6", "addr", "add", f"{behind}/128",
                        "dev", "lo", "nodad"], check=True)
        assert probe_from(client.netns, behind, 80) == "timeout"  # no route
        ec2.create_route(RouteTableId=net["table"], DestinationIpv6CidrBlock="2001:db8:1::/48",
                         NetworkInterfaceId=appliance.eni_id)
        assert {"DestinationIpv6CidrBlock": "2001:db8:1::/48",
                "NetworkInterfaceId": appliance.eni_id, "Origin": "CreateRoute",
                "State": "active"} in _ipv6_routes(ec2, net["table"])
        assert answer(client.netns, behind, 80, f"hello from {behind}") == f"hello from {behind}"
    (route,) = [x for x in _ipv6_routes(ec2, net["table"])
                if x["DestinationIpv6CidrBlock"] == "2001:db8:1::/48"]
    assert route["State"] == "blackhole"
    ec2.delete_route(RouteTableId=net["table"], DestinationIpv6CidrBlock="2001:db8:1::/48")
