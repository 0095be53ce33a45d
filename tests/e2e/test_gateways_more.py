"""Private NAT gateways, the NAT gateway metrics that need time or answers, public addresses given
at launch (MapPublicIpOnLaunch), through boto3 on real kernel networking. A private NAT gateway
translates every flow routed to it to its private address and sends it on by its own subnet's
routes: here to an appliance (a `lambdaplane run` resource standing for what a transit gateway
or VPN would reach, holding the "remote" address 192.0.2.10), which sees the NAT gateway's
address; what its subnet sends to the internet gateway is dropped there (a private address has
no way out, as on AWS). ConnectionEstablishedCount counts the answered handshakes;
IdleTimeoutCount a held connection left idle past the idle timeout (`serve --nat-idle-timeout 3`
here; AWS's is 350 s). A `lambdaplane run` resource launched in a subnet with
MapPublicIpOnLaunch gets a public address from the pool (DescribeNetworkInterfaces' Association,
owner "amazon", not an Elastic IP), is reached and reaches out through it, and the address
returns to the pool when the resource goes."""
from __future__ import annotations

import contextlib
import ipaddress
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from botocore.exceptions import ClientError

from tests.conftest import live_server
from tests.e2e.test_gateways import (  # noqa: F401 (internet: a fixture)
    PUBLIC_HOST,
    PUBLIC_POOL,
    _code,
    _nat_metrics,
    _nat_state,
    _route_state,
    internet,
    probe,
)
from tests.e2e.vpc_support import an_internet_vpc, cli, resource, wait_until
from tests.harness import LiveServer

pytestmark = pytest.mark.root

REMOTE = "192.0.2.10"  # beyond the appliance: "on premises"

# The appliance: port 80 answers with the address it sees; port 81 accepts and holds.
APPLIANCE = r"""
import socket, threading
def serve(port, hold):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port)); s.listen(64)
    held = []
    while True:
        c, peer = s.accept()
        if hold:
            held.append(c)
            continue
        try:
            c.sendall(b"you are " + peer[0].encode())
        finally:
            c.close()
threading.Thread(target=serve, args=(81, True), daemon=True).start()
serve(80, False)
"""

HOLD = r"""
import socket, sys
s = socket.create_connection((sys.argv[1], 81), timeout=5)
print("held", flush=True)
sys.stdin.read()
"""


@pytest.fixture(scope="module")
def server(internet, tmp_path_factory) -> Iterator[LiveServer]:  # noqa: F811
    yield from live_server(tmp_path_factory.mktemp("lp"), "--internet-netns", internet,
                           "--nat-idle-timeout", "3")


def test_private_nat_gateway(server) -> None:
    ec2 = server.ec2()
    vpc = ec2.create_vpc(CidrBlock="10.94.0.0/16")["Vpc"]["VpcId"]
    app, nat_subnet, appliance_subnet = (
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.94.{n}.0/24")["Subnet"]["SubnetId"]
        for n in (1, 2, 3))
    group = ec2.create_security_group(GroupName="all", Description="a", VpcId=vpc)["GroupId"]
    ec2.authorize_security_group_ingress(GroupId=group, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 81,
         "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
    igw = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    ec2.attach_internet_gateway(InternetGatewayId=igw, VpcId=vpc)
    app_table, nat_table = (ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"]
                            for _ in range(2))
    assocs = [ec2.associate_route_table(RouteTableId=t, SubnetId=s)["AssociationId"]
              for t, s in ((app_table, app), (nat_table, nat_subnet))]
    a = ec2.allocate_address(Domain="vpc")
    assert _code(lambda: ec2.create_nat_gateway(
        SubnetId=nat_subnet, ConnectivityType="private",
        AllocationId=a["AllocationId"])) == "InvalidParameterCombination"
    ec2.release_address(AllocationId=a["AllocationId"])
    nat = ec2.create_nat_gateway(SubnetId=nat_subnet, ConnectivityType="private")["NatGateway"]
    nat_id = nat["NatGatewayId"]
    private_ip = nat["NatGatewayAddresses"][0]["PrivateIp"]
    assert nat["ConnectivityType"] == "private"
    assert "PublicIp" not in nat["NatGatewayAddresses"][0]
    holder = None
    try:
        assert wait_until(lambda: _nat_state(ec2, nat_id) == "available", timeout_s=30)
        with resource(server, appliance_subnet, [group],
                      argv=[sys.executable, "-u", "-c", APPLIANCE]) as appliance, \
                resource(server, app, [group]) as client:
            subprocess.run(["ip", "-n", appliance.netns, "addr", "add", f"{REMOTE}/32", "dev",
                            "lo"], check=True)
            # the appliance answers on its own address: the program is up
            assert wait_until(lambda: client.probe(appliance.ip, 80).startswith("you are"),
                              timeout_s=15)
            for t, cidr, target in ((app_table, "192.0.2.0/24", {"NatGatewayId": nat_id}),
                                    (app_table, "0.0.0.0/0", {"NatGatewayId": nat_id}),
                                    (nat_table, "192.0.2.0/24",
                                     {"NetworkInterfaceId": appliance.eni_id}),
                                    (nat_table, "0.0.0.0/0", {"GatewayId": igw})):
                ec2.create_route(RouteTableId=t, DestinationCidrBlock=cidr, **target)
            before = _nat_metrics(server, nat_id)
            # through the private NAT gateway the appliance sees its private address
            assert client.probe(REMOTE, 80) == f"you are {private_ip}"
            # its subnet sends the internet to the internet gateway, which drops it
            assert client.probe(PUBLIC_HOST, 80) == "timeout"
            metrics = _nat_metrics(server, nat_id)
            assert metrics["ConnectionEstablishedCount"] >= \
                before.get("ConnectionEstablishedCount", 0) + 1
            assert metrics["ConnectionAttemptCount"] >= \
                before.get("ConnectionAttemptCount", 0) + 2
            # a connection held idle past the idle timeout (3 s here) counts once it expired
            holder = subprocess.Popen(["ip", "netns", "exec", client.netns, sys.executable,
                                       "-u", "-c", HOLD, REMOTE], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, text=True)
            assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
            assert _nat_metrics(server, nat_id)["ActiveConnectionCount"] >= 1  # seen
            time.sleep(5)
            assert _nat_metrics(server, nat_id)["IdleTimeoutCount"] >= 1
            # deleted: the routes to it are blackholes and nothing gets through
            ec2.delete_nat_gateway(NatGatewayId=nat_id)
            assert wait_until(lambda: _nat_state(ec2, nat_id) == "deleted", timeout_s=30)
            assert _route_state(ec2, app_table, "192.0.2.0/24") == "blackhole"
            assert client.probe(REMOTE, 80) == "timeout"
    finally:
        if holder is not None:
            holder.kill()
            holder.wait()
        with contextlib.suppress(ClientError):
            ec2.delete_nat_gateway(NatGatewayId=nat_id)
        wait_until(lambda: _nat_state(ec2, nat_id) == "deleted", timeout_s=30)
        wait_until(lambda: ec2.describe_network_interfaces(Filters=[
            {"Name": "vpc-id", "Values": [vpc]}])["NetworkInterfaces"] == [], timeout_s=30)
        for assoc in assocs:
            ec2.disassociate_route_table(AssociationId=assoc)
        for t in (app_table, nat_table):
            ec2.delete_route_table(RouteTableId=t)
        ec2.detach_internet_gateway(InternetGatewayId=igw, VpcId=vpc)
        ec2.delete_internet_gateway(InternetGatewayId=igw)
        ec2.delete_security_group(GroupId=group)
        for s in (app, nat_subnet, appliance_subnet):
            ec2.delete_subnet(SubnetId=s)
        ec2.delete_vpc(VpcId=vpc)


def _association(ec2, eni_id: str) -> dict | None:
    (eni,) = ec2.describe_network_interfaces(NetworkInterfaceIds=[eni_id])["NetworkInterfaces"]
    return eni.get("Association")


def test_map_public_ip_on_launch(server, internet) -> None:  # noqa: F811
    ec2 = server.ec2()
    with an_internet_vpc(ec2, "10.95") as net:
        subnet = net["public"]
        assert ec2.describe_subnets(SubnetIds=[subnet])["Subnets"][0][
            "MapPublicIpOnLaunch"] is False
        with resource(server, subnet, [net["group"]], ports=(80,)) as plain:
            assert _association(ec2, plain.eni_id) is None  # none without the attribute
            assert plain.probe(PUBLIC_HOST, 80) == "timeout"
        ec2.modify_subnet_attribute(SubnetId=subnet, MapPublicIpOnLaunch={"Value": True})
        assert ec2.describe_subnets(SubnetIds=[subnet])["Subnets"][0]["MapPublicIpOnLaunch"]
        with resource(server, subnet, [net["group"]], ports=(80,)) as r:
            association = _association(ec2, r.eni_id)
            assert association is not None and association["IpOwnerId"] == "amazon"
            public = association["PublicIp"]
            assert ipaddress.ip_address(public) in ipaddress.ip_network(PUBLIC_POOL)
            assert "AllocationId" not in association  # not an Elastic IP
            assert all(a["PublicIp"] != public
                       for a in ec2.describe_addresses()["Addresses"])
            (eni,) = ec2.describe_network_interfaces(
                NetworkInterfaceIds=[r.eni_id])["NetworkInterfaces"]
            assert eni["PrivateIpAddresses"][0]["Association"]["PublicIp"] == public
            # reached from the internet on the port its group opens, and reaches out from it
            assert probe(internet, public, 80, src=PUBLIC_HOST) == f"hello from {r.ip}"
            assert r.probe(PUBLIC_HOST, 80) == f"you are {public}"
            shown = cli(server, "net", "show")
            assert f"public IP given at launch {public} → {r.eni_id}" in shown.stdout, \
                shown.stdout + shown.stderr
            assert "the one this subnet gives at launch (MapPublicIpOnLaunch)" in shown.stdout
            # a VPC with mapped public addresses keeps its gateway
            assert _code(lambda: ec2.detach_internet_gateway(
                InternetGatewayId=net["igw"], VpcId=net["vpc"])) == "DependencyViolation"
            # an Elastic IP allocated meanwhile never takes the address
            a = ec2.allocate_address(Domain="vpc")
            assert a["PublicIp"] != public
            ec2.release_address(AllocationId=a["AllocationId"])
        # gone with the resource: unreachable, and the gateway may be detached
        assert wait_until(lambda: ec2.describe_network_interfaces(Filters=[
            {"Name": "vpc-id", "Values": [net["vpc"]]}])["NetworkInterfaces"] == [],
            timeout_s=30)
        # (no longer routed back to the VPC: unreachable in the test's internet)
        assert probe(internet, public, 80, src=PUBLIC_HOST) in ("timeout", "error 101")
        a = ec2.allocate_address(Domain="vpc")  # the first free address of the pool again
        try:
            assert a["PublicIp"] == public
        finally:
            ec2.release_address(AllocationId=a["AllocationId"])


def test_network_acl_judges_what_comes_in_through_the_gateway(server, internet) -> None:  # noqa: F811
    """Network ACLs sit at the subnet boundary for traffic from the internet gateway too, and
    statelessly: replies to a connection made from inside need their ephemeral ports allowed
    inbound."""
    ec2 = server.ec2()
    with an_internet_vpc(ec2, "10.96") as net:
        ec2.modify_subnet_attribute(SubnetId=net["public"], MapPublicIpOnLaunch={"Value": True})
        acl = ec2.create_network_acl(VpcId=net["vpc"])["NetworkAcl"]["NetworkAclId"]
        (current,) = ec2.describe_network_acls(Filters=[
            {"Name": "association.subnet-id", "Values": [net["public"]]}])["NetworkAcls"]
        default_acl = current["NetworkAclId"]
        assoc = next(a["NetworkAclAssociationId"] for a in current["Associations"]
                     if a["SubnetId"] == net["public"])

        def entry(number: int, egress: bool, ports: tuple[int, int] | None,
                  action: str = "allow") -> None:
            ec2.create_network_acl_entry(
                NetworkAclId=acl, RuleNumber=number, Egress=egress, RuleAction=action,
                CidrBlock="0.0.0.0/0", Protocol="6" if ports else "-1",
                **({"PortRange": {"From": ports[0], "To": ports[1]}} if ports else {}))

        entry(100, True, None)  # everything out
        entry(100, False, (80, 80))  # only port 80 in: no replies to what goes out
        with resource(server, net["public"], [net["group"]], ports=(80,)) as r:
            public = _association(ec2, r.eni_id)["PublicIp"]
            assert probe(internet, public, 80, src=PUBLIC_HOST) == f"hello from {r.ip}"
            assert r.probe(PUBLIC_HOST, 80) == f"you are {public}"  # the default ACL
            assoc = ec2.replace_network_acl_association(AssociationId=assoc, NetworkAclId=acl)[
                "NewAssociationId"]
            try:
                assert probe(internet, public, 80, src=PUBLIC_HOST) == f"hello from {r.ip}"
                # the reply from the public host comes back to an ephemeral port: denied
                assert r.probe(PUBLIC_HOST, 80) == "timeout"
                entry(110, False, (1024, 65535))
                assert r.probe(PUBLIC_HOST, 80) == f"you are {public}"
                entry(90, False, (80, 80), "deny")  # ahead of 100: port 80 closed from outside
                assert probe(internet, public, 80, src=PUBLIC_HOST) == "timeout"
            finally:
                ec2.replace_network_acl_association(AssociationId=assoc,
                                                    NetworkAclId=default_acl)
                ec2.delete_network_acl(NetworkAclId=acl)


def _default_vpc_internet(ec2) -> tuple[str, list[str], list[dict]]:
    """The default VPC: its attached gateways, and its main table's 0.0.0.0/0 routes."""
    (vpc,) = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"]
    igws = [g["InternetGatewayId"] for g in ec2.describe_internet_gateways(Filters=[
        {"Name": "attachment.vpc-id", "Values": [vpc["VpcId"]]}])["InternetGateways"]]
    (main,) = ec2.describe_route_tables(Filters=[
        {"Name": "vpc-id", "Values": [vpc["VpcId"]]},
        {"Name": "association.main", "Values": ["true"]}])["RouteTables"]
    return vpc["VpcId"], igws, [r for r in main["Routes"]
                                if r.get("DestinationCidrBlock") == "0.0.0.0/0"]


def test_default_vpc_is_what_aws_gives(server) -> None:
    """An internet gateway attached, the main table routing 0.0.0.0/0 to it, a default subnet
    per zone that maps public addresses at launch: a resource there reaches the internet; a
    default VPC stored before gateways existed gets them at start, one whose gateway the user
    removed does not."""
    ec2 = server.ec2()
    vpc, (igw,), (route,) = _default_vpc_internet(ec2)
    assert route["GatewayId"] == igw and route["State"] == "active"
    zones = {z["ZoneName"] for z in ec2.describe_availability_zones()["AvailabilityZones"]}
    subnets = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Subnets"]
    assert sorted(s["AvailabilityZone"] for s in subnets) == sorted(zones)
    assert all(s["DefaultForAz"] and s["MapPublicIpOnLaunch"] for s in subnets)
    with resource(server, subnets[0]["SubnetId"], []) as r:  # the default group
        public = _association(ec2, r.eni_id)["PublicIp"]
        assert r.probe(PUBLIC_HOST, 80) == f"you are {public}"
    # a default VPC stored by an older version: no gateway, no route, no mark
    assert wait_until(lambda: ec2.describe_network_interfaces(Filters=[
        {"Name": "vpc-id", "Values": [vpc]}])["NetworkInterfaces"] == [], timeout_s=30)
    server.stop()
    db = sqlite3.connect(server.data_dir / "lambdaplane.sqlite3")
    with db:
        db.execute("DELETE FROM ec2_routes WHERE target_id=?", (igw,))
        db.execute("DELETE FROM ec2_internet_gateways WHERE id=?", (igw,))
        db.execute("DELETE FROM ec2_attributes WHERE resource_id=? AND name LIKE 'lambdaplane:%'",
                   (vpc,))
    db.close()
    server.start()
    _vpc, (given,), (route,) = _default_vpc_internet(ec2)
    assert given != igw and route["GatewayId"] == given
    # the user takes it away: it stays away across a restart
    ec2.delete_route(RouteTableId=route_table_of(ec2, vpc), DestinationCidrBlock="0.0.0.0/0")
    ec2.detach_internet_gateway(InternetGatewayId=given, VpcId=vpc)
    ec2.delete_internet_gateway(InternetGatewayId=given)
    server.restart()
    assert _default_vpc_internet(ec2)[1:] == ([], [])


def route_table_of(ec2, vpc: str) -> str:
    (main,) = ec2.describe_route_tables(Filters=[
        {"Name": "vpc-id", "Values": [vpc]},
        {"Name": "association.main", "Values": ["true"]}])["RouteTables"]
    return main["RouteTableId"]
