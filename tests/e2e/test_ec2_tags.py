"""Tags on every EC2 network object through boto3 (CreateTags, DeleteTags, DescribeTags with
its filters, TagSpecifications on the Create calls, `tag:`/`tag-key`/`tag-value` filters, AWS's
limits and errors) and MaxResults/NextToken pagination of the Describe calls."""
from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

pytestmark = pytest.mark.root


def _code(fn, **kwargs) -> str:
    with pytest.raises(ClientError) as err:
        fn(**kwargs)
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    return err.value.response["Error"]["Code"]


def _spec(kind: str, **tags: str) -> list[dict]:
    return [{"ResourceType": kind, "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}]


def test_tags_on_every_resource(server) -> None:
    ec2 = server.ec2()
    vid = ec2.create_vpc(CidrBlock="10.50.0.0/16", TagSpecifications=_spec("vpc", Name="t"))[
        "Vpc"]["VpcId"]
    sid = ec2.create_subnet(VpcId=vid, CidrBlock="10.50.1.0/24",
                            TagSpecifications=_spec("subnet", Name="s", tier="private"))[
        "Subnet"]["SubnetId"]
    gid = ec2.create_security_group(GroupName="tagged", Description="d", VpcId=vid,
                                    TagSpecifications=_spec("security-group", Name="g"))["GroupId"]
    eni = ec2.create_network_interface(SubnetId=sid, Groups=[gid], TagSpecifications=_spec(
        "network-interface", Name="e"))["NetworkInterface"]["NetworkInterfaceId"]
    rule = ec2.authorize_security_group_ingress(GroupId=gid, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80,
         "IpRanges": [{"CidrIp": "10.0.0.0/8"}]}])["SecurityGroupRules"][0]["SecurityGroupRuleId"]
    try:
        ec2.create_tags(Resources=[vid, sid, gid, eni, rule],
                        Tags=[{"Key": "env", "Value": "test"}])
        found = ec2.describe_tags(Filters=[{"Name": "key", "Values": ["env"]}])["Tags"]
        assert {(t["ResourceId"], t["ResourceType"], t["Value"]) for t in found} == {
            (vid, "vpc", "test"), (sid, "subnet", "test"), (gid, "security-group", "test"),
            (eni, "network-interface", "test"), (rule, "security-group-rule", "test")}
        assert [t["ResourceId"] for t in ec2.describe_tags(Filters=[
            {"Name": "resource-type", "Values": ["subnet"]},
            {"Name": "key", "Values": ["tier"]}])["Tags"]] == [sid]
        assert {t["Key"] for t in ec2.describe_tags(Filters=[
            {"Name": "resource-id", "Values": [sid]}])["Tags"]} == {"Name", "tier", "env"}
        assert [t["ResourceId"] for t in ec2.describe_tags(Filters=[
            {"Name": "value", "Values": ["priv*"]}])["Tags"]] == [sid]
        # tag filters on the Describe calls
        assert [s["SubnetId"] for s in ec2.describe_subnets(Filters=[
            {"Name": "tag:tier", "Values": ["private"]}])["Subnets"]] == [sid]
        assert [s["SubnetId"] for s in ec2.describe_subnets(Filters=[
            {"Name": "tag-key", "Values": ["tier"]}])["Subnets"]] == [sid]
        assert [g["GroupId"] for g in ec2.describe_security_groups(Filters=[
            {"Name": "tag-value", "Values": ["g"]}])["SecurityGroups"]] == [gid]
        assert [e["NetworkInterfaceId"] for e in ec2.describe_network_interfaces(Filters=[
            {"Name": "tag:Name", "Values": ["e"]}])["NetworkInterfaces"]] == [eni]
        assert ec2.describe_security_group_rules(SecurityGroupRuleIds=[rule])[
            "SecurityGroupRules"][0]["Tags"] == [{"Key": "env", "Value": "test"}]

        # DeleteTags: by key, by key and matching value, or all
        ec2.delete_tags(Resources=[sid], Tags=[{"Key": "tier", "Value": "public"}])  # no match
        assert "tier" in _keys(ec2, sid)
        ec2.delete_tags(Resources=[sid], Tags=[{"Key": "tier", "Value": "private"}])
        assert _keys(ec2, sid) == {"Name", "env"}
        ec2.delete_tags(Resources=[sid], Tags=[{"Key": "Name"}])
        assert _keys(ec2, sid) == {"env"}
        ec2.delete_tags(Resources=[vid, gid])
        assert _keys(ec2, vid) == set() and _keys(ec2, gid) == set()
        # overwrite keeps one value per key
        ec2.create_tags(Resources=[eni], Tags=[{"Key": "Name", "Value": "e2"}])
        assert ec2.describe_network_interfaces(NetworkInterfaceIds=[eni])[
            "NetworkInterfaces"][0]["TagSet"] == [{"Key": "Name", "Value": "e2"},
                                                  {"Key": "env", "Value": "test"}]
    finally:
        ec2.delete_network_interface(NetworkInterfaceId=eni)
        ec2.delete_security_group(GroupId=gid)
        ec2.delete_subnet(SubnetId=sid)
        ec2.delete_vpc(VpcId=vid)
    # a deleted resource's tags go with it
    assert ec2.describe_tags(Filters=[{"Name": "resource-id", "Values": [vid, sid, gid, eni]}])[
        "Tags"] == []


def _keys(ec2, rid: str) -> set[str]:
    return {t["Key"] for t in ec2.describe_tags(Filters=[
        {"Name": "resource-id", "Values": [rid]}])["Tags"]}


def test_tag_errors(server) -> None:
    ec2 = server.ec2()
    vid = ec2.describe_vpcs()["Vpcs"][0]["VpcId"]
    assert _code(ec2.create_tags, Resources=["vpc-0123456789abcdef0"],
                 Tags=[{"Key": "a", "Value": "b"}]) == "InvalidVpcID.NotFound"
    assert _code(ec2.create_tags, Resources=["subnet-0123456789abcdef0"],
                 Tags=[{"Key": "a", "Value": "b"}]) == "InvalidSubnetID.NotFound"
    assert _code(ec2.create_tags, Resources=["bogus-1"],
                 Tags=[{"Key": "a", "Value": "b"}]) == "InvalidID"
    assert _code(ec2.delete_tags, Resources=["sg-0123456789abcdef0"]) == "InvalidGroup.NotFound"
    assert _code(ec2.create_tags, Resources=[vid],
                 Tags=[{"Key": "aws:name", "Value": "b"}]) == "InvalidParameterValue"
    assert _code(ec2.create_tags, Resources=[vid],
                 Tags=[{"Key": "k" * 129, "Value": "b"}]) == "InvalidParameterValue"
    assert _code(ec2.create_tags, Resources=[vid],
                 Tags=[{"Key": "k", "Value": "v" * 257}]) == "InvalidParameterValue"
    assert _code(ec2.create_tags, Resources=[vid], Tags=[
        {"Key": f"k{i}", "Value": ""} for i in range(51)]) == "TagLimitExceeded"
    assert _code(ec2.create_vpc, CidrBlock="10.51.0.0/16",
                 TagSpecifications=_spec("subnet", Name="x")) == "InvalidParameterValue"
    assert _code(ec2.describe_tags, Filters=[{"Name": "colour", "Values": ["x"]}]) == \
        "InvalidParameterValue"
    # nothing was made by the refused calls
    assert ec2.describe_vpcs(Filters=[{"Name": "cidr", "Values": ["10.51.0.0/16"]}])[
        "Vpcs"] == []
    assert _keys(ec2, vid) == set()


def test_pagination(server) -> None:
    ec2 = server.ec2()
    vid = ec2.create_vpc(CidrBlock="10.52.0.0/16")["Vpc"]["VpcId"]
    made = [ec2.create_subnet(VpcId=vid, CidrBlock=f"10.52.{i}.0/24")["Subnet"]["SubnetId"]
            for i in range(7)]
    try:
        ec2.create_tags(Resources=made, Tags=[{"Key": "page", "Value": "yes"}])
        flt = [{"Name": "vpc-id", "Values": [vid]}]
        first = ec2.describe_subnets(Filters=flt, MaxResults=5)
        assert len(first["Subnets"]) == 5 and first["NextToken"]
        second = ec2.describe_subnets(Filters=flt, MaxResults=5, NextToken=first["NextToken"])
        assert "NextToken" not in second
        assert [s["SubnetId"] for s in first["Subnets"] + second["Subnets"]] == made
        # boto3's paginators walk it
        walked = [s["SubnetId"] for page in ec2.get_paginator("describe_subnets").paginate(
            Filters=flt, PaginationConfig={"PageSize": 5}) for s in page["Subnets"]]
        assert walked == made
        tags = [t["ResourceId"] for page in ec2.get_paginator("describe_tags").paginate(
            Filters=[{"Name": "key", "Values": ["page"]}], PaginationConfig={"PageSize": 5})
            for t in page["Tags"]]
        assert sorted(tags) == sorted(made)
        vpcs = [v["VpcId"] for page in ec2.get_paginator("describe_vpcs").paginate(
            PaginationConfig={"PageSize": 5}) for v in page["Vpcs"]]
        assert vid in vpcs and len(vpcs) == len(set(vpcs))
        for op in ("describe_security_groups", "describe_security_group_rules",
                   "describe_network_interfaces"):
            page = getattr(ec2, op)(MaxResults=5)
            assert "NextToken" in page or len(next(v for k, v in page.items()
                                                   if isinstance(v, list))) <= 5
        raw = server.client("ec2", parameter_validation=False)  # boto3 would refuse them
        assert _code(raw.describe_subnets, MaxResults=4) == "InvalidParameterValue"
        assert _code(raw.describe_subnets, MaxResults=1001) == "InvalidParameterValue"
        assert _code(ec2.describe_tags, MaxResults=4) == "InvalidParameterValue"
        assert _code(ec2.describe_vpcs, MaxResults=5, NextToken="not-a-token") == \
            "InvalidPaginationToken"
    finally:
        for sid in made:
            ec2.delete_subnet(SubnetId=sid)
        ec2.delete_vpc(VpcId=vid)
