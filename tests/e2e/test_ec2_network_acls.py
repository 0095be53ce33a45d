"""The network ACL API through boto3, as Terraform's aws_network_acl / aws_network_acl_rule /
aws_default_network_acl use it: each VPC's default ACL (rules 100 and `*` both ways) with every
subnet in it, CreateNetworkAcl (only `*` rules), entries, associations, DescribeNetworkAcls'
filters, and every error code. The kernel side is test_network_acls.py."""
from __future__ import annotations

import sqlite3

import pytest
from botocore.exceptions import ClientError

pytestmark = pytest.mark.root

ALL = {"CidrBlock": "0.0.0.0/0", "Protocol": "-1"}


def _code(fn, **kwargs) -> str:
    with pytest.raises(ClientError) as err:
        fn(**kwargs)
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    return err.value.response["Error"]["Code"]


def _ids(ec2, *filters: tuple[str, str]) -> list[str]:
    flt = [{"Name": n, "Values": [v]} for n, v in filters]
    return [a["NetworkAclId"] for a in ec2.describe_network_acls(Filters=flt)["NetworkAcls"]]


def test_default_acl_and_api(server) -> None:
    ec2 = server.ec2()
    vpc = ec2.create_vpc(CidrBlock="10.81.0.0/16")["Vpc"]["VpcId"]
    other = ec2.create_vpc(CidrBlock="10.82.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.81.1.0/24")["Subnet"]["SubnetId"]
    (default,) = ec2.describe_network_acls(Filters=[{"Name": "vpc-id", "Values": [vpc]}])[
        "NetworkAcls"]
    acl = ec2.create_network_acl(VpcId=vpc, TagSpecifications=[
        {"ResourceType": "network-acl", "Tags": [{"Key": "Name", "Value": "private"}]}])[
        "NetworkAcl"]
    aid = acl["NetworkAclId"]
    try:
        assert default["IsDefault"] is True and default["OwnerId"]
        assert sorted((e["RuleNumber"], e["Egress"], e["RuleAction"]) for e in
                      default["Entries"]) == [(100, False, "allow"), (100, True, "allow"),
                                              (32767, False, "deny"), (32767, True, "deny")]
        assert all(e["CidrBlock"] == "0.0.0.0/0" and e["Protocol"] == "-1"
                   for e in default["Entries"])
        (assoc,) = default["Associations"]
        assert assoc["SubnetId"] == subnet and assoc["NetworkAclAssociationId"].startswith(
            "aclassoc-")
        # the default VPC's subnets are all in its default ACL
        dvpc = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]
        (dacl,) = ec2.describe_network_acls(Filters=[
            {"Name": "vpc-id", "Values": [dvpc["VpcId"]]}])["NetworkAcls"]
        assert len(dacl["Associations"]) == 6

        assert acl["IsDefault"] is False and acl["Associations"] == []
        assert sorted((e["RuleNumber"], e["RuleAction"]) for e in acl["Entries"]) == \
            [(32767, "deny"), (32767, "deny")]
        assert acl["Tags"] == [{"Key": "Name", "Value": "private"}]
        ec2.create_network_acl_entry(NetworkAclId=aid, RuleNumber=110, Egress=False,
                                     RuleAction="allow", Protocol="6", CidrBlock="10.0.0.5/8",
                                     PortRange={"From": 443, "To": 443})
        ec2.create_network_acl_entry(NetworkAclId=aid, RuleNumber=120, Egress=True,
                                     RuleAction="deny", Protocol="icmp", CidrBlock="0.0.0.0/0",
                                     IcmpTypeCode={"Type": 8, "Code": -1})
        entries = {(e["RuleNumber"], e["Egress"]): e for e in ec2.describe_network_acls(
            NetworkAclIds=[aid])["NetworkAcls"][0]["Entries"]}
        assert entries[(110, False)]["CidrBlock"] == "10.0.0.0/8"
        assert entries[(110, False)]["PortRange"] == {"From": 443, "To": 443}
        assert entries[(120, True)]["Protocol"] == "1"
        assert entries[(120, True)]["IcmpTypeCode"] == {"Type": 8, "Code": -1}
        for name, value in [("entry.port-range.from", "443"), ("entry.rule-number", "110"),
                            ("entry.protocol", "6"),
                            ("entry.icmp.type", "8"), ("entry.cidr", "10.0.0.0/8"),
                            ("default", "false"), ("tag:Name", "private"),
                            ("network-acl-id", aid)]:
            assert _ids(ec2, (name, value), ("vpc-id", vpc)) == [aid], name
        assert _ids(ec2, ("default", "true"), ("vpc-id", vpc)) == [default["NetworkAclId"]]
        assert _ids(ec2, ("entry.egress", "true"), ("entry.rule-number", "120")) == [aid]
        # the `*` rules deny in every ACL
        assert sorted(_ids(ec2, ("entry.rule-action", "deny"), ("vpc-id", vpc))) == \
            sorted([aid, default["NetworkAclId"]])

        # associations
        new = ec2.replace_network_acl_association(AssociationId=assoc["NetworkAclAssociationId"],
                                                  NetworkAclId=aid)["NewAssociationId"]
        assert _ids(ec2, ("association.subnet-id", subnet)) == [aid]
        assert _ids(ec2, ("association.association-id", new)) == [aid]
        assert _code(ec2.delete_network_acl, NetworkAclId=aid) == "DependencyViolation"
        assert _code(ec2.delete_vpc, VpcId=vpc) == "DependencyViolation"
        other_acl = _ids(ec2, ("vpc-id", other))[0]
        assert _code(ec2.replace_network_acl_association, AssociationId=new,
                     NetworkAclId=other_acl) == "InvalidParameterValue"
        assert _code(ec2.replace_network_acl_association,
                     AssociationId=assoc["NetworkAclAssociationId"], NetworkAclId=aid) == \
            "InvalidAssociationID.NotFound"

        # entry errors
        base = dict(NetworkAclId=aid, Egress=False, RuleAction="allow", **ALL)
        assert _code(ec2.create_network_acl_entry, RuleNumber=110, **base) == \
            "NetworkAclEntryAlreadyExists"
        assert _code(ec2.create_network_acl_entry, RuleNumber=32767, **base) == \
            "InvalidParameterValue"
        assert _code(ec2.create_network_acl_entry, RuleNumber=0, **base) == \
            "InvalidParameterValue"
        assert _code(ec2.replace_network_acl_entry, RuleNumber=111, **base) == \
            "InvalidNetworkAclEntry.NotFound"
        assert _code(ec2.delete_network_acl_entry, NetworkAclId=aid, RuleNumber=110,
                     Egress=True) == "InvalidNetworkAclEntry.NotFound"
        assert _code(ec2.delete_network_acl_entry, NetworkAclId=aid, RuleNumber=32767,
                     Egress=True) == "InvalidNetworkAclEntry.NotFound"
        assert _code(ec2.create_network_acl_entry, NetworkAclId=aid, RuleNumber=5, Egress=False,
                     RuleAction="allow", Protocol="6", CidrBlock="0.0.0.0/0") == \
            "MissingParameter"
        assert _code(ec2.create_network_acl_entry, NetworkAclId=aid, RuleNumber=5, Egress=False,
                     RuleAction="allow", Protocol="6", CidrBlock="0.0.0.0/0",
                     PortRange={"From": 9, "To": 1}) == "InvalidParameterValue"
        assert _code(ec2.create_network_acl_entry, NetworkAclId=aid, RuleNumber=5, Egress=False,
                     RuleAction="maybe", **ALL) == "InvalidParameterValue"
        assert _code(ec2.create_network_acl_entry, NetworkAclId=aid, RuleNumber=5, Egress=False,
                     RuleAction="allow", Protocol="nope", CidrBlock="0.0.0.0/0") == \
            "InvalidParameterValue"
        assert _code(ec2.create_network_acl_entry, NetworkAclId=aid, RuleNumber=5, Egress=False,
                     RuleAction="allow", Protocol="-1", CidrBlock="10.0.0.0/40") == \
            "InvalidParameterValue"
        assert _code(ec2.create_network_acl_entry, NetworkAclId="acl-0123456789abcdef0",
                     RuleNumber=5, Egress=False, RuleAction="allow", **ALL) == \
            "InvalidNetworkAclID.NotFound"
        assert _code(ec2.describe_network_acls, NetworkAclIds=["acl-x"]) == \
            "InvalidNetworkAclId.Malformed"
        assert _code(ec2.delete_network_acl, NetworkAclId=default["NetworkAclId"]) == \
            "InvalidParameterValue"
        assert _code(ec2.create_network_acl, VpcId="vpc-0123456789abcdef0") == \
            "InvalidVpcID.NotFound"
        assert _code(ec2.describe_network_acls, Filters=[{"Name": "entry.colour",
                                                          "Values": ["x"]}]) == \
            "InvalidParameterValue"
        page = ec2.describe_network_acls(MaxResults=5)
        assert len(page["NetworkAcls"]) <= 5
        ec2.delete_network_acl_entry(NetworkAclId=aid, RuleNumber=110, Egress=False)
        assert (110, False) not in {(e["RuleNumber"], e["Egress"]) for e in
                                    ec2.describe_network_acls(NetworkAclIds=[aid])[
                                        "NetworkAcls"][0]["Entries"]}
    finally:
        ec2.delete_subnet(SubnetId=subnet)  # its association goes with it
        ec2.delete_network_acl(NetworkAclId=aid)
        ec2.delete_vpc(VpcId=vpc)
        ec2.delete_vpc(VpcId=other)
    assert _ids(ec2, ("vpc-id", vpc)) == []
    assert _code(ec2.describe_network_acls, NetworkAclIds=[aid]) == \
        "InvalidNetworkAclID.NotFound"


def test_stored_vpcs_get_their_default_acl_at_start(fresh_server) -> None:
    ec2 = fresh_server.ec2()
    vpc = ec2.create_vpc(CidrBlock="10.83.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.83.1.0/24")["Subnet"]["SubnetId"]
    fresh_server.stop()
    db = sqlite3.connect(fresh_server.data_dir / "lambdaplane.sqlite3")
    with db:
        db.execute("DELETE FROM ec2_network_acl_associations")
        db.execute("DELETE FROM ec2_network_acl_entries")
        db.execute("DELETE FROM ec2_network_acls")
    db.close()
    fresh_server.start()
    ec2 = fresh_server.ec2()
    (acl,) = ec2.describe_network_acls(Filters=[{"Name": "vpc-id", "Values": [vpc]}])[
        "NetworkAcls"]
    assert acl["IsDefault"] and [a["SubnetId"] for a in acl["Associations"]] == [subnet]
    assert len(ec2.describe_network_acls()["NetworkAcls"]) == 2  # the default VPC's too
