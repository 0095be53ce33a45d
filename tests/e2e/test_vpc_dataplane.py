"""Security groups enforced in the kernel, through boto3 and `lambdaplane run`: resources are
reachable only on the ports, from the CIDRs and from the member groups their groups allow;
denied traffic times out; group references follow membership; VPCs with the same CIDR never
meet; and a program's interface lives exactly as long as the program."""
from __future__ import annotations

import subprocess
import sys

import pytest

from tests.e2e.vpc_support import cli, resource, run_args, wait_until

pytestmark = pytest.mark.root


def _vpc(ec2, cidr: str = "10.20.0.0/16") -> str:
    return ec2.create_vpc(CidrBlock=cidr)["Vpc"]["VpcId"]


def _subnet(ec2, vpc: str, cidr: str) -> str:
    return ec2.create_subnet(VpcId=vpc, CidrBlock=cidr)["Subnet"]["SubnetId"]


def _group(ec2, vpc: str, name: str) -> str:
    return ec2.create_security_group(GroupName=name, Description=name, VpcId=vpc)["GroupId"]


def _allow(ec2, group: str, port: int, cidr: str | None = None, source: str | None = None,
           proto: str = "tcp") -> None:
    perm: dict = {"IpProtocol": proto, "FromPort": port, "ToPort": port}
    if cidr:
        perm["IpRanges"] = [{"CidrIp": cidr}]
    if source:
        perm["UserIdGroupPairs"] = [{"GroupId": source}]
    ec2.authorize_security_group_ingress(GroupId=group, IpPermissions=[perm])


def test_ports_and_cidrs_decide_who_reaches_a_resource(server) -> None:
    ec2 = server.ec2()
    vpc = _vpc(ec2)
    a, b = _subnet(ec2, vpc, "10.20.1.0/24"), _subnet(ec2, vpc, "10.20.2.0/24")
    web, client = _group(ec2, vpc, "web"), _group(ec2, vpc, "client")
    _allow(ec2, web, 8080, cidr="10.20.1.0/24")
    _allow(ec2, web, 9000, cidr="10.20.2.32/28")
    with resource(server, a, [web], ports=(8080, 8081, 9000), ip="10.20.1.10") as srv, \
            resource(server, a, [client], ip="10.20.1.20") as same_subnet, \
            resource(server, b, [client], ip="10.20.2.40") as other_subnet, \
            resource(server, b, [client], ip="10.20.2.60") as outside_cidr:
        assert same_subnet.probe(srv.ip, 8080) == "hello from 10.20.1.10"
        assert same_subnet.probe(srv.ip, 8081) == "timeout"  # open port, no rule: dropped
        assert same_subnet.probe(srv.ip, 9000) == "timeout"  # rule for another CIDR
        assert other_subnet.probe(srv.ip, 9000) == "hello from 10.20.1.10"
        assert other_subnet.probe(srv.ip, 8080) == "timeout"
        assert outside_cidr.probe(srv.ip, 9000) == "timeout"
        assert other_subnet.probe(srv.ip, 9000, proto="udp") == "timeout"  # tcp only
        _allow(ec2, web, 9000, cidr="10.20.2.0/24", proto="udp")
        assert other_subnet.probe(srv.ip, 9000, proto="udp") == "echo ping"
        # The listener's own group allows all egress; the client group has no ingress at all.
        assert srv.probe(same_subnet.ip, 8080) == "timeout"
        assert not same_subnet.ping(srv.ip)
        ec2.authorize_security_group_ingress(GroupId=web, IpPermissions=[
            {"IpProtocol": "icmp", "FromPort": 8, "ToPort": -1,
             "IpRanges": [{"CidrIp": "10.20.1.20/32"}]}])
        assert same_subnet.ping(srv.ip)
        assert not other_subnet.ping(srv.ip)
        # Revoking takes effect for the next connection.
        ec2.revoke_security_group_ingress(GroupId=web, IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": 8080, "ToPort": 8080,
             "IpRanges": [{"CidrIp": "10.20.1.0/24"}]}])
        assert same_subnet.probe(srv.ip, 8080) == "timeout"


def test_egress_rules_limit_what_a_resource_opens(server) -> None:
    ec2 = server.ec2()
    vpc = _vpc(ec2, "10.21.0.0/16")
    net = _subnet(ec2, vpc, "10.21.0.0/24")
    open_in, locked = _group(ec2, vpc, "open-in"), _group(ec2, vpc, "locked")
    _allow(ec2, open_in, 7000, cidr="10.21.0.0/16")
    ec2.revoke_security_group_egress(GroupId=locked, IpPermissions=[
        {"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
    with resource(server, net, [open_in], ports=(7000,)) as srv, \
            resource(server, net, [locked]) as client:
        assert client.probe(srv.ip, 7000) == "timeout"
        ec2.authorize_security_group_egress(GroupId=locked, IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": 7000, "ToPort": 7000,
             "IpRanges": [{"CidrIp": f"{srv.ip}/32"}]}])
        assert client.probe(srv.ip, 7000) == f"hello from {srv.ip}"


def test_group_reference_follows_membership(server) -> None:
    ec2 = server.ec2()
    vpc = _vpc(ec2, "10.22.0.0/16")
    net = _subnet(ec2, vpc, "10.22.0.0/24")
    db, app, other = (_group(ec2, vpc, n) for n in ("db", "app", "other"))
    _allow(ec2, db, 5432, source=app)
    with resource(server, net, [db], ports=(5432,)) as database:
        with resource(server, net, [app]) as member, resource(server, net, [other]) as stranger:
            assert member.probe(database.ip, 5432) == f"hello from {database.ip}"
            assert stranger.probe(database.ip, 5432) == "timeout"
            assert ec2.describe_security_groups(GroupIds=[db])["SecurityGroups"][0][
                "IpPermissions"][0]["UserIdGroupPairs"][0]["GroupId"] == app
        # Membership is re-expanded as interfaces come and go: a new member (at the address a
        # former member had) is let in, and a non-member at that address is not.
        with resource(server, net, [other, app]) as newcomer:
            assert newcomer.probe(database.ip, 5432) == f"hello from {database.ip}"
        with resource(server, net, [other]) as reused:
            assert reused.probe(database.ip, 5432) == "timeout"


def test_default_group_lets_its_members_talk(server) -> None:
    ec2 = server.ec2()
    vpc = _vpc(ec2, "10.23.0.0/16")
    net = _subnet(ec2, vpc, "10.23.0.0/24")
    default = ec2.describe_security_groups(Filters=[
        {"Name": "vpc-id", "Values": [vpc]}, {"Name": "group-name", "Values": ["default"]}])[
        "SecurityGroups"][0]["GroupId"]
    lonely = _group(ec2, vpc, "lonely")
    with resource(server, net, [], ports=(6000,)) as a, resource(server, net, []) as b, \
            resource(server, net, [lonely]) as c:
        assert server.admin("ps")["resources"][0]["groups"][0]["id"] == default
        assert b.probe(a.ip, 6000) == f"hello from {a.ip}"
        assert c.probe(a.ip, 6000) == "timeout"


def test_two_vpcs_with_the_same_cidr_are_isolated(server) -> None:
    ec2 = server.ec2()
    results = []
    vpcs = [_vpc(ec2, "10.30.0.0/16") for _ in range(2)]
    subnets = [_subnet(ec2, v, "10.30.1.0/24") for v in vpcs]
    groups = []
    for v in vpcs:
        g = _group(ec2, v, "all")
        _allow(ec2, g, 4000, cidr="0.0.0.0/0")
        groups.append(g)
    with resource(server, subnets[0], [groups[0]], ports=(4000,), ip="10.30.1.10") as one, \
            resource(server, subnets[1], [groups[1]], ports=(4000,), ip="10.30.1.10") as two, \
            resource(server, subnets[0], [groups[0]], ip="10.30.1.20") as peer_one, \
            resource(server, subnets[1], [groups[1]], ip="10.30.1.20") as peer_two:
        assert one.ip == two.ip == "10.30.1.10"
        results.append(peer_one.probe("10.30.1.10", 4000))
        results.append(peer_two.probe("10.30.1.10", 4000))
        assert one.netns != two.netns
    assert results == ["hello from 10.30.1.10", "hello from 10.30.1.10"]
    # Each VPC saw only its own interfaces, and the server kept them apart in the kernel.
    for v, s in zip(vpcs, subnets):
        assert ec2.describe_subnets(SubnetIds=[s])["Subnets"][0]["VpcId"] == v


def test_run_reports_exit_status_and_releases_the_interface(server) -> None:
    ec2 = server.ec2()
    vpc = _vpc(ec2, "10.24.0.0/16")
    net = _subnet(ec2, vpc, "10.24.0.0/28")
    free = ec2.describe_subnets(SubnetIds=[net])["Subnets"][0]["AvailableIpAddressCount"]
    assert free == 11
    script = "import os, sys; print(os.environ['LAMBDAPLANE_IP'], os.environ['LAMBDAPLANE_ENI']); sys.exit(7)"
    proc = subprocess.run([*run_args(server, net, [], name="exit7"), "--", sys.executable,
                           "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 7, proc.stderr
    ip, eni = proc.stdout.split()
    assert ip == "10.24.0.4"  # the first address after the four AWS reserves
    assert ec2.describe_network_interfaces(Filters=[
        {"Name": "network-interface-id", "Values": [eni]}])["NetworkInterfaces"] == []
    assert ec2.describe_subnets(SubnetIds=[net])["Subnets"][0]["AvailableIpAddressCount"] == free
    missing = subprocess.run([*run_args(server, net, []), "--", "/nonexistent/program"],
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode == 127
    bad_subnet = subprocess.run([*run_args(server, "subnet-0123456789abcdef0", []), "--", "true"],
                                capture_output=True, text=True, timeout=60)
    assert bad_subnet.returncode == 1 and "InvalidSubnetID.NotFound" in bad_subnet.stderr


def test_resource_interface_is_visible_and_counted(server) -> None:
    ec2 = server.ec2()
    vpc = _vpc(ec2, "10.25.0.0/16")
    net = _subnet(ec2, vpc, "10.25.0.0/24")
    sg = _group(ec2, vpc, "svc")
    with resource(server, net, [sg], ports=(80,), name="web") as r:
        enis = ec2.describe_network_interfaces(Filters=[
            {"Name": "subnet-id", "Values": [net]},
            {"Name": "interface-type", "Values": ["interface"]}])["NetworkInterfaces"]
        assert [e["NetworkInterfaceId"] for e in enis] == [r.eni_id]
        assert enis[0]["PrivateIpAddress"] == r.ip and enis[0]["Status"] == "in-use"
        assert enis[0]["Groups"] == [{"GroupId": sg, "GroupName": "svc"}]
        assert ec2.describe_subnets(SubnetIds=[net])["Subnets"][0][
            "AvailableIpAddressCount"] == 250
        # The interface inside the namespace has the ENI's address and MAC.
        shown = subprocess.run(["ip", "netns", "exec", r.netns, "ip", "-o", "addr", "show",
                                "eth0"], capture_output=True, text=True).stdout
        assert f"{r.ip}/24" in shown
        link = subprocess.run(["ip", "netns", "exec", r.netns, "ip", "-o", "link", "show",
                               "eth0"], capture_output=True, text=True).stdout
        assert enis[0]["MacAddress"] in link
        ps = cli(server, "ps")
        assert r.eni_id in ps.stdout and "web" in ps.stdout and r.ip in ps.stdout
        shown = cli(server, "net", "show").stdout
        assert vpc in shown and net in shown and r.eni_id in shown and "svc" in shown
        assert "rules in:0 out:1" in shown
        with pytest.raises(ec2.exceptions.ClientError) as err:
            ec2.delete_network_interface(NetworkInterfaceId=r.eni_id)
        assert err.value.response["Error"]["Code"] == "InvalidNetworkInterface.InUse"
        with pytest.raises(ec2.exceptions.ClientError) as err:
            ec2.delete_subnet(SubnetId=net)
        assert err.value.response["Error"]["Code"] == "DependencyViolation"
        with pytest.raises(ec2.exceptions.ClientError) as err:
            ec2.delete_security_group(GroupId=sg)
        assert err.value.response["Error"]["Code"] == "DependencyViolation"
    assert wait_until(lambda: not ec2.describe_network_interfaces(Filters=[
        {"Name": "subnet-id", "Values": [net]}])["NetworkInterfaces"])
    ec2.delete_security_group(GroupId=sg)
    ec2.delete_subnet(SubnetId=net)
    ec2.delete_vpc(VpcId=vpc)
