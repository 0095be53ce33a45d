"""Secondary IPv4 CIDR blocks through boto3 (AssociateVpcCidrBlock / DisassociateVpcCidrBlock):
AWS's rules on ranges, overlap, routes and the limit of five; the blocks in DescribeVpcs and its
filters and as `local` routes of every route table; subnets in a secondary block, routed in the
kernel like the primary's."""
from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from tests.e2e.vpc_support import resource

pytestmark = pytest.mark.root


def _code(fn, **kwargs) -> str:
    with pytest.raises(ClientError) as err:
        fn(**kwargs)
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    return err.value.response["Error"]["Code"]


def _blocks(ec2, vpc: str) -> list[str]:
    (v,) = ec2.describe_vpcs(VpcIds=[vpc])["Vpcs"]
    return [b["CidrBlock"] for b in v["CidrBlockAssociationSet"]]


def test_secondary_blocks_api(server) -> None:
    ec2 = server.ec2()
    vpc = ec2.create_vpc(CidrBlock="10.90.0.0/16")["Vpc"]["VpcId"]
    try:
        out = ec2.associate_vpc_cidr_block(VpcId=vpc, CidrBlock="10.91.0.5/16")
        assoc = out["CidrBlockAssociation"]
        assert out["VpcId"] == vpc and assoc["CidrBlock"] == "10.91.0.0/16"
        assert assoc["CidrBlockState"] == {"State": "associated"}
        assert assoc["AssociationId"].startswith("vpc-cidr-assoc-")
        assert _blocks(ec2, vpc) == ["10.90.0.0/16", "10.91.0.0/16"]
        assert ec2.describe_vpcs(VpcIds=[vpc])["Vpcs"][0]["CidrBlock"] == "10.90.0.0/16"
        for name, value in [("cidr-block-association.cidr-block", "10.91.0.0/16"),
                            ("cidr-block-association.association-id", assoc["AssociationId"])]:
            assert [v["VpcId"] for v in ec2.describe_vpcs(Filters=[
                {"Name": name, "Values": [value]}])["Vpcs"]] == [vpc]
        # every route table has a local route per block, new tables too
        (main,) = ec2.describe_route_tables(Filters=[{"Name": "vpc-id", "Values": [vpc]}])[
            "RouteTables"]
        assert [(r["DestinationCidrBlock"], r["GatewayId"]) for r in main["Routes"]] == \
            [("10.90.0.0/16", "local"), ("10.91.0.0/16", "local")]
        rtb = ec2.create_route_table(VpcId=vpc)["RouteTable"]
        assert len(rtb["Routes"]) == 2
        ec2.delete_route_table(RouteTableId=rtb["RouteTableId"])
        # a publicly routable block and 100.64.0.0/10 are allowed with a private primary
        ec2.associate_vpc_cidr_block(VpcId=vpc, CidrBlock="100.64.0.0/16")
        # AWS's rules
        for cidr, code in [("172.16.0.0/16", "InvalidVpc.Range"),  # another RFC 1918 range
                           ("192.168.0.0/16", "InvalidVpc.Range"),
                           ("198.19.0.0/16", "InvalidVpc.Range"),
                           ("10.91.128.0/17", "InvalidVpc.Range"),  # overlaps a block
                           ("10.92.0.0/8", "InvalidVpc.Range"),  # larger than /16
                           ("10.92.0.0/29", "InvalidVpc.Range"),
                           ("10.92.0.0/33", "InvalidParameterValue")]:
            assert _code(ec2.associate_vpc_cidr_block, VpcId=vpc, CidrBlock=cidr) == code, cidr
        ec2.associate_vpc_cidr_block(VpcId=vpc, CidrBlock="10.92.0.0/16")
        ec2.associate_vpc_cidr_block(VpcId=vpc, CidrBlock="10.93.0.0/16")
        assert _code(ec2.associate_vpc_cidr_block, VpcId=vpc, CidrBlock="10.94.0.0/16") == \
            "CidrLimitExceeded"
        assert _code(ec2.associate_vpc_cidr_block, VpcId=vpc) == "MissingParameter"
        assert _code(ec2.associate_vpc_cidr_block, VpcId="vpc-0123456789abcdef0",
                     CidrBlock="10.94.0.0/16") == "InvalidVpcID.NotFound"
        # an IPv6 block does not count against the five IPv4 blocks (test_ec2_ipv6.py)
        v6 = ec2.associate_vpc_cidr_block(VpcId=vpc, AmazonProvidedIpv6CidrBlock=True)[
            "Ipv6CidrBlockAssociation"]
        assert v6["Ipv6CidrBlock"].endswith("/56")
        ec2.disassociate_vpc_cidr_block(AssociationId=v6["AssociationId"])
        assert _code(ec2.associate_vpc_cidr_block, VpcId=vpc, Ipv6Pool="ipv6pool-ec2-0123",
                     Ipv6CidrBlock="2001:db8::/56") == "InvalidParameterValue"

        # a subnet in a secondary block keeps it; the primary never goes
        subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.91.1.0/24")["Subnet"]["SubnetId"]
        assert _code(ec2.create_subnet, VpcId=vpc, CidrBlock="10.95.1.0/24") == \
            "InvalidSubnet.Range"
        assert _code(ec2.disassociate_vpc_cidr_block,
                     AssociationId=assoc["AssociationId"]) == "InvalidCidrBlock.InUse"
        primary = ec2.describe_vpcs(VpcIds=[vpc])["Vpcs"][0]["CidrBlockAssociationSet"][0]
        assert _code(ec2.disassociate_vpc_cidr_block,
                     AssociationId=primary["AssociationId"]) == "OperationNotPermitted"
        assert _code(ec2.disassociate_vpc_cidr_block,
                     AssociationId="vpc-cidr-assoc-0123456789abcdef0") == \
            "InvalidVpcCidrBlockAssociationID.NotFound"
        ec2.delete_subnet(SubnetId=subnet)
        gone = ec2.disassociate_vpc_cidr_block(AssociationId=assoc["AssociationId"])
        assert gone["CidrBlockAssociation"]["CidrBlockState"]["State"] == "disassociating"
        assert "10.91.0.0/16" not in _blocks(ec2, vpc)
        (main,) = ec2.describe_route_tables(Filters=[{"Name": "vpc-id", "Values": [vpc]}])[
            "RouteTables"]
        assert "10.91.0.0/16" not in [r["DestinationCidrBlock"] for r in main["Routes"]]
    finally:
        ec2.delete_vpc(VpcId=vpc)  # its secondary blocks go with it


def test_a_172_primary_may_not_take_the_default_vpc_range(server) -> None:
    ec2 = server.ec2()
    vpc = ec2.create_vpc(CidrBlock="172.20.0.0/16")["Vpc"]["VpcId"]
    try:
        assert _code(ec2.associate_vpc_cidr_block, VpcId=vpc, CidrBlock="172.31.0.0/16") == \
            "InvalidVpc.Range"
        assert _code(ec2.associate_vpc_cidr_block, VpcId=vpc, CidrBlock="10.1.0.0/16") == \
            "InvalidVpc.Range"
        ec2.associate_vpc_cidr_block(VpcId=vpc, CidrBlock="172.21.0.0/16")
    finally:
        ec2.delete_vpc(VpcId=vpc)


def test_subnets_in_a_secondary_block_are_routed_like_the_primary(server) -> None:
    ec2 = server.ec2()
    vpc = ec2.create_vpc(CidrBlock="10.96.0.0/16")["Vpc"]["VpcId"]
    assoc = ec2.associate_vpc_cidr_block(VpcId=vpc, CidrBlock="10.97.0.0/16")[
        "CidrBlockAssociation"]["AssociationId"]
    first = ec2.create_subnet(VpcId=vpc, CidrBlock="10.96.1.0/24")["Subnet"]["SubnetId"]
    second = ec2.create_subnet(VpcId=vpc, CidrBlock="10.97.1.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName="both", Description="b", VpcId=vpc)["GroupId"]
    ec2.authorize_security_group_ingress(GroupId=group, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80,
         "IpRanges": [{"CidrIp": "10.97.0.0/16"}, {"CidrIp": "10.96.0.0/16"}]}])
    try:
        with resource(server, first, [group], ports=(80,), ip="10.96.1.10") as a, \
                resource(server, second, [group], ports=(80,), ip="10.97.1.10") as b:
            assert b.probe(a.ip, 80) == "hello from 10.96.1.10"
            assert a.probe(b.ip, 80) == "hello from 10.97.1.10"
            # the groups still decide: no rule for the secondary block, no way in from it
            ec2.revoke_security_group_ingress(GroupId=group, IpPermissions=[
                {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80,
                 "IpRanges": [{"CidrIp": "10.97.0.0/16"}]}])
            assert b.probe(a.ip, 80) == "timeout"
            assert a.probe(b.ip, 80) == "hello from 10.97.1.10"
    finally:
        ec2.delete_security_group(GroupId=group)
        ec2.delete_subnet(SubnetId=first)
        ec2.delete_subnet(SubnetId=second)
        ec2.disassociate_vpc_cidr_block(AssociationId=assoc)
        ec2.delete_vpc(VpcId=vpc)
