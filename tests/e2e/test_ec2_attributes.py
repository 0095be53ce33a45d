"""VPC and subnet attributes through boto3, as Terraform's aws_vpc / aws_subnet use them:
Describe/ModifyVpcAttribute with AWS's defaults and its one-attribute-per-call rule,
ModifySubnetAttribute reflected in DescribeSubnets and its filters, the response fields AWS
returns, zones by name or id, the `cidr-block-association.*` and `is-default` filters."""
from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

pytestmark = pytest.mark.root


def _code(fn, **kwargs) -> str:
    with pytest.raises(ClientError) as err:
        fn(**kwargs)
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    return err.value.response["Error"]["Code"]


def _attr(ec2, vpc_id: str, name: str) -> bool:
    out = ec2.describe_vpc_attribute(VpcId=vpc_id, Attribute=name)
    assert out["VpcId"] == vpc_id
    return out[name[0].upper() + name[1:]]["Value"]


def test_vpc_attributes(server) -> None:
    ec2 = server.ec2()
    default = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"][0]
    assert _attr(ec2, default["VpcId"], "enableDnsSupport")
    assert _attr(ec2, default["VpcId"], "enableDnsHostnames")
    vid = ec2.create_vpc(CidrBlock="10.40.0.0/16")["Vpc"]["VpcId"]
    try:
        assert _attr(ec2, vid, "enableDnsSupport")
        assert not _attr(ec2, vid, "enableDnsHostnames")
        assert not _attr(ec2, vid, "enableNetworkAddressUsageMetrics")
        ec2.modify_vpc_attribute(VpcId=vid, EnableDnsHostnames={"Value": True})
        ec2.modify_vpc_attribute(VpcId=vid, EnableNetworkAddressUsageMetrics={"Value": True})
        assert _attr(ec2, vid, "enableDnsHostnames")
        assert _attr(ec2, vid, "enableNetworkAddressUsageMetrics")
        ec2.modify_vpc_attribute(VpcId=vid, EnableDnsHostnames={"Value": False})
        ec2.modify_vpc_attribute(VpcId=vid, EnableDnsSupport={"Value": False})
        assert not _attr(ec2, vid, "enableDnsSupport")
        # hostnames need DNS support
        assert _code(ec2.modify_vpc_attribute, VpcId=vid,
                     EnableDnsHostnames={"Value": True}) == "InvalidParameterCombination"
        # one attribute per call, as AWS insists
        with pytest.raises(ClientError) as err:
            ec2.modify_vpc_attribute(VpcId=vid, EnableDnsSupport={"Value": True},
                                     EnableDnsHostnames={"Value": True})
        assert err.value.response["Error"]["Code"] == "InvalidParameterCombination"
        assert "Fields for multiple attribute types specified" in \
            err.value.response["Error"]["Message"]
        assert not _attr(ec2, vid, "enableDnsSupport")  # nothing half-applied
        assert _code(ec2.modify_vpc_attribute, VpcId=vid) == "MissingParameter"
        assert _code(ec2.describe_vpc_attribute, VpcId=vid,
                     Attribute="enableNothing") == "InvalidParameterValue"
        assert _code(ec2.describe_vpc_attribute, VpcId="vpc-0123456789abcdef0",
                     Attribute="enableDnsSupport") == "InvalidVpcID.NotFound"
        assert _code(ec2.modify_vpc_attribute, VpcId="vpc-nope",
                     EnableDnsSupport={"Value": True}) == "InvalidVpcID.Malformed"
    finally:
        ec2.delete_vpc(VpcId=vid)
    # a deleted VPC's attributes go with it
    assert _code(ec2.describe_vpc_attribute, VpcId=vid,
                 Attribute="enableDnsSupport") == "InvalidVpcID.NotFound"


def test_vpc_fields_and_cidr_association_filters(server) -> None:
    ec2 = server.ec2()
    vpc = ec2.create_vpc(CidrBlock="10.41.0.0/16")["Vpc"]
    vid = vpc["VpcId"]
    try:
        (assoc,) = vpc["CidrBlockAssociationSet"]
        assert assoc["CidrBlock"] == "10.41.0.0/16"
        assert assoc["CidrBlockState"] == {"State": "associated"}
        assert vpc["Ipv6CidrBlockAssociationSet"] == [] and vpc["OwnerId"]
        assert vpc["InstanceTenancy"] == "default" and vpc["DhcpOptionsId"]
        for name, value in [("cidr-block-association.cidr-block", "10.41.0.0/16"),
                            ("cidr-block-association.association-id", assoc["AssociationId"]),
                            ("cidr-block-association.state", "associated"),
                            ("is-default", "false"), ("isDefault", "false")]:
            found = ec2.describe_vpcs(Filters=[{"Name": name, "Values": [value]},
                                               {"Name": "vpc-id", "Values": [vid]}])["Vpcs"]
            assert [v["VpcId"] for v in found] == [vid], name
        assert ec2.describe_vpcs(Filters=[
            {"Name": "cidr-block-association.cidr-block", "Values": ["10.99.0.0/16"]}])[
            "Vpcs"] == []
        assert ec2.describe_vpcs(Filters=[
            {"Name": "ipv6-cidr-block-association.ipv6-cidr-block", "Values": ["*"]}])[
            "Vpcs"] == []
        assert _code(ec2.describe_vpcs, Filters=[{"Name": "no-such-filter", "Values": ["x"]}]) \
            == "InvalidParameterValue"
    finally:
        ec2.delete_vpc(VpcId=vid)


def test_subnet_attributes_and_fields(server) -> None:
    ec2 = server.ec2()
    vid = ec2.create_vpc(CidrBlock="10.42.0.0/16")["Vpc"]["VpcId"]
    try:
        subnet = ec2.create_subnet(VpcId=vid, CidrBlock="10.42.1.0/24",
                                   AvailabilityZoneId="use1-az6")["Subnet"]
        sid = subnet["SubnetId"]
        assert subnet["AvailabilityZone"] == "us-east-1f"
        assert subnet["AvailabilityZoneId"] == "use1-az6"
        assert subnet["MapPublicIpOnLaunch"] is False
        assert subnet["AssignIpv6AddressOnCreation"] is False
        assert subnet["Ipv6CidrBlockAssociationSet"] == [] and subnet["Ipv6Native"] is False
        assert subnet["EnableDns64"] is False and subnet["OwnerId"]
        assert subnet["PrivateDnsNameOptionsOnLaunch"] == {
            "HostnameType": "ip-name", "EnableResourceNameDnsARecord": False,
            "EnableResourceNameDnsAAAARecord": False}
        assert subnet["SubnetArn"].endswith(":subnet/" + sid)

        ec2.modify_subnet_attribute(SubnetId=sid, MapPublicIpOnLaunch={"Value": True})
        ec2.modify_subnet_attribute(SubnetId=sid, PrivateDnsHostnameTypeOnLaunch="resource-name")
        ec2.modify_subnet_attribute(SubnetId=sid,
                                    EnableResourceNameDnsARecordOnLaunch={"Value": True})
        (seen,) = ec2.describe_subnets(SubnetIds=[sid])["Subnets"]
        assert seen["MapPublicIpOnLaunch"] is True
        assert seen["PrivateDnsNameOptionsOnLaunch"] == {
            "HostnameType": "resource-name", "EnableResourceNameDnsARecord": True,
            "EnableResourceNameDnsAAAARecord": False}
        for name, value in [("map-public-ip-on-launch", "true"),
                            ("private-dns-name-options-on-launch.hostname-type", "resource-name"),
                            ("private-dns-name-options-on-launch.enable-resource-name-dns-a-record",
                             "true"),
                            ("availability-zone-id", "use1-az6"),
                            ("subnet-arn", seen["SubnetArn"]), ("ipv6-native", "false")]:
            found = ec2.describe_subnets(Filters=[{"Name": name, "Values": [value]},
                                                  {"Name": "vpc-id", "Values": [vid]}])
            assert [s["SubnetId"] for s in found["Subnets"]] == [sid], name
        assert ec2.describe_subnets(Filters=[
            {"Name": "map-public-ip-on-launch", "Values": ["false"]},
            {"Name": "vpc-id", "Values": [vid]}])["Subnets"] == []
        ec2.modify_subnet_attribute(SubnetId=sid, MapPublicIpOnLaunch={"Value": False})
        assert ec2.describe_subnets(SubnetIds=[sid])["Subnets"][0]["MapPublicIpOnLaunch"] is False

        # errors
        assert _code(ec2.modify_subnet_attribute, SubnetId=sid,
                     MapPublicIpOnLaunch={"Value": True},
                     EnableDns64={"Value": False}) == "InvalidParameterCombination"
        assert _code(ec2.modify_subnet_attribute, SubnetId=sid,
                     PrivateDnsHostnameTypeOnLaunch="fancy-name") == "InvalidParameterValue"
        assert _code(ec2.modify_subnet_attribute, SubnetId=sid,  # no IPv6 CIDR on it
                     AssignIpv6AddressOnCreation={"Value": True}) == "InvalidParameterValue"
        assert _code(ec2.modify_subnet_attribute, SubnetId=sid,
                     MapCustomerOwnedIpOnLaunch={"Value": True}) == "InvalidParameterValue"
        assert _code(ec2.modify_subnet_attribute, SubnetId=sid) == "MissingParameter"
        assert _code(ec2.modify_subnet_attribute, SubnetId="subnet-0123456789abcdef0",
                     MapPublicIpOnLaunch={"Value": True}) == "InvalidSubnetID.NotFound"
        assert _code(ec2.create_subnet, VpcId=vid, CidrBlock="10.42.2.0/24",
                     AvailabilityZoneId="use1-az9") == "InvalidParameterValue"
        ec2.delete_subnet(SubnetId=sid)
    finally:
        ec2.delete_vpc(VpcId=vid)


def test_default_subnets_map_public_ips(server) -> None:
    ec2 = server.ec2()
    subnets = ec2.describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]}])[
        "Subnets"]
    assert subnets and all(s["MapPublicIpOnLaunch"] for s in subnets)
    assert {s["AvailabilityZoneId"] for s in subnets} == {f"use1-az{i}" for i in range(1, 7)}


def test_zones_as_aws_lists_them(server) -> None:
    """Tokyo has no zone b: its zones are a, c and d, with ids apne1-az4, -az1, -az2."""
    import boto3
    import botocore.config

    tokyo = boto3.client("ec2", endpoint_url=server.endpoint, region_name="ap-northeast-1",
                         aws_access_key_id="t", aws_secret_access_key="t",
                         config=botocore.config.Config(retries={"max_attempts": 1}))
    zones = tokyo.describe_availability_zones()["AvailabilityZones"]
    assert [(z["ZoneName"], z["ZoneId"]) for z in zones] == [
        ("ap-northeast-1a", "apne1-az4"), ("ap-northeast-1c", "apne1-az1"),
        ("ap-northeast-1d", "apne1-az2")]
    defaults = tokyo.describe_subnets()["Subnets"]
    assert sorted(s["AvailabilityZone"] for s in defaults) == [z["ZoneName"] for z in zones]
    vpc = tokyo.create_vpc(CidrBlock="10.43.0.0/16")["Vpc"]["VpcId"]
    try:
        subnet = tokyo.create_subnet(VpcId=vpc, CidrBlock="10.43.1.0/24",
                                     AvailabilityZoneId="apne1-az1")["Subnet"]
        assert (subnet["AvailabilityZone"], subnet["AvailabilityZoneId"]) == \
            ("ap-northeast-1c", "apne1-az1")
        assert _code(tokyo.create_subnet, VpcId=vpc, CidrBlock="10.43.2.0/24",
                     AvailabilityZone="ap-northeast-1b") == "InvalidParameterValue"
        tokyo.delete_subnet(SubnetId=subnet["SubnetId"])
    finally:
        tokyo.delete_vpc(VpcId=vpc)
