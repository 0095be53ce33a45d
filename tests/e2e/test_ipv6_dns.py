"""The VPC resolver over IPv6 (AWS's fd00:ec2::253), through boto3 on real kernel networking:
a `lambdaplane run` resource of an IPv6-only subnet (no IPv4 at all) resolves names over UDP
and TCP at fd00:ec2::253 and finds it in its resolv.conf; a dual-stack resource reaches it
too; security groups do not judge it; a VPC without IPv6 does not answer there; the
address survives a reconcile unchanged; a subnet with EnableDns64 gets DNS64 answers."""
from __future__ import annotations

import ipaddress
import subprocess
import sys

import pytest

from lambdaplane.net.names import Names
from tests.e2e.test_vpc_dns import query
from tests.e2e.vpc_support import reconcile_now, resource, run_args

pytestmark = pytest.mark.root

RESOLVER6 = "fd00:ec2::253"
SLEEP = [sys.executable, "-c", "import time; time.sleep(600)"]


def _ipv6_vpc(ec2, cidr: str) -> tuple[str, list[ipaddress.IPv6Network]]:
    vpc = ec2.create_vpc(CidrBlock=cidr, AmazonProvidedIpv6CidrBlock=True)["Vpc"]["VpcId"]
    (block,) = ec2.describe_vpcs(VpcIds=[vpc])["Vpcs"][0]["Ipv6CidrBlockAssociationSet"]
    return vpc, list(ipaddress.IPv6Network(block["Ipv6CidrBlock"]).subnets(new_prefix=64))[:2]


def test_ipv6_only_resource_resolves_at_fd00_ec2_253(server) -> None:
    ec2 = server.ec2()
    vpc, (first, second) = _ipv6_vpc(ec2, "10.84.0.0/16")
    plain = ec2.create_vpc(CidrBlock="10.85.0.0/16")["Vpc"]["VpcId"]
    only = ec2.create_subnet(VpcId=vpc, Ipv6Native=True,
                             Ipv6CidrBlock=str(first))["Subnet"]["SubnetId"]
    dual = ec2.create_subnet(VpcId=vpc, CidrBlock="10.84.1.0/24",
                             Ipv6CidrBlock=str(second))["Subnet"]["SubnetId"]
    plain_subnet = ec2.create_subnet(VpcId=plain, CidrBlock="10.85.1.0/24")["Subnet"]["SubnetId"]
    # a group that lets nothing in or out: the resolver must not care (as on AWS)
    closed = ec2.create_security_group(GroupName="closed6", Description="c",
                                       VpcId=vpc)["GroupId"]
    ec2.revoke_security_group_egress(GroupId=closed, IpPermissions=[
        {"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
    ec2.revoke_security_group_egress(GroupId=closed, IpPermissions=[
        {"IpProtocol": "-1", "Ipv6Ranges": [{"CidrIpv6": "::/0"}]}])
    try:
        with resource(server, only, [closed], argv=SLEEP) as r, \
                resource(server, dual, [closed], ip="10.84.1.20", argv=SLEEP) as d, \
                resource(server, plain_subnet, [], ip="10.85.1.20", argv=SLEEP) as p:
            assert r.ip == ""  # no IPv4 address, so base + 2 is out of its reach
            assert query(r.netns, "10.84.0.2", "ip-10-84-1-20.ec2.internal") == "error 101"
            for tcp in (False, True):
                assert query(r.netns, RESOLVER6, "ip-10-84-1-20.ec2.internal",
                             tcp=tcp) == "A 10.84.1.20", tcp
                assert query(r.netns, RESOLVER6, "ip-10-99-1-20.ec2.internal",
                             tcp=tcp) == "NXDOMAIN", tcp
                assert query(r.netns, RESOLVER6, "20.1.84.10.in-addr.arpa", "PTR",
                             tcp=tcp) == "PTR ip-10-84-1-20.ec2.internal.", tcp
                # a dual-stack resource has both addresses of its resolver
                assert query(d.netns, RESOLVER6, "ip-10-84-1-20.ec2.internal",
                             tcp=tcp) == "A 10.84.1.20", tcp
            assert query(d.netns, "10.84.0.2", "ip-10-84-1-20.ec2.internal") == \
                "A 10.84.1.20"
            # no path to the internet: other names are not forwarded, over IPv6 neither
            assert query(r.netns, RESOLVER6, "www.example.com") == "SERVFAIL"
            # a VPC without IPv6 has no IPv6 resolver (nor any IPv6 route to one)
            assert query(p.netns, RESOLVER6, "ip-10-85-1-20.ec2.internal") in \
                ("error 101", "timeout")
            # the VPC namespace holds the address on its loopback; a reconcile keeps it
            vpc_netns = Names(server.instance).vpc_netns(vpc)
            lo = subprocess.run(["ip", "-n", vpc_netns, "-6", "addr", "show", "dev", "lo"],
                                capture_output=True, text=True, check=True).stdout
            assert f"{RESOLVER6}/128" in lo
            assert reconcile_now(server) == []
            # DNS64 (the subnet's EnableDns64): AAAA synthesized in 64:ff9b::/96 from A answers,
            # for the IPv6-only subnet's resources only
            name = "ip-10-84-1-20.ec2.internal"
            assert query(r.netns, RESOLVER6, name, "AAAA") == "empty"
            ec2.modify_subnet_attribute(SubnetId=only, EnableDns64={"Value": True})
            for tcp in (False, True):
                assert query(r.netns, RESOLVER6, name, "AAAA", tcp=tcp) == \
                    "AAAA 64:ff9b::a54:114", tcp
            assert query(r.netns, RESOLVER6, name) == "A 10.84.1.20"  # A is asked as ever
            assert query(d.netns, RESOLVER6, name, "AAAA") == "empty"  # no DNS64 there
            assert query(r.netns, RESOLVER6, "ip-10-99-1-20.ec2.internal", "AAAA") == \
                "NXDOMAIN"
            ec2.modify_subnet_attribute(SubnetId=only, EnableDns64={"Value": False})
            assert query(r.netns, RESOLVER6, name, "AAAA") == "empty"
            # DNS support off: no answers over IPv6 either (a time-out, as on AWS)
            ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsSupport={"Value": False})
            assert query(r.netns, RESOLVER6, "ip-10-84-1-20.ec2.internal") == "timeout"
            ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsSupport={"Value": True})
            assert query(r.netns, RESOLVER6, "ip-10-84-1-20.ec2.internal") == "A 10.84.1.20"
        # the resource's resolv.conf names fd00:ec2::253, and glibc's resolver uses it
        out = subprocess.run([*run_args(server, only, [closed]), "--", sys.executable, "-c",
                              "import socket; print(open('/etc/resolv.conf').read());"
                              "print(socket.getaddrinfo('ip-10-84-1-77', 80, socket.AF_INET)"
                              "[0][4][0])"],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert f"nameserver {RESOLVER6}" in out.stdout and "10.84.0.2" not in out.stdout
        assert out.stdout.strip().splitlines()[-1] == "10.84.1.77"
    finally:
        ec2.delete_security_group(GroupId=closed)
        for s in (only, dual, plain_subnet):
            ec2.delete_subnet(SubnetId=s)
        ec2.delete_vpc(VpcId=vpc)
        ec2.delete_vpc(VpcId=plain)
