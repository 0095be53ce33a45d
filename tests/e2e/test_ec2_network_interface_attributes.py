"""Network interface attributes through boto3, as Terraform's aws_network_interface and
aws_network_interface_sg_attachment use them: Describe/Modify/ResetNetworkInterfaceAttribute
(description, groups — enforced in the kernel at once — and SourceDestCheck), one attribute
per call, and AWS's errors."""
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


def _attr(ec2, eni: str, name: str) -> dict:
    return ec2.describe_network_interface_attribute(NetworkInterfaceId=eni, Attribute=name)


def test_interface_attributes(server) -> None:
    ec2 = server.ec2()
    vpc = ec2.create_vpc(CidrBlock="10.99.0.0/16")["Vpc"]["VpcId"]
    other_vpc = ec2.create_vpc(CidrBlock="10.100.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.99.1.0/24")["Subnet"]["SubnetId"]
    closed = ec2.create_security_group(GroupName="closed", Description="c", VpcId=vpc)["GroupId"]
    web = ec2.create_security_group(GroupName="web", Description="w", VpcId=vpc)["GroupId"]
    far = ec2.create_security_group(GroupName="far", Description="f",
                                    VpcId=other_vpc)["GroupId"]
    ec2.authorize_security_group_ingress(GroupId=web, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80,
         "IpRanges": [{"CidrIp": "10.99.0.0/16"}]}])
    eni = ec2.create_network_interface(SubnetId=subnet, Groups=[closed], Description="first")[
        "NetworkInterface"]["NetworkInterfaceId"]
    try:
        assert _attr(ec2, eni, "description")["Description"] == {"Value": "first"}
        assert _attr(ec2, eni, "sourceDestCheck")["SourceDestCheck"] == {"Value": True}
        assert [g["GroupId"] for g in _attr(ec2, eni, "groupSet")["Groups"]] == [closed]
        ec2.modify_network_interface_attribute(NetworkInterfaceId=eni,
                                               Description={"Value": "second"})
        ec2.modify_network_interface_attribute(NetworkInterfaceId=eni,
                                               SourceDestCheck={"Value": False})
        ec2.modify_network_interface_attribute(NetworkInterfaceId=eni, Groups=[web, closed])
        (seen,) = ec2.describe_network_interfaces(NetworkInterfaceIds=[eni])["NetworkInterfaces"]
        assert seen["Description"] == "second" and seen["SourceDestCheck"] is False
        assert [g["GroupId"] for g in seen["Groups"]] == [web, closed]
        ec2.reset_network_interface_attribute(NetworkInterfaceId=eni,
                                              SourceDestCheck="sourceDestCheck")
        assert _attr(ec2, eni, "sourceDestCheck")["SourceDestCheck"] == {"Value": True}
        # errors
        assert _code(ec2.modify_network_interface_attribute, NetworkInterfaceId=eni,
                     Description={"Value": "x"}, SourceDestCheck={"Value": True}) == \
            "InvalidParameterCombination"
        assert _code(ec2.modify_network_interface_attribute, NetworkInterfaceId=eni,
                     Groups=[far]) == "InvalidParameterValue"
        assert _code(ec2.modify_network_interface_attribute, NetworkInterfaceId=eni,
                     Groups=["sg-0123456789abcdef0"]) == "InvalidGroup.NotFound"
        six = [ec2.create_security_group(GroupName=f"g{i}", Description="g", VpcId=vpc)[
            "GroupId"] for i in range(6)]
        assert _code(ec2.modify_network_interface_attribute, NetworkInterfaceId=eni,
                     Groups=six) == "SecurityGroupsPerInterfaceLimitExceeded"
        for g in six:
            ec2.delete_security_group(GroupId=g)
        assert _code(ec2.modify_network_interface_attribute,
                     NetworkInterfaceId=eni) == "MissingParameter"
        assert _code(ec2.describe_network_interface_attribute, NetworkInterfaceId=eni,
                     Attribute="colour") == "InvalidParameterValue"
        assert _code(ec2.describe_network_interface_attribute,
                     NetworkInterfaceId="eni-0123456789abcdef0",
                     Attribute="description") == "InvalidNetworkInterfaceID.NotFound"
        assert [g["GroupId"] for g in _attr(ec2, eni, "groupSet")["Groups"]] == [web, closed]
    finally:
        ec2.delete_network_interface(NetworkInterfaceId=eni)
        for g in (closed, web):
            ec2.delete_security_group(GroupId=g)
        ec2.delete_security_group(GroupId=far)
        ec2.delete_subnet(SubnetId=subnet)
        ec2.delete_vpc(VpcId=vpc)
        ec2.delete_vpc(VpcId=other_vpc)


def test_changed_groups_take_effect_in_the_kernel(server) -> None:
    ec2 = server.ec2()
    vpc = ec2.create_vpc(CidrBlock="10.101.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.101.1.0/24")["Subnet"]["SubnetId"]
    closed = ec2.create_security_group(GroupName="closed", Description="c", VpcId=vpc)["GroupId"]
    web = ec2.create_security_group(GroupName="web", Description="w", VpcId=vpc)["GroupId"]
    ec2.authorize_security_group_ingress(GroupId=web, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80,
         "IpRanges": [{"CidrIp": "10.101.0.0/16"}]}])
    try:
        with resource(server, subnet, [closed], ports=(80,), ip="10.101.1.10") as srv, \
                resource(server, subnet, [closed]) as client:
            assert client.probe(srv.ip, 80) == "timeout"
            ec2.modify_network_interface_attribute(NetworkInterfaceId=srv.eni_id, Groups=[web])
            assert client.probe(srv.ip, 80) == "hello from 10.101.1.10"
            ec2.modify_network_interface_attribute(NetworkInterfaceId=srv.eni_id,
                                                   Groups=[closed])
            assert client.probe(srv.ip, 80) == "timeout"
    finally:
        ec2.delete_security_group(GroupId=web)
        ec2.delete_security_group(GroupId=closed)
        ec2.delete_subnet(SubnetId=subnet)
        ec2.delete_vpc(VpcId=vpc)
