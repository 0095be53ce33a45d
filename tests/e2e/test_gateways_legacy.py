"""Routes take effect for legacy-mode ENIs too (`serve --vpc-mode legacy`: an ENI per
execution environment): a function in a private subnet routed to a NAT gateway gets out as the
NAT gateway's address; routed straight to the internet gateway it does not."""
from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.conftest import live_server
from tests.e2e.test_gateways import FUNCTION, _nat_state, internet  # noqa: F401 (fixture)
from tests.e2e.vpc_support import wait_until
from tests.harness import LiveServer, create_python_function

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def server(internet, tmp_path_factory) -> Iterator[LiveServer]:  # noqa: F811
    yield from live_server(tmp_path_factory.mktemp("lp"), "--internet-netns", internet,
                           "--vpc-mode", "legacy")


def test_legacy_enis_follow_their_subnets_routes(server) -> None:
    ec2, lam = server.ec2(), server.lambda_()
    vpc = ec2.create_vpc(CidrBlock="10.93.0.0/16")["Vpc"]["VpcId"]
    public = ec2.create_subnet(VpcId=vpc, CidrBlock="10.93.1.0/24")["Subnet"]["SubnetId"]
    private = ec2.create_subnet(VpcId=vpc, CidrBlock="10.93.2.0/24")["Subnet"]["SubnetId"]
    igw = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    ec2.attach_internet_gateway(InternetGatewayId=igw, VpcId=vpc)
    (main,) = ec2.describe_route_tables(Filters=[{"Name": "vpc-id", "Values": [vpc]}])[
        "RouteTables"]
    main_id = main["RouteTableId"]
    ec2.create_route(RouteTableId=main_id, DestinationCidrBlock="0.0.0.0/0", GatewayId=igw)
    table = ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"]
    assoc = ec2.associate_route_table(RouteTableId=table, SubnetId=private)["AssociationId"]
    a = ec2.allocate_address(Domain="vpc")
    nat = ec2.create_nat_gateway(SubnetId=public, AllocationId=a["AllocationId"])[
        "NatGateway"]["NatGatewayId"]
    group = ec2.describe_security_groups(Filters=[{"Name": "vpc-id", "Values": [vpc]}])[
        "SecurityGroups"][0]["GroupId"]
    try:
        assert wait_until(lambda: _nat_state(ec2, nat) == "available", timeout_s=30)
        ec2.create_route(RouteTableId=table, DestinationCidrBlock="0.0.0.0/0", NatGatewayId=nat)
        for name, subnet, expected in (("legacy-private", private, f"you are {a['PublicIp']}"),
                                       ("legacy-public", public, None)):
            create_python_function(lam, name, FUNCTION, Timeout=30, VpcConfig={
                "SubnetIds": [subnet], "SecurityGroupIds": [group]})
            try:
                out = json.loads(lam.invoke(FunctionName=name)["Payload"].read())
                if expected:
                    assert out == expected
                else:
                    assert out == "timeout" or out.startswith("error"), out
            finally:
                lam.delete_function(FunctionName=name)
    finally:
        ec2.delete_nat_gateway(NatGatewayId=nat)
        wait_until(lambda: _nat_state(ec2, nat) == "deleted", timeout_s=30)
        wait_until(lambda: ec2.describe_network_interfaces(Filters=[
            {"Name": "vpc-id", "Values": [vpc]}])["NetworkInterfaces"] == [], timeout_s=60)
        ec2.disassociate_route_table(AssociationId=assoc)
        ec2.delete_route_table(RouteTableId=table)
        ec2.delete_route(RouteTableId=main_id, DestinationCidrBlock="0.0.0.0/0")
        ec2.release_address(AllocationId=a["AllocationId"])
        ec2.detach_internet_gateway(InternetGatewayId=igw, VpcId=vpc)
        ec2.delete_internet_gateway(InternetGatewayId=igw)
        ec2.delete_subnet(SubnetId=public)
        ec2.delete_subnet(SubnetId=private)
        ec2.delete_vpc(VpcId=vpc)
