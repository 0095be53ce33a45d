"""Lambda's `Ipv6AllowedForDualStack`, through boto3 with a live server: a VPC function that
allows dual stack in a subnet with an IPv6 /64 has a Hyperplane ENI with an IPv6 address of
that /64 (DescribeNetworkInterfaces), made with it or given it when such a function joins an
existing IPv4-only ENI; a function without the flag, or a subnet without IPv6, leaves its ENI
IPv4-only; and the function keeps reaching a `lambdaplane run` resource over IPv4 through the
ENI either way. (The sandboxes' own IPv6 path through the ENI is not built yet.)"""
from __future__ import annotations

import contextlib
import ipaddress
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from lambdaplane.net import nft
from lambdaplane.net.names import Names
from lambdaplane.net.netlink import Netlink
from tests.conftest import live_server
from tests.e2e.vpc_support import Resource, resource, wait_until
from tests.harness import LiveServer, create_python_function

pytestmark = pytest.mark.root

WAIT = {"Delay": 0.2, "MaxAttempts": 150}
PORT = 8080

HANDLER = r"""
import socket
def handler(event, context):
    try:
        with socket.create_connection((event["host"], event["port"]), timeout=3) as s:
            return s.recv(100).decode()
    except OSError as e:
        return f"error {e}"
"""


def _lambda_eni(ec2, subnet: str) -> dict:
    (eni,) = ec2.describe_network_interfaces(Filters=[
        {"Name": "interface-type", "Values": ["lambda"]},
        {"Name": "subnet-id", "Values": [subnet]}])["NetworkInterfaces"]
    return eni


def _invoke(lam, name: str, event: dict) -> object:
    resp = lam.invoke(FunctionName=name, Payload=json.dumps(event))
    body = json.loads(resp["Payload"].read())
    assert "FunctionError" not in resp, body
    return body


def _function(server: LiveServer, name: str, subnet: str, group: str, dual: bool | None) -> None:
    config: dict[str, object] = {"SubnetIds": [subnet], "SecurityGroupIds": [group]}
    if dual is not None:
        config["Ipv6AllowedForDualStack"] = dual
    create_python_function(server.lambda_(), name, HANDLER, wait=False, Timeout=30,
                           VpcConfig=config)
    server.lambda_().get_waiter("function_active_v2").wait(FunctionName=name,
                                                          WaiterConfig=WAIT)


def test_dual_stack_functions_get_an_eni_with_an_ipv6_address(server: LiveServer) -> None:
    ec2, lam = server.ec2(), server.lambda_()
    vpc = ec2.create_vpc(CidrBlock="10.71.0.0/16",
                         AmazonProvidedIpv6CidrBlock=True)["Vpc"]["VpcId"]
    (block,) = ec2.describe_vpcs(VpcIds=[vpc])["Vpcs"][0]["Ipv6CidrBlockAssociationSet"]
    first, second, *_ = ipaddress.IPv6Network(block["Ipv6CidrBlock"]).subnets(new_prefix=64)
    dual = ec2.create_subnet(VpcId=vpc, CidrBlock="10.71.1.0/24",
                             Ipv6CidrBlock=str(first))["Subnet"]["SubnetId"]
    joined = ec2.create_subnet(VpcId=vpc, CidrBlock="10.71.2.0/24",
                               Ipv6CidrBlock=str(second))["Subnet"]["SubnetId"]
    only4 = ec2.create_subnet(VpcId=vpc, CidrBlock="10.71.3.0/24")["Subnet"]["SubnetId"]
    fn = ec2.create_security_group(GroupName="fn", Description="fn", VpcId=vpc)["GroupId"]
    web = ec2.create_security_group(GroupName="web", Description="web", VpcId=vpc)["GroupId"]
    ec2.authorize_security_group_ingress(GroupId=web, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": PORT, "ToPort": PORT,
         "UserIdGroupPairs": [{"GroupId": fn}]}])
    names = ["v6-dual", "v6-plain", "v6-joins", "v6-only4"]
    try:
        with _service(server, dual, web) as svc:
            # allowed, in a subnet with a /64: the ENI is made with an address of that /64
            _function(server, "v6-dual", dual, fn, True)
            assert lam.get_function_configuration(FunctionName="v6-dual")["VpcConfig"][
                "Ipv6AllowedForDualStack"] is True
            eni = _lambda_eni(ec2, dual)
            (v6,) = [a["Ipv6Address"] for a in eni["Ipv6Addresses"]]
            assert ipaddress.IPv6Address(v6) in first
            assert _invoke(lam, "v6-dual", {"host": svc.ip, "port": PORT}) == \
                f"hello from {svc.ip}"
            # without the flag: IPv4 only, as before ...
            _function(server, "v6-plain", joined, fn, None)
            plain = _lambda_eni(ec2, joined)
            assert plain["Ipv6Addresses"] == []
            assert _invoke(lam, "v6-plain", {"host": svc.ip, "port": PORT}) == \
                f"hello from {svc.ip}"
            # ... until a function allowing dual stack joins its ENI: it gets an address
            _function(server, "v6-joins", joined, fn, True)
            again = _lambda_eni(ec2, joined)
            assert again["NetworkInterfaceId"] == plain["NetworkInterfaceId"]
            (v6b,) = [a["Ipv6Address"] for a in again["Ipv6Addresses"]]
            assert ipaddress.IPv6Address(v6b) in second
            # a subnet without IPv6: the flag gives no address
            _function(server, "v6-only4", only4, fn, True)
            assert _lambda_eni(ec2, only4)["Ipv6Addresses"] == []
            assert _invoke(lam, "v6-only4", {"host": svc.ip, "port": PORT}) == \
                f"hello from {svc.ip}"
    finally:
        for name in names:
            try:
                lam.delete_function(FunctionName=name)
            except lam.exceptions.ResourceNotFoundException:
                pass


def _service(server: LiveServer, subnet: str, group: str):
    """A TCP listener answering "hello from <its address>"."""
    return resource(server, subnet, [group], ports=(PORT,), ip="10.71.1.10")


# TCP on [::]:PORT6, answering "peer <the source address it sees>".
PEER6 = r"""
import socket
s = socket.socket(socket.AF_INET6); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("::", 8086)); s.listen(64)
print("listening", flush=True)
while True:
    c, peer = s.accept()
    try:
        c.sendall(("peer " + peer[0]).encode())
    finally:
        c.close()
"""
PORT6 = 8086


@dataclass(frozen=True)
class DualStack:
    """A dual-stack VPC 10.<n>.0.0/16 for a function and an IPv6 resource."""
    vpc: str
    apps: str  # the function's subnet, 10.<n>.1.0/24 and the VPC's first /64
    data: str  # the resource's subnet, 10.<n>.2.0/24 and the second /64
    fn: str  # the function's group: TCP out to ::/0
    web: str  # the resource's group: PORT6 from `fn` when asked, else nothing
    n: int


def dual_stack_vpc(ec2, n: int, admit_fn: bool = True) -> DualStack:
    vpc = ec2.create_vpc(CidrBlock=f"10.{n}.0.0/16",
                         AmazonProvidedIpv6CidrBlock=True)["Vpc"]["VpcId"]
    (block,) = ec2.describe_vpcs(VpcIds=[vpc])["Vpcs"][0]["Ipv6CidrBlockAssociationSet"]
    first, second, *_ = ipaddress.IPv6Network(block["Ipv6CidrBlock"]).subnets(new_prefix=64)
    apps = ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.{n}.1.0/24",
                             Ipv6CidrBlock=str(first))["Subnet"]["SubnetId"]
    data = ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.{n}.2.0/24",
                             Ipv6CidrBlock=str(second))["Subnet"]["SubnetId"]
    fn = ec2.create_security_group(GroupName="fn6", Description="fn", VpcId=vpc)["GroupId"]
    web = ec2.create_security_group(GroupName="web6", Description="web", VpcId=vpc)["GroupId"]
    ec2.authorize_security_group_egress(GroupId=fn, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 0, "ToPort": 65535,
         "Ipv6Ranges": [{"CidrIpv6": "::/0"}]}])
    if admit_fn:
        ec2.authorize_security_group_ingress(GroupId=web, IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": PORT6, "ToPort": PORT6,
             "UserIdGroupPairs": [{"GroupId": fn}]}])
    return DualStack(vpc, apps, data, fn, web, n)


@contextlib.contextmanager
def ipv6_peer(server: LiveServer, net: DualStack) -> Iterator[tuple[Resource, str]]:
    """The PEER6 listener in the data subnet (10.<n>.2.10), and its IPv6 address."""
    with resource(server, net.data, [net.web], ip=f"10.{net.n}.2.10",
                  argv=[sys.executable, "-u", "-c", PEER6]) as svc:
        assert svc.proc.stdout is not None and svc.proc.stdout.readline().strip() == \
            "listening"
        (svc6,) = [a["Ipv6Address"] for a in server.ec2().describe_network_interfaces(
            NetworkInterfaceIds=[svc.eni_id])["NetworkInterfaces"][0]["Ipv6Addresses"]]
        yield svc, svc6


def test_dual_stack_function_reaches_an_ipv6_resource_groups_deciding(
        server: LiveServer) -> None:
    ec2, lam = server.ec2(), server.lambda_()
    net = dual_stack_vpc(ec2, 72, admit_fn=False)
    apps, fn, web = net.apps, net.fn, net.web
    names = ["v6-reach", "v6-nodual"]
    try:
        with ipv6_peer(server, net) as (_svc, svc6):
            _function(server, "v6-reach", apps, fn, True)
            (eni6,) = [a["Ipv6Address"] for a in _lambda_eni(ec2, apps)["Ipv6Addresses"]]
            event = {"host": svc6, "port": PORT6}
            # the resource's group admits nothing yet: dropped, the function times out
            assert _invoke(lam, "v6-reach", event).startswith("error")
            # a rule admitting another address only: still dropped
            other = str(ipaddress.IPv6Address(eni6) + 1)
            ec2.authorize_security_group_ingress(GroupId=web, IpPermissions=[
                {"IpProtocol": "tcp", "FromPort": PORT6, "ToPort": PORT6,
                 "Ipv6Ranges": [{"CidrIpv6": f"{other}/128"}]}])
            assert _invoke(lam, "v6-reach", event).startswith("error")
            # admitting the ENI's IPv6 address: through, seen from the ENI's address
            ec2.authorize_security_group_ingress(GroupId=web, IpPermissions=[
                {"IpProtocol": "tcp", "FromPort": PORT6, "ToPort": PORT6,
                 "Ipv6Ranges": [{"CidrIpv6": f"{eni6}/128"}]}])
            assert _invoke(lam, "v6-reach", event) == f"peer {eni6}"
            ec2.revoke_security_group_ingress(GroupId=web, IpPermissions=[
                {"IpProtocol": "tcp", "FromPort": PORT6, "ToPort": PORT6,
                 "Ipv6Ranges": [{"CidrIpv6": f"{eni6}/128"}]}])
            assert _invoke(lam, "v6-reach", event).startswith("error")
            # an IPv4 rule naming the ENI's IPv4 address admits none of its IPv6 flows
            eni4 = _lambda_eni(ec2, apps)["PrivateIpAddress"]
            ec2.authorize_security_group_ingress(GroupId=web, IpPermissions=[
                {"IpProtocol": "tcp", "FromPort": PORT6, "ToPort": PORT6,
                 "IpRanges": [{"CidrIp": f"{eni4}/32"}]}])
            assert _invoke(lam, "v6-reach", event).startswith("error")
            # the function's group, referenced: through
            ec2.authorize_security_group_ingress(GroupId=web, IpPermissions=[
                {"IpProtocol": "tcp", "FromPort": PORT6, "ToPort": PORT6,
                 "UserIdGroupPairs": [{"GroupId": fn}]}])
            assert _invoke(lam, "v6-reach", event) == f"peer {eni6}"
            # a function without the flag on the same ENI has no IPv6 path
            _function(server, "v6-nodual", apps, fn, None)
            assert _invoke(lam, "v6-nodual", event).startswith("error")
            assert _invoke(lam, "v6-reach", event) == f"peer {eni6}"
    finally:
        for name in names:
            try:
                lam.delete_function(FunctionName=name)
            except lam.exceptions.ResourceNotFoundException:
                pass


@pytest.fixture
def drift_server(tmp_path: Path) -> Iterator[LiveServer]:
    yield from live_server(tmp_path, "--reconcile-interval", "1")


def test_ipv6_path_removed_by_hand_is_repaired(drift_server: LiveServer) -> None:
    """The ip6 plane table and the ENI's transit (its IPv6 neighbour and routes with it) go
    behind the server's back; the periodic repair puts the IPv6 path back."""
    server, names = drift_server, Names(drift_server.instance)
    ec2, lam = server.ec2(), server.lambda_()
    net = dual_stack_vpc(ec2, 73)
    vpc = net.vpc
    try:
        with ipv6_peer(server, net) as (_svc, svc6):
            _function(server, "v6-drift", net.apps, net.fn, True)
            (eni6,) = [a["Ipv6Address"] for a in _lambda_eni(ec2, net.apps)["Ipv6Addresses"]]
            event = {"host": svc6, "port": PORT6}
            assert _invoke(lam, "v6-drift", event) == f"peer {eni6}"
            vpc_netns = names.vpc_netns(vpc)
            plane6 = f"{names.plane_table}6"
            nft.delete_table("ip6", plane6, vpc_netns)
            with Netlink(names.worker_netns) as wl:
                (transit,) = [link.name for link in wl.links(names.prefix)
                              if names.transit_number(link.name) is not None]
                wl.delete_link(transit)
            assert wait_until(lambda: "repaired drift" in server.log(), timeout_s=30,
                              interval_s=0.5)
            assert wait_until(lambda: nft.tables(plane6, vpc_netns) != [], timeout_s=30,
                              interval_s=0.5)
            assert wait_until(lambda: _invoke(lam, "v6-drift", event) == f"peer {eni6}",
                              timeout_s=30, interval_s=1)
    finally:
        try:
            lam.delete_function(FunctionName="v6-drift")
        except lam.exceptions.ResourceNotFoundException:
            pass
