"""A dual-stack function's IPv6 flows (NAT66 to its Hyperplane ENI's IPv6 address) count among
the ENI's tracked flows, as its IPv4 flows do: the sampler reads conntrack of both families and
`lambdaplane_eni_active_connections` shows them."""
from __future__ import annotations

import ipaddress
import sys

import pytest

from tests.e2e.test_lambda_ipv6 import PEER6, PORT6, _function, _invoke, _lambda_eni
from tests.e2e.test_metrics import scrape, value
from tests.e2e.vpc_support import resource, wait_until
from tests.harness import LiveServer

pytestmark = pytest.mark.root


def test_ipv6_flows_count_as_the_enis_tracked_flows(server: LiveServer) -> None:
    ec2, lam = server.ec2(), server.lambda_()
    vpc = ec2.create_vpc(CidrBlock="10.75.0.0/16",
                         AmazonProvidedIpv6CidrBlock=True)["Vpc"]["VpcId"]
    (block,) = ec2.describe_vpcs(VpcIds=[vpc])["Vpcs"][0]["Ipv6CidrBlockAssociationSet"]
    first, second, *_ = ipaddress.IPv6Network(block["Ipv6CidrBlock"]).subnets(new_prefix=64)
    apps = ec2.create_subnet(VpcId=vpc, CidrBlock="10.75.1.0/24",
                             Ipv6CidrBlock=str(first))["Subnet"]["SubnetId"]
    data = ec2.create_subnet(VpcId=vpc, CidrBlock="10.75.2.0/24",
                             Ipv6CidrBlock=str(second))["Subnet"]["SubnetId"]
    fn = ec2.create_security_group(GroupName="fn6", Description="fn", VpcId=vpc)["GroupId"]
    web = ec2.create_security_group(GroupName="web6", Description="web", VpcId=vpc)["GroupId"]
    ec2.authorize_security_group_egress(GroupId=fn, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 0, "ToPort": 65535,
         "Ipv6Ranges": [{"CidrIpv6": "::/0"}]}])
    ec2.authorize_security_group_ingress(GroupId=web, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": PORT6, "ToPort": PORT6,
         "UserIdGroupPairs": [{"GroupId": fn}]}])
    try:
        with resource(server, data, [web], ip="10.75.2.10",
                      argv=[sys.executable, "-u", "-c", PEER6]) as svc:
            assert svc.proc.stdout is not None and svc.proc.stdout.readline().strip() == \
                "listening"
            (svc6,) = [a["Ipv6Address"] for a in ec2.describe_network_interfaces(
                NetworkInterfaceIds=[svc.eni_id])["NetworkInterfaces"][0]["Ipv6Addresses"]]
            _function(server, "v6-flows", apps, fn, True)
            eni = _lambda_eni(ec2, apps)
            (eni6,) = [a["Ipv6Address"] for a in eni["Ipv6Addresses"]]
            labels = {"eni": eni["NetworkInterfaceId"], "subnet": apps, "vpc": vpc}
            # IPv6 only: the function connects to an IPv6 literal, no name is looked up
            for _ in range(3):
                assert _invoke(lam, "v6-flows", {"host": svc6, "port": PORT6}) == \
                    f"peer {eni6}"
            # three connections (closed, still tracked in TIME_WAIT) through the NAT66
            assert wait_until(lambda: value(scrape(server), "lambdaplane_eni_active_connections",
                                            **labels) >= 3, timeout_s=15)
    finally:
        try:
            lam.delete_function(FunctionName="v6-flows")
        except lam.exceptions.ResourceNotFoundException:
            pass
