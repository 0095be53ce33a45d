"""The EC2 VPC API through boto3: AWS's defaults (default VPC, subnets and groups), ids,
filters, tags, address accounting, and every error code with AWS's wording."""
from __future__ import annotations

import re

import boto3
import botocore.config
import pytest
from botocore.exceptions import ClientError

pytestmark = pytest.mark.root


def _code(fn, **kwargs) -> str:
    with pytest.raises(ClientError) as err:
        fn(**kwargs)
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    return err.value.response["Error"]["Code"]


def _message(fn, **kwargs) -> str:
    with pytest.raises(ClientError) as err:
        fn(**kwargs)
    return err.value.response["Error"]["Message"]


def test_default_vpc_per_region(server) -> None:
    ec2 = server.ec2()
    default = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"]
    assert len(default) == 1 and default[0]["CidrBlock"] == "172.31.0.0/16"
    vpc_id = default[0]["VpcId"]
    assert re.fullmatch(r"vpc-[0-9a-f]{17}", vpc_id)
    zones = ec2.describe_availability_zones()["AvailabilityZones"]
    assert [z["ZoneName"] for z in zones] == [f"us-east-1{c}" for c in "abcdef"]
    assert zones[0]["ZoneId"] == "use1-az1" and zones[0]["State"] == "available"
    subnets = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])["Subnets"]
    assert sorted(s["AvailabilityZone"] for s in subnets) == [z["ZoneName"] for z in zones]
    assert all(s["DefaultForAz"] and s["CidrBlock"].endswith("/20") for s in subnets)
    assert {s["AvailableIpAddressCount"] for s in subnets} == {4091}
    groups = ec2.describe_security_groups(GroupNames=["default"])["SecurityGroups"]
    assert groups[0]["VpcId"] == vpc_id
    # Another region gets its own default VPC on first use, with its own zones.
    west = boto3.client(
        "ec2", endpoint_url=server.endpoint, region_name="eu-west-2", aws_access_key_id="t",
        aws_secret_access_key="t", config=botocore.config.Config(retries={"max_attempts": 1}))
    west_vpcs = west.describe_vpcs()["Vpcs"]
    assert len(west_vpcs) == 1 and west_vpcs[0]["VpcId"] != vpc_id
    assert [z["ZoneId"] for z in west.describe_availability_zones()["AvailabilityZones"]] == \
        ["euw2-az1", "euw2-az2", "euw2-az3"]
    assert _code(west.describe_vpcs, VpcIds=[vpc_id]) == "InvalidVpcID.NotFound"


def test_create_describe_delete_with_filters_and_tags(server) -> None:
    ec2 = server.ec2()
    vpc = ec2.create_vpc(CidrBlock="10.1.0.5/16", TagSpecifications=[
        {"ResourceType": "vpc", "Tags": [{"Key": "Name", "Value": "api-test"}]}])["Vpc"]
    assert vpc["CidrBlock"] == "10.1.0.0/16" and not vpc["IsDefault"]
    assert vpc["Tags"] == [{"Key": "Name", "Value": "api-test"}]
    vid = vpc["VpcId"]
    assert [v["VpcId"] for v in ec2.describe_vpcs(
        Filters=[{"Name": "tag:Name", "Values": ["api-*"]}])["Vpcs"]] == [vid]
    assert [v["VpcId"] for v in ec2.describe_vpcs(
        Filters=[{"Name": "cidr-block", "Values": ["10.1.0.0/16"]}])["Vpcs"]] == [vid]
    default_sg = ec2.describe_security_groups(Filters=[{"Name": "vpc-id", "Values": [vid]}])[
        "SecurityGroups"]
    assert [g["GroupName"] for g in default_sg] == ["default"]
    assert default_sg[0]["IpPermissions"][0]["UserIdGroupPairs"][0]["GroupId"] == \
        default_sg[0]["GroupId"]
    assert default_sg[0]["IpPermissionsEgress"][0]["IpRanges"] == [{"CidrIp": "0.0.0.0/0"}]
    s1 = ec2.create_subnet(VpcId=vid, CidrBlock="10.1.1.0/24", AvailabilityZone="us-east-1b")[
        "Subnet"]
    s2 = ec2.create_subnet(VpcId=vid, CidrBlock="10.1.2.0/28", AvailabilityZoneId="use1-az3")[
        "Subnet"]
    assert s1["AvailableIpAddressCount"] == 251 and s2["AvailableIpAddressCount"] == 11
    assert s2["AvailabilityZone"] == "us-east-1c"
    assert [s["SubnetId"] for s in ec2.describe_subnets(Filters=[
        {"Name": "availability-zone", "Values": ["us-east-1b"]},
        {"Name": "vpc-id", "Values": [vid]}])["Subnets"]] == [s1["SubnetId"]]
    assert [s["SubnetId"] for s in ec2.describe_subnets(Filters=[
        {"Name": "cidr-block", "Values": ["10.1.2.0/28"]}])["Subnets"]] == [s2["SubnetId"]]
    ec2.create_tags(Resources=[s1["SubnetId"]], Tags=[{"Key": "tier", "Value": "db"}])
    assert ec2.describe_subnets(SubnetIds=[s1["SubnetId"]])["Subnets"][0]["Tags"] == \
        [{"Key": "tier", "Value": "db"}]
    sg = ec2.create_security_group(GroupName="app", Description="app tier", VpcId=vid)
    assert re.fullmatch(r"sg-[0-9a-f]{17}", sg["GroupId"])
    got = ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": ["app"]},
                                                {"Name": "vpc-id", "Values": [vid]}])
    assert [g["GroupId"] for g in got["SecurityGroups"]] == [sg["GroupId"]]
    assert got["SecurityGroups"][0]["IpPermissions"] == []
    rules = ec2.authorize_security_group_ingress(GroupId=sg["GroupId"], IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 90,
         "IpRanges": [{"CidrIp": "10.1.0.0/16", "Description": "web"}]}])["SecurityGroupRules"]
    assert rules[0]["FromPort"] == 80 and rules[0]["ToPort"] == 90 and not rules[0]["IsEgress"]
    assert re.fullmatch(r"sgr-[0-9a-f]{17}", rules[0]["SecurityGroupRuleId"])
    all_rules = ec2.describe_security_group_rules(Filters=[
        {"Name": "group-id", "Values": [sg["GroupId"]]}])["SecurityGroupRules"]
    assert sorted(r["IsEgress"] for r in all_rules) == [False, True]
    eni = ec2.create_network_interface(SubnetId=s2["SubnetId"], Groups=[sg["GroupId"]],
                                       Description="spare")["NetworkInterface"]
    assert eni["PrivateIpAddress"] == "10.1.2.4" and eni["InterfaceType"] == "interface"
    assert eni["Status"] == "available" and eni["RequesterManaged"] is False
    assert ec2.describe_subnets(SubnetIds=[s2["SubnetId"]])["Subnets"][0][
        "AvailableIpAddressCount"] == 10
    fixed = ec2.create_network_interface(SubnetId=s2["SubnetId"], PrivateIpAddress="10.1.2.9")[
        "NetworkInterface"]
    assert fixed["Groups"][0]["GroupName"] == "default"
    found = ec2.describe_network_interfaces(Filters=[
        {"Name": "group-id", "Values": [sg["GroupId"]]}])["NetworkInterfaces"]
    assert [e["NetworkInterfaceId"] for e in found] == [eni["NetworkInterfaceId"]]
    assert len(ec2.describe_network_interfaces(Filters=[
        {"Name": "availability-zone", "Values": ["us-east-1c"]},
        {"Name": "vpc-id", "Values": [vid]}])["NetworkInterfaces"]) == 2
    for e in (eni, fixed):
        ec2.delete_network_interface(NetworkInterfaceId=e["NetworkInterfaceId"])
    assert ec2.describe_subnets(SubnetIds=[s2["SubnetId"]])["Subnets"][0][
        "AvailableIpAddressCount"] == 11
    ec2.delete_security_group(GroupId=sg["GroupId"])
    ec2.delete_subnet(SubnetId=s1["SubnetId"])
    ec2.delete_subnet(SubnetId=s2["SubnetId"])
    ec2.delete_vpc(VpcId=vid)
    assert _code(ec2.describe_vpcs, VpcIds=[vid]) == "InvalidVpcID.NotFound"


def test_error_codes(server) -> None:
    ec2 = server.ec2()
    missing_vpc = "vpc-0123456789abcdef0"
    assert _code(ec2.describe_vpcs, VpcIds=[missing_vpc]) == "InvalidVpcID.NotFound"
    assert _message(ec2.delete_vpc, VpcId=missing_vpc) == \
        f"The vpc ID '{missing_vpc}' does not exist"
    assert _code(ec2.describe_vpcs, VpcIds=["nope"]) == "InvalidVpcID.Malformed"
    assert _code(ec2.create_vpc, CidrBlock="10.0.0.0/8") == "InvalidVpc.Range"
    assert _code(ec2.create_vpc, CidrBlock="10.0.0.0/29") == "InvalidVpc.Range"
    assert _code(ec2.create_vpc, CidrBlock="10.0.0.300/16") == "InvalidParameterValue"
    vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    sub = ec2.create_subnet(VpcId=vpc, CidrBlock="10.9.0.0/24")["Subnet"]["SubnetId"]
    assert _code(ec2.create_subnet, VpcId=vpc, CidrBlock="10.9.0.128/25") == \
        "InvalidSubnet.Conflict"
    assert _message(ec2.create_subnet, VpcId=vpc, CidrBlock="10.9.0.0/23") == \
        "The CIDR '10.9.0.0/23' conflicts with another subnet"
    assert _code(ec2.create_subnet, VpcId=vpc, CidrBlock="10.10.0.0/24") == "InvalidSubnet.Range"
    assert _code(ec2.create_subnet, VpcId=vpc, CidrBlock="10.9.1.0/29") == "InvalidSubnet.Range"
    assert _code(ec2.create_subnet, VpcId=missing_vpc, CidrBlock="10.9.1.0/24") == \
        "InvalidVpcID.NotFound"
    assert _code(ec2.create_subnet, VpcId=vpc, CidrBlock="10.9.1.0/24",
                 AvailabilityZone="us-east-1z") == "InvalidParameterValue"
    assert _code(ec2.describe_subnets, SubnetIds=["subnet-0123456789abcdef0"]) == \
        "InvalidSubnetID.NotFound"
    assert _code(ec2.describe_subnets, Filters=[{"Name": "bogus", "Values": ["x"]}]) == \
        "InvalidParameterValue"
    assert _code(ec2.delete_vpc, VpcId=vpc) == "DependencyViolation"
    assert _message(ec2.delete_vpc, VpcId=vpc) == \
        f"The vpc '{vpc}' has dependencies and cannot be deleted."
    web = ec2.create_security_group(GroupName="web", Description="w", VpcId=vpc)["GroupId"]
    app = ec2.create_security_group(GroupName="app", Description="a", VpcId=vpc)["GroupId"]
    assert _code(ec2.create_security_group, GroupName="web", Description="again",
                 VpcId=vpc) == "InvalidGroup.Duplicate"
    assert _message(ec2.create_security_group, GroupName="web", Description="again",
                    VpcId=vpc) == f"The security group 'web' already exists for VPC '{vpc}'"
    assert _code(ec2.describe_security_groups, GroupIds=["sg-0123456789abcdef0"]) == \
        "InvalidGroup.NotFound"
    assert _code(ec2.describe_security_groups, GroupIds=["web"]) == "InvalidGroupId.Malformed"
    assert _code(ec2.describe_security_groups, GroupNames=["nonesuch"]) == "InvalidGroup.NotFound"
    perm = {"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443,
            "IpRanges": [{"CidrIp": "10.9.0.0/24"}]}
    ec2.authorize_security_group_ingress(GroupId=web, IpPermissions=[perm])
    assert _code(ec2.authorize_security_group_ingress, GroupId=web, IpPermissions=[perm]) == \
        "InvalidPermission.Duplicate"
    assert _code(ec2.revoke_security_group_ingress, GroupId=web, IpPermissions=[
        {**perm, "FromPort": 444, "ToPort": 444}]) == "InvalidPermission.NotFound"
    assert _code(ec2.revoke_security_group_ingress, GroupId=web,
                 SecurityGroupRuleIds=["sgr-0123456789abcdef0"]) == \
        "InvalidSecurityGroupRuleId.NotFound"
    assert _code(ec2.authorize_security_group_ingress, GroupId=web, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 90, "ToPort": 80,
         "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}]) == "InvalidParameterValue"
    assert _code(ec2.authorize_security_group_ingress, GroupId=web, IpPermissions=[
        {"IpProtocol": "bogus", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}]) == "InvalidParameterValue"
    assert _code(ec2.authorize_security_group_ingress, GroupId=web, IpPermissions=[
        {"IpProtocol": "-1", "UserIdGroupPairs": [{"GroupId": "sg-0123456789abcdef0"}]}]) == \
        "InvalidGroup.NotFound"
    ec2.authorize_security_group_ingress(GroupId=web, IpPermissions=[
        {"IpProtocol": "-1", "UserIdGroupPairs": [{"GroupId": app}]}])
    assert _code(ec2.delete_security_group, GroupId=app) == "DependencyViolation"
    assert _message(ec2.delete_security_group, GroupId=app) == \
        f"resource {app} has a dependent object"
    default = ec2.describe_security_groups(Filters=[
        {"Name": "vpc-id", "Values": [vpc]}, {"Name": "group-name", "Values": ["default"]}])[
        "SecurityGroups"][0]["GroupId"]
    assert _code(ec2.delete_security_group, GroupId=default) == "CannotDelete"
    eni = ec2.create_network_interface(SubnetId=sub, Groups=[app])["NetworkInterface"][
        "NetworkInterfaceId"]
    assert _code(ec2.create_network_interface, SubnetId=sub, PrivateIpAddress="10.9.0.4") == \
        "InvalidIPAddress.InUse"
    assert _code(ec2.create_network_interface, SubnetId=sub, PrivateIpAddress="10.9.0.1") == \
        "InvalidParameterValue"
    assert _code(ec2.create_network_interface, SubnetId=sub, PrivateIpAddress="10.9.5.5") == \
        "InvalidParameterValue"
    assert _code(ec2.create_network_interface, SubnetId="subnet-0123456789abcdef0") == \
        "InvalidSubnetID.NotFound"
    assert _code(ec2.delete_subnet, SubnetId=sub) == "DependencyViolation"
    assert _code(ec2.describe_network_interfaces,
                 NetworkInterfaceIds=["eni-0123456789abcdef0"]) == \
        "InvalidNetworkInterfaceID.NotFound"
    assert _code(ec2.delete_network_interface, NetworkInterfaceId="eni-nope") == \
        "InvalidNetworkInterfaceID.Malformed"
    # A full /28: 16 addresses, 5 reserved, one used above.
    small = ec2.create_subnet(VpcId=vpc, CidrBlock="10.9.1.0/28")["Subnet"]["SubnetId"]
    made = [ec2.create_network_interface(SubnetId=small)["NetworkInterface"]["NetworkInterfaceId"]
            for _ in range(11)]
    assert ec2.describe_subnets(SubnetIds=[small])["Subnets"][0]["AvailableIpAddressCount"] == 0
    assert _code(ec2.create_network_interface, SubnetId=small) == \
        "InsufficientFreeAddressesInSubnet"
    assert _code(ec2.create_tags, Resources=["vpc-0123456789abcdef0"],
                 Tags=[{"Key": "a", "Value": "b"}]) == "InvalidVpcID.NotFound"
    assert _code(ec2.create_security_group, GroupName="x", Description="x",
                 VpcId=missing_vpc) == "InvalidVpcID.NotFound"
    for e in made + [eni]:
        ec2.delete_network_interface(NetworkInterfaceId=e)
    ec2.revoke_security_group_ingress(GroupId=web, IpPermissions=[
        {"IpProtocol": "-1", "UserIdGroupPairs": [{"GroupId": app}]}])
    for g in (app, web):
        ec2.delete_security_group(GroupId=g)
    for s in (sub, small):
        ec2.delete_subnet(SubnetId=s)
    ec2.delete_vpc(VpcId=vpc)


def test_unknown_action_and_dry_run(server) -> None:
    ec2 = server.ec2()
    with pytest.raises(ClientError) as err:
        ec2.describe_vpcs(DryRun=True)
    assert err.value.response["Error"]["Code"] == "DryRunOperation"
    import urllib.error
    import urllib.request
    req = urllib.request.Request(server.endpoint + "/", data=b"Action=RunInstancesX&Version=2016-11-15",
                                 method="POST")
    with pytest.raises(urllib.error.HTTPError) as http:
        urllib.request.urlopen(req, timeout=30)
    body = http.value.read().decode()
    assert "<Code>InvalidAction</Code>" in body and "<RequestID>" in body
