"""Network ACLs in the kernel, through boto3 and `lambdaplane run` resources: stateless, at the
subnet boundary, both directions, rule-number order, `*` last. An inbound deny drops what a
group allowed; an outbound deny too; a deny on the return traffic's ephemeral ports breaks a
connection the groups allowed; traffic within a subnet is never judged by an ACL; changes
take effect at once."""
from __future__ import annotations

import json
import urllib.request

import pytest

from tests.e2e.vpc_support import resource, wait_until
from tests.harness import create_python_function

pytestmark = pytest.mark.root

HELLO = "hello from 10.80.2.10"


def _entry(ec2, acl: str, number: int, egress: bool, action: str, cidr: str = "0.0.0.0/0",
           protocol: str = "-1", ports: tuple[int, int] | None = None,
           replace: bool = False) -> None:
    kwargs = dict(NetworkAclId=acl, RuleNumber=number, Egress=egress, RuleAction=action,
                  CidrBlock=cidr, Protocol=protocol)
    if ports:
        kwargs["PortRange"] = {"From": ports[0], "To": ports[1]}
    if protocol == "1":
        kwargs["IcmpTypeCode"] = {"Type": -1, "Code": -1}
    (ec2.replace_network_acl_entry if replace else ec2.create_network_acl_entry)(**kwargs)


@pytest.fixture(scope="module")
def net(server):
    ec2 = server.ec2()
    vpc = ec2.create_vpc(CidrBlock="10.80.0.0/16")["Vpc"]["VpcId"]
    a = ec2.create_subnet(VpcId=vpc, CidrBlock="10.80.1.0/24")["Subnet"]["SubnetId"]
    b = ec2.create_subnet(VpcId=vpc, CidrBlock="10.80.2.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName="open", Description="o", VpcId=vpc)["GroupId"]
    ec2.authorize_security_group_ingress(GroupId=group, IpPermissions=[
        {"IpProtocol": "-1", "IpRanges": [{"CidrIp": "10.80.0.0/16"}]}])
    acl = ec2.create_network_acl(VpcId=vpc)["NetworkAcl"]["NetworkAclId"]
    try:
        yield {"vpc": vpc, "a": a, "b": b, "group": group, "acl": acl}
    finally:
        # a VPC function's ENI goes once no function uses it
        wait_until(lambda: ec2.describe_network_interfaces(Filters=[
            {"Name": "vpc-id", "Values": [vpc]}])["NetworkInterfaces"] == [], timeout_s=30)
        for subnet in (a, b):  # back to the default ACL, so the custom one can go
            _use_default(ec2, vpc, subnet)
        ec2.delete_network_acl(NetworkAclId=acl)
        ec2.delete_security_group(GroupId=group)
        ec2.delete_subnet(SubnetId=a)
        ec2.delete_subnet(SubnetId=b)
        ec2.delete_vpc(VpcId=vpc)


def _reconcile(server) -> list[str]:
    req = urllib.request.Request(server.endpoint + "/_lambdaplane/vpc/reconcile", data=b"{}",
                                 method="POST")
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read())["changes"]


def _association(ec2, subnet: str) -> str:
    (acl,) = ec2.describe_network_acls(Filters=[{"Name": "association.subnet-id",
                                                 "Values": [subnet]}])["NetworkAcls"]
    return next(a["NetworkAclAssociationId"] for a in acl["Associations"]
                if a["SubnetId"] == subnet)


def _use(ec2, acl: str, subnet: str) -> None:
    ec2.replace_network_acl_association(AssociationId=_association(ec2, subnet), NetworkAclId=acl)


def _use_default(ec2, vpc: str, subnet: str) -> None:
    (default,) = ec2.describe_network_acls(Filters=[{"Name": "vpc-id", "Values": [vpc]},
                                                    {"Name": "default", "Values": ["true"]}])[
        "NetworkAcls"]
    _use(ec2, default["NetworkAclId"], subnet)


def test_acls_decide_at_the_subnet_boundary(server, net) -> None:
    ec2 = server.ec2()
    acl = net["acl"]
    with resource(server, net["b"], [net["group"]], ports=(80, 81), ip="10.80.2.10") as srv, \
            resource(server, net["b"], [net["group"]], ip="10.80.2.20") as neighbour, \
            resource(server, net["a"], [net["group"]], ports=(90,), ip="10.80.1.10") as client:
        # the default ACL allows everything
        assert client.probe(srv.ip, 80) == HELLO and client.probe(srv.ip, 81) == HELLO
        assert srv.probe(client.ip, 90) == "hello from 10.80.1.10"

        # a new ACL denies everything (only its `*` rules) until entries are added ...
        _use(ec2, acl, net["b"])
        assert client.probe(srv.ip, 80) == "timeout"
        assert neighbour.probe(srv.ip, 80) == HELLO  # ... but never within the subnet
        _entry(ec2, acl, 100, False, "allow")
        _entry(ec2, acl, 100, True, "allow")
        assert client.probe(srv.ip, 80) == HELLO

        # inbound deny, ahead of the allow: drops what the group allowed
        _entry(ec2, acl, 90, False, "deny", "10.80.1.0/24", "6", (81, 81))
        assert client.probe(srv.ip, 81) == "timeout"
        assert client.probe(srv.ip, 80) == HELLO
        assert neighbour.probe(srv.ip, 81) == HELLO
        # rule-number order: an allow numbered lower wins over the deny
        _entry(ec2, acl, 80, False, "allow", "10.80.1.10/32", "tcp", (81, 81))
        assert client.probe(srv.ip, 81) == HELLO
        ec2.delete_network_acl_entry(NetworkAclId=acl, RuleNumber=80, Egress=False)
        assert client.probe(srv.ip, 81) == "timeout"
        _entry(ec2, acl, 90, False, "allow", "10.80.1.0/24", "6", (81, 81), replace=True)
        assert client.probe(srv.ip, 81) == HELLO

        # outbound deny: subnet b may not open port 90 in subnet a
        _entry(ec2, acl, 90, True, "deny", "10.80.1.0/24", "6", (90, 90))
        assert srv.probe(client.ip, 90) == "timeout"
        assert client.probe(srv.ip, 80) == HELLO  # its replies go to ephemeral ports: allowed

        # stateless: denying the return traffic's ephemeral ports breaks what the groups allow
        _entry(ec2, acl, 95, True, "deny", "0.0.0.0/0", "6", (1024, 65535))
        assert client.probe(srv.ip, 80) == "timeout"
        assert neighbour.probe(srv.ip, 80) == HELLO  # within the subnet: no ACL
        ec2.delete_network_acl_entry(NetworkAclId=acl, RuleNumber=95, Egress=True)
        assert client.probe(srv.ip, 80) == HELLO

        # the ACL chains are part of the table's fingerprint: a second reconcile changes nothing
        assert _reconcile(server) == []

        # UDP and ICMP are judged the same way
        assert client.probe(srv.ip, 80, proto="udp") == "echo ping"
        _entry(ec2, acl, 70, False, "deny", "0.0.0.0/0", "17", (80, 80))
        assert client.probe(srv.ip, 80, proto="udp") == "timeout"
        assert client.ping(srv.ip)
        _entry(ec2, acl, 71, False, "deny", "0.0.0.0/0", "1")
        assert not client.ping(srv.ip)
        assert neighbour.ping(srv.ip)

        # back on the default ACL, everything flows again
        _use_default(ec2, net["vpc"], net["b"])
        assert client.probe(srv.ip, 81) == HELLO and srv.probe(client.ip, 90) == \
            "hello from 10.80.1.10"


FUNCTION = r"""
import socket

def handler(event, context):
    try:
        with socket.create_connection((event["host"], event["port"]), timeout=1.5) as s:
            return s.recv(100).decode()
    except socket.timeout:
        return "timeout"
    except OSError as e:
        return f"error{e.errno}"
"""


def test_acls_judge_a_vpc_function_through_its_hyperplane_eni(server, net) -> None:
    """The function's flows cross the boundary of its ENI's subnet: the ACLs there and at the
    destination judge them by the ENI's address, as on AWS."""

    ec2, lam = server.ec2(), server.lambda_()
    second = ec2.create_network_acl(VpcId=net["vpc"])["NetworkAcl"]["NetworkAclId"]
    for egress in (False, True):
        _entry(ec2, second, 100, egress, "allow")
    create_python_function(lam, "acl-probe", FUNCTION, Timeout=30, VpcConfig={
        "SubnetIds": [net["a"]], "SecurityGroupIds": [net["group"]]})

    def call() -> str:
        resp = lam.invoke(FunctionName="acl-probe",
                          Payload=json.dumps({"host": "10.80.2.10", "port": 80}))
        return json.loads(resp["Payload"].read())

    try:
        with resource(server, net["b"], [net["group"]], ports=(80,), ip="10.80.2.10"):
            assert call() == HELLO
            # the destination subnet's inbound entries see the ENI's address
            _use(ec2, second, net["b"])
            _entry(ec2, second, 50, False, "deny", "10.80.1.0/24", "6", (80, 80))
            assert call() == "timeout"
            ec2.delete_network_acl_entry(NetworkAclId=second, RuleNumber=50, Egress=False)
            assert call() == HELLO
            # the destination subnet's replies to the function's ephemeral ports
            _entry(ec2, second, 50, True, "deny", "10.80.1.0/24", "6", (1024, 65535))
            assert call() == "timeout"
            ec2.delete_network_acl_entry(NetworkAclId=second, RuleNumber=50, Egress=True)
            # the function's own subnet's outbound entries
            _use_default(ec2, net["vpc"], net["b"])
            _use(ec2, second, net["a"])
            _entry(ec2, second, 50, True, "deny", "10.80.2.0/24", "6", (80, 80))
            assert call() == "timeout"
            _use_default(ec2, net["vpc"], net["a"])
            assert call() == HELLO
    finally:
        _use_default(ec2, net["vpc"], net["a"])
        _use_default(ec2, net["vpc"], net["b"])
        lam.delete_function(FunctionName="acl-probe")
        ec2.delete_network_acl(NetworkAclId=second)


def test_acls_survive_restart_and_crash(fresh_server) -> None:
    """ACLs live in the store: a restart (clean or after SIGKILL) enforces them as before."""
    server = fresh_server
    ec2 = server.ec2()
    vpc = ec2.create_vpc(CidrBlock="10.80.0.0/16")["Vpc"]["VpcId"]
    a = ec2.create_subnet(VpcId=vpc, CidrBlock="10.80.1.0/24")["Subnet"]["SubnetId"]
    b = ec2.create_subnet(VpcId=vpc, CidrBlock="10.80.2.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName="open", Description="o", VpcId=vpc)["GroupId"]
    ec2.authorize_security_group_ingress(GroupId=group, IpPermissions=[
        {"IpProtocol": "-1", "IpRanges": [{"CidrIp": "10.80.0.0/16"}]}])
    (default,) = ec2.describe_network_acls(Filters=[{"Name": "vpc-id", "Values": [vpc]}])[
        "NetworkAcls"]
    _entry(ec2, default["NetworkAclId"], 90, False, "deny", "10.80.1.0/24", "6", (81, 81))
    with resource(server, b, [group], ports=(80, 81), ip="10.80.2.10") as srv, \
            resource(server, a, [group]) as client:
        expected = [HELLO, "timeout"]
        assert [client.probe(srv.ip, p) for p in (80, 81)] == expected
        server.restart()
        assert [client.probe(srv.ip, p) for p in (80, 81)] == expected
        assert _reconcile(server) == []
        server.kill()
        server.start()
        assert _reconcile(server) == []
        assert [client.probe(srv.ip, p) for p in (80, 81)] == expected
