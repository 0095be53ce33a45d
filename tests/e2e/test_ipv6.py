"""IPv6 dual stack in the kernel, through boto3 and `lambdaplane run` resources: resources in
subnets with a /64 get an IPv6 address and reach each other over IPv6 across subnets and within
one, security groups decide (Ipv6Ranges, group references, IPv4 rules never admitting IPv6),
network ACLs decide at the subnet boundary (Ipv6CidrBlock entries), IPv4 keeps working beside
it, and two VPCs with the same IPv4 CIDR stay apart in IPv6 too."""
from __future__ import annotations

import ipaddress
import subprocess
import sys

import pytest

from tests.e2e.vpc_support import Resource, reconcile_now, resource

pytestmark = pytest.mark.root

# Dual-stack listener: TCP on every given port, answers with the address it was reached on.
LISTENER6 = r"""
import socket, sys, threading
def tcp(port):
    s = socket.socket(socket.AF_INET6); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind(("::", port)); s.listen(64)
    while True:
        c, _ = s.accept()
        try:
            c.sendall(b"hello from " + c.getsockname()[0].removeprefix("::ffff:").encode())
        finally:
            c.close()
for p in sys.argv[1:]:
    threading.Thread(target=tcp, args=(int(p),), daemon=True).start()
print("listening", flush=True)
threading.Event().wait()
"""

PROBE6 = r"""
import socket, sys
kind, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
try:
    if kind == "ping":  # ICMPv6 echo from a raw socket: the kernel fills in the checksum
        s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
        s.settimeout(1.0)
        s.sendto(bytes([128, 0, 0, 0, 0x12, 0x34, 0, 1]) + b"lambdaplane", (host, 0))
        while True:
            packet, peer = s.recvfrom(2048)
            if peer[0] == host and packet[0] == 129 and packet[4:6] == bytes([0x12, 0x34]):
                print("pong"); break
    else:
        s = socket.create_connection((host, port), timeout=1.0)
        print(s.recv(100).decode() or "empty")
except socket.timeout:
    print("timeout")
except ConnectionRefusedError:
    print("refused")
except OSError as e:
    print("error", e.errno)
"""


def _probe(r: Resource, host: str, port: int = 0, kind: str = "tcp") -> str:
    out = subprocess.run(["ip", "netns", "exec", r.netns, sys.executable, "-c", PROBE6, kind,
                          host, str(port)], capture_output=True, text=True, timeout=40)
    return out.stdout.strip() or out.stderr.strip()


def _ipv6_of(ec2, r: Resource) -> str:
    (eni,) = ec2.describe_network_interfaces(NetworkInterfaceIds=[r.eni_id])["NetworkInterfaces"]
    (address,) = [a["Ipv6Address"] for a in eni["Ipv6Addresses"]]
    return address


def _listener(server, subnet: str, groups: list[str], ip: str):
    return resource(server, subnet, groups, ip=ip,
                    argv=[sys.executable, "-u", "-c", LISTENER6, "80", "81"])


def _dual_stack_vpc(ec2, cidr: str) -> dict:
    vpc = ec2.create_vpc(CidrBlock=cidr, AmazonProvidedIpv6CidrBlock=True)["Vpc"]["VpcId"]
    (block,) = ec2.describe_vpcs(VpcIds=[vpc])["Vpcs"][0]["Ipv6CidrBlockAssociationSet"]
    first, second, *_ = ipaddress.IPv6Network(block["Ipv6CidrBlock"]).subnets(new_prefix=64)
    net4 = ipaddress.IPv4Network(cidr)
    a4, b4, *_ = net4.subnets(new_prefix=24)
    a = ec2.create_subnet(VpcId=vpc, CidrBlock=str(a4), Ipv6CidrBlock=str(first))["Subnet"]
    b = ec2.create_subnet(VpcId=vpc, CidrBlock=str(b4), Ipv6CidrBlock=str(second))["Subnet"]
    group = ec2.create_security_group(GroupName="web", Description="w", VpcId=vpc)["GroupId"]
    ec2.authorize_security_group_ingress(GroupId=group, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 81,
         "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
    return {"vpc": vpc, "a": a["SubnetId"], "b": b["SubnetId"], "group": group,
            "a4": a4, "b4": b4, "first": first, "second": second}


def _teardown(ec2, net: dict) -> None:
    ec2.delete_security_group(GroupId=net["group"])
    for s in (net["a"], net["b"]):
        ec2.delete_subnet(SubnetId=s)
    ec2.delete_vpc(VpcId=net["vpc"])


def test_dual_stack_groups_and_acls_decide(server) -> None:
    ec2 = server.ec2()
    net = _dual_stack_vpc(ec2, "10.70.0.0/16")
    a4, b4 = net["a4"], net["b4"]
    acl = ec2.create_network_acl(VpcId=net["vpc"])["NetworkAcl"]["NetworkAclId"]
    try:
        with _listener(server, net["b"], [net["group"]], str(b4.network_address + 10)) as srv, \
                _listener(server, net["b"], [net["group"]],
                          str(b4.network_address + 20)) as neighbour, \
                _listener(server, net["a"], [net["group"]],
                          str(a4.network_address + 10)) as client:
            srv6, client6 = _ipv6_of(ec2, srv), _ipv6_of(ec2, client)
            assert ipaddress.IPv6Address(srv6) in net["second"]
            assert ipaddress.IPv6Address(client6) in net["first"]
            hello6 = f"hello from {srv6}"
            # IPv4 works; an IPv4 rule (0.0.0.0/0) admits no IPv6
            assert _probe(client, srv.ip, 80) == f"hello from {srv.ip}"
            assert _probe(client, srv6, 80) == "timeout"
            # an Ipv6Ranges rule admits IPv6, across subnets and within one
            ec2.authorize_security_group_ingress(GroupId=net["group"], IpPermissions=[
                {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80,
                 "Ipv6Ranges": [{"CidrIpv6": str(net["first"])}]}])
            assert _probe(client, srv6, 80) == hello6
            assert _probe(client, srv6, 81) == "timeout"  # only port 80
            assert _probe(neighbour, srv6, 80) == "timeout"  # only from the first /64
            # a group reference admits its members' IPv6 addresses
            ec2.authorize_security_group_ingress(GroupId=net["group"], IpPermissions=[
                {"IpProtocol": "-1", "UserIdGroupPairs": [{"GroupId": net["group"]}]}])
            assert _probe(neighbour, srv6, 81) == hello6
            assert _probe(srv, client6, 81) == f"hello from {client6}"
            assert _probe(client, srv6, "0", "ping") == "pong"  # the group reference
            ec2.authorize_security_group_ingress(GroupId=net["group"], IpPermissions=[
                {"IpProtocol": "icmpv6", "FromPort": 128, "ToPort": -1,
                 "Ipv6Ranges": [{"CidrIpv6": "::/0"}]}])
            (echo,) = [p for p in ec2.describe_security_groups(GroupIds=[net["group"]])[
                "SecurityGroups"][0]["IpPermissions"] if p["IpProtocol"] == "58"]
            assert (echo["FromPort"], echo["ToPort"]) == (128, -1)
            # the IPv6 state is read back exactly: a second reconcile changes nothing
            assert reconcile_now(server) == []

            # network ACLs: stateless, at the subnet boundary, IPv6 entries judge IPv6 only
            assoc = next(a["NetworkAclAssociationId"] for a in ec2.describe_network_acls(
                Filters=[{"Name": "association.subnet-id", "Values": [net["b"]]}])[
                "NetworkAcls"][0]["Associations"] if a["SubnetId"] == net["b"])
            ec2.replace_network_acl_association(AssociationId=assoc, NetworkAclId=acl)
            assert _probe(client, srv6, 80) == "timeout"  # only the `*` entries
            assert _probe(neighbour, srv6, 80) == hello6  # never within a subnet
            for egress in (False, True):
                ec2.create_network_acl_entry(NetworkAclId=acl, RuleNumber=100, Egress=egress,
                                             RuleAction="allow", Protocol="-1",
                                             CidrBlock="0.0.0.0/0")
            assert _probe(client, srv.ip, 80) == f"hello from {srv.ip}"
            assert _probe(client, srv6, 80) == "timeout"  # IPv4 entries admit no IPv6
            for egress in (False, True):
                ec2.create_network_acl_entry(NetworkAclId=acl, RuleNumber=101, Egress=egress,
                                             RuleAction="allow", Protocol="-1",
                                             Ipv6CidrBlock="::/0")
            assert _probe(client, srv6, 80) == hello6
            # an inbound IPv6 deny ahead of the allow drops what the group allowed
            ec2.create_network_acl_entry(NetworkAclId=acl, RuleNumber=90, Egress=False,
                                         RuleAction="deny", Protocol="6",
                                         Ipv6CidrBlock=str(net["first"]),
                                         PortRange={"From": 80, "To": 80})
            assert _probe(client, srv6, 80) == "timeout"
            assert _probe(client, srv.ip, 80) == f"hello from {srv.ip}"  # IPv4 untouched
            ec2.delete_network_acl_entry(NetworkAclId=acl, RuleNumber=90, Egress=False)
            # the return traffic's ephemeral ports, outbound over IPv6: stateless
            ec2.create_network_acl_entry(NetworkAclId=acl, RuleNumber=95, Egress=True,
                                         RuleAction="deny", Protocol="6", Ipv6CidrBlock="::/0",
                                         PortRange={"From": 1024, "To": 65535})
            assert _probe(client, srv6, 80) == "timeout"
            ec2.delete_network_acl_entry(NetworkAclId=acl, RuleNumber=95, Egress=True)
            assert _probe(client, srv6, 80) == hello6
            default = next(a["NetworkAclId"] for a in ec2.describe_network_acls(Filters=[
                {"Name": "vpc-id", "Values": [net["vpc"]]},
                {"Name": "default", "Values": ["true"]}])["NetworkAcls"])
            assoc = next(a["NetworkAclAssociationId"] for a in ec2.describe_network_acls(
                NetworkAclIds=[acl])["NetworkAcls"][0]["Associations"])
            ec2.replace_network_acl_association(AssociationId=assoc, NetworkAclId=default)
            # revoking the IPv6 rules closes IPv6 again
            ec2.revoke_security_group_ingress(GroupId=net["group"], IpPermissions=[
                {"IpProtocol": "-1", "UserIdGroupPairs": [{"GroupId": net["group"]}]},
                {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80,
                 "Ipv6Ranges": [{"CidrIpv6": str(net["first"])}]}])
            assert _probe(client, srv6, 80) == "timeout"
            assert _probe(client, srv.ip, 80) == f"hello from {srv.ip}"
            assert _probe(client, srv6, "0", "ping") == "pong"  # the ICMPv6 echo rule stays
    finally:
        ec2.delete_network_acl(NetworkAclId=acl)
        _teardown(ec2, net)


def test_assigned_addresses_follow_in_the_kernel(server) -> None:
    """AssignIpv6Addresses / UnassignIpv6Addresses on a running resource's interface."""
    ec2 = server.ec2()
    net = _dual_stack_vpc(ec2, "10.71.0.0/16")
    ec2.authorize_security_group_ingress(GroupId=net["group"], IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 81,
         "Ipv6Ranges": [{"CidrIpv6": "::/0"}]}])
    try:
        with _listener(server, net["b"], [net["group"]],
                       str(net["b4"].network_address + 10)) as srv, \
                _listener(server, net["a"], [net["group"]],
                          str(net["a4"].network_address + 10)) as client:
            extra = str(net["second"].network_address + 0x77)
            assert _probe(client, extra, 80) != f"hello from {extra}"  # not routed yet
            ec2.assign_ipv6_addresses(NetworkInterfaceId=srv.eni_id, Ipv6Addresses=[extra])
            assert _probe(client, extra, 80) == f"hello from {extra}"
            ec2.unassign_ipv6_addresses(NetworkInterfaceId=srv.eni_id, Ipv6Addresses=[extra])
            assert _probe(client, extra, 80) != f"hello from {extra}"
            assert _probe(client, _ipv6_of(ec2, srv), 80) == f"hello from {_ipv6_of(ec2, srv)}"
        # the program learns its IPv6 address, and `lambdaplane ps` shows it
        show = "import os, time; print(os.environ['LAMBDAPLANE_IPV6'], flush=True); time.sleep(60)"
        with resource(server, net["a"], [net["group"]],
                      argv=[sys.executable, "-c", show]) as shown:
            assert shown.proc.stdout is not None
            assert shown.proc.stdout.readline().strip() == _ipv6_of(ec2, shown)
            (row,) = [r for r in server.admin("ps")["resources"] if r["id"] == shown.eni_id]
            assert row["ipv6"] == [_ipv6_of(ec2, shown)]
    finally:
        _teardown(ec2, net)


def test_overlapping_vpcs_stay_apart_in_ipv6(server) -> None:
    ec2 = server.ec2()
    one = _dual_stack_vpc(ec2, "10.72.0.0/16")
    two = _dual_stack_vpc(ec2, "10.72.0.0/16")
    try:
        for net in (one, two):
            ec2.authorize_security_group_ingress(GroupId=net["group"], IpPermissions=[
                {"IpProtocol": "-1", "Ipv6Ranges": [{"CidrIpv6": "::/0"}]}])
        ip = str(one["a4"].network_address + 10)
        with _listener(server, one["a"], [one["group"]], ip) as r1, \
                _listener(server, two["a"], [two["group"]], ip) as r2, \
                _listener(server, two["b"], [two["group"]],
                          str(two["b4"].network_address + 10)) as r2b:
            v6_1, v6_2 = _ipv6_of(ec2, r1), _ipv6_of(ec2, r2)
            assert _probe(r2b, v6_2, 80) == f"hello from {v6_2}"  # inside VPC two: yes
            assert _probe(r2b, v6_1, 80) != f"hello from {v6_1}"  # VPC one's: never
            assert _probe(r2b, v6_1, 0, "ping") != "pong"
            assert _probe(r2b, ip, 80) == f"hello from {ip}"  # the same IPv4 address: its own
    finally:
        _teardown(ec2, one)
        _teardown(ec2, two)
