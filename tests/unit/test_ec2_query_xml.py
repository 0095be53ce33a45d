"""The EC2 Query codec against botocore itself: what botocore's EC2 serializer sends parses
back to the same parameters, and what we serialise botocore's EC2 parser reads back."""
from __future__ import annotations

import datetime as dt

import pytest
from botocore import parsers, serialize

from lambdaplane.api import query_xml
from lambdaplane.errors import ec2_error

MODEL = query_xml.ec2_model()


def _wire_form(action: str, params: dict) -> dict[str, str]:
    op = MODEL.operation_model(action)
    body = serialize.create_serializer("ec2").serialize_to_request(params, op)["body"]
    return {k: str(v) for k, v in body.items()}


@pytest.mark.parametrize("action,params", [
    ("CreateVpc", {"CidrBlock": "10.0.0.0/16",
                   "TagSpecifications": [{"ResourceType": "vpc",
                                          "Tags": [{"Key": "Name", "Value": "a b&c"}]}]}),
    ("DescribeVpcs", {"VpcIds": ["vpc-1", "vpc-2"],
                      "Filters": [{"Name": "cidr", "Values": ["10.0.0.0/16", "10.1.0.0/16"]},
                                  {"Name": "tag:Name", "Values": ["x*"]}]}),
    ("AuthorizeSecurityGroupIngress", {
        "GroupId": "sg-12345678",
        "IpPermissions": [{"IpProtocol": "tcp", "FromPort": 5432, "ToPort": 5432,
                           "IpRanges": [{"CidrIp": "10.0.1.0/24", "Description": "db"}],
                           "UserIdGroupPairs": [{"GroupId": "sg-87654321"}]}]}),
    ("CreateNetworkInterface", {"SubnetId": "subnet-1", "Groups": ["sg-1", "sg-2"],
                                "PrivateIpAddress": "10.0.1.10", "DryRun": False}),
    ("CreateTags", {"Resources": ["vpc-1"], "Tags": [{"Key": "k", "Value": "v"}]}),
])
def test_request_round_trip(action: str, params: dict) -> None:
    form = _wire_form(action, params)
    assert form["Action"] == action and form["Version"] == "2016-11-15"
    parsed = query_xml.parse_params(MODEL.operation_model(action), form)
    assert parsed == params


def _parse_response(action: str, xml: str, status: int = 200) -> dict:
    op = MODEL.operation_model(action)
    parser = parsers.create_parser("ec2")
    return parser.parse({"body": xml.encode(), "headers": {}, "status_code": status},
                        op.output_shape)


def test_response_is_read_by_botocore() -> None:
    op = MODEL.operation_model("DescribeSecurityGroups")
    result = {"SecurityGroups": [{
        "GroupId": "sg-1", "GroupName": "web <&>", "VpcId": "vpc-1",
        "IpPermissions": [{"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80,
                           "IpRanges": [{"CidrIp": "10.0.0.0/16"}],
                           "UserIdGroupPairs": [{"GroupId": "sg-2", "UserId": "000000000000"}]}],
        "Tags": [{"Key": "Name", "Value": "web"}]}]}
    parsed = _parse_response("DescribeSecurityGroups", query_xml.response_xml(op, result, "rid-1"))
    assert parsed["SecurityGroups"] == result["SecurityGroups"]
    assert parsed["ResponseMetadata"]["RequestId"] == "rid-1"


def test_booleans_numbers_and_timestamps() -> None:
    op = MODEL.operation_model("DescribeSubnets")
    result = {"Subnets": [{"SubnetId": "subnet-1", "AvailableIpAddressCount": 251,
                           "DefaultForAz": True, "MapPublicIpOnLaunch": False}]}
    parsed = _parse_response("DescribeSubnets", query_xml.response_xml(op, result, "r"))
    assert parsed["Subnets"] == result["Subnets"]
    assert query_xml._scalar_out(dt.datetime(2020, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)) \
        == "2020-01-02T03:04:05.000Z"


def test_error_xml_is_read_by_botocore() -> None:
    err = ec2_error("InvalidVpcID.NotFound", "The vpc ID 'vpc-1' does not exist")
    parsed = _parse_response("DescribeVpcs", query_xml.error_xml(err, "rid-2"), 400)
    assert parsed["Error"] == {"Code": "InvalidVpcID.NotFound",
                               "Message": "The vpc ID 'vpc-1' does not exist"}
    assert parsed["ResponseMetadata"]["RequestId"] == "rid-2"


def test_unknown_action() -> None:
    with pytest.raises(Exception) as info:
        query_xml.operation("NoSuchThing")
    assert info.value.code == "InvalidAction"
