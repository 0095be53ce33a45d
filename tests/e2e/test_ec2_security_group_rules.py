"""Security group rules by id through boto3: ids returned by Authorize*, DescribeSecurityGroupRules
with its filters, ModifySecurityGroupRules (taking effect in the kernel at once),
UpdateSecurityGroupRuleDescriptionsIngress/Egress, Revoke* by SecurityGroupRuleIds, rule tags,
and the `ip-permission.*` / `egress.ip-permission.*` filters of DescribeSecurityGroups."""
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


def _tcp(port: int, cidr: str, description: str = "") -> dict:
    rng = {"CidrIp": cidr, **({"Description": description} if description else {})}
    return {"IpProtocol": "tcp", "FromPort": port, "ToPort": port, "IpRanges": [rng]}


@pytest.fixture(scope="module")
def net(server):
    ec2 = server.ec2()
    vid = ec2.create_vpc(CidrBlock="10.60.0.0/16")["Vpc"]["VpcId"]
    sid = ec2.create_subnet(VpcId=vid, CidrBlock="10.60.1.0/24")["Subnet"]["SubnetId"]
    web = ec2.create_security_group(GroupName="web", Description="w", VpcId=vid)["GroupId"]
    app = ec2.create_security_group(GroupName="app", Description="a", VpcId=vid)["GroupId"]
    yield {"vpc": vid, "subnet": sid, "web": web, "app": app}
    ec2.delete_security_group(GroupId=web)
    ec2.delete_security_group(GroupId=app)
    ec2.delete_subnet(SubnetId=sid)
    ec2.delete_vpc(VpcId=vid)


def test_rule_ids_describe_modify_and_revoke(server, net) -> None:
    ec2 = server.ec2()
    out = ec2.authorize_security_group_ingress(
        GroupId=net["web"], IpPermissions=[_tcp(80, "10.0.0.0/8", "http")],
        TagSpecifications=[{"ResourceType": "security-group-rule",
                            "Tags": [{"Key": "Name", "Value": "http"}]}])
    (rule,) = out["SecurityGroupRules"]
    rid = rule["SecurityGroupRuleId"]
    assert rid.startswith("sgr-") and rule["IsEgress"] is False
    assert rule["CidrIpv4"] == "10.0.0.0/8" and rule["Description"] == "http"
    assert rule["Tags"] == [{"Key": "Name", "Value": "http"}]
    by_tag = ec2.describe_security_group_rules(Filters=[
        {"Name": "tag:Name", "Values": ["http"]}])["SecurityGroupRules"]
    assert [r["SecurityGroupRuleId"] for r in by_tag] == [rid]
    in_group = ec2.describe_security_group_rules(Filters=[
        {"Name": "group-id", "Values": [net["web"]]}])["SecurityGroupRules"]
    assert {r["IsEgress"] for r in in_group} == {True, False} and len(in_group) == 2
    assert [r["SecurityGroupRuleId"] for r in ec2.describe_security_group_rules(Filters=[
        {"Name": "security-group-rule-id", "Values": [rid]}])["SecurityGroupRules"]] == [rid]

    # rewrite in place: same id, new port, peer and description; tags kept
    ec2.modify_security_group_rules(GroupId=net["web"], SecurityGroupRules=[{
        "SecurityGroupRuleId": rid, "SecurityGroupRule": {
            "IpProtocol": "tcp", "FromPort": 8080, "ToPort": 8081,
            "ReferencedGroupId": net["app"], "Description": "from app"}}])
    (seen,) = ec2.describe_security_group_rules(SecurityGroupRuleIds=[rid])["SecurityGroupRules"]
    assert (seen["FromPort"], seen["ToPort"], seen["Description"]) == (8080, 8081, "from app")
    assert seen["ReferencedGroupInfo"]["GroupId"] == net["app"] and "CidrIpv4" not in seen
    assert seen["Tags"] == [{"Key": "Name", "Value": "http"}] and seen["IsEgress"] is False
    (group,) = ec2.describe_security_groups(GroupIds=[net["web"]])["SecurityGroups"]
    assert group["IpPermissions"][0]["UserIdGroupPairs"][0]["GroupId"] == net["app"]

    # descriptions, by id and by permission
    ec2.update_security_group_rule_descriptions_ingress(
        GroupId=net["web"], SecurityGroupRuleDescriptions=[
            {"SecurityGroupRuleId": rid, "Description": "by id"}])
    assert _description(ec2, rid) == "by id"
    ec2.update_security_group_rule_descriptions_ingress(GroupId=net["web"], IpPermissions=[{
        "IpProtocol": "tcp", "FromPort": 8080, "ToPort": 8081,
        "UserIdGroupPairs": [{"GroupId": net["app"], "Description": "by permission"}]}])
    assert _description(ec2, rid) == "by permission"
    egress_id = next(r["SecurityGroupRuleId"] for r in in_group if r["IsEgress"])
    ec2.update_security_group_rule_descriptions_egress(
        GroupId=net["web"], SecurityGroupRuleDescriptions=[
            {"SecurityGroupRuleId": egress_id, "Description": "all out"}])
    assert _description(ec2, egress_id) == "all out"

    # errors
    assert _code(ec2.modify_security_group_rules, GroupId=net["web"], SecurityGroupRules=[{
        "SecurityGroupRuleId": "sgr-0123456789abcdef0", "SecurityGroupRule": {
            "IpProtocol": "tcp", "FromPort": 1, "ToPort": 1, "CidrIpv4": "10.0.0.0/8"}}]) == \
        "InvalidSecurityGroupRuleId.NotFound"
    assert _code(ec2.modify_security_group_rules, GroupId=net["app"], SecurityGroupRules=[{
        "SecurityGroupRuleId": rid, "SecurityGroupRule": {  # a rule of another group
            "IpProtocol": "tcp", "FromPort": 1, "ToPort": 1, "CidrIpv4": "10.0.0.0/8"}}]) == \
        "InvalidSecurityGroupRuleId.NotFound"
    assert _code(ec2.modify_security_group_rules, GroupId=net["web"], SecurityGroupRules=[{
        "SecurityGroupRuleId": rid, "SecurityGroupRule": {
            "IpProtocol": "tcp", "FromPort": 9, "ToPort": 1, "CidrIpv4": "10.0.0.0/8"}}]) == \
        "InvalidParameterValue"
    assert _code(ec2.modify_security_group_rules, GroupId=net["web"], SecurityGroupRules=[{
        "SecurityGroupRuleId": rid, "SecurityGroupRule": {
            "IpProtocol": "tcp", "FromPort": 1, "ToPort": 1}}]) == "InvalidParameterValue"
    second = ec2.authorize_security_group_ingress(GroupId=net["web"], IpPermissions=[
        _tcp(22, "10.1.0.0/16")])["SecurityGroupRules"][0]["SecurityGroupRuleId"]
    assert _code(ec2.modify_security_group_rules, GroupId=net["web"], SecurityGroupRules=[{
        "SecurityGroupRuleId": second, "SecurityGroupRule": {
            "IpProtocol": "tcp", "FromPort": 8080, "ToPort": 8081,
            "ReferencedGroupId": net["app"]}}]) == "InvalidPermission.Duplicate"
    assert _description(ec2, rid) == "by permission"  # nothing changed by a refused call
    assert _code(ec2.update_security_group_rule_descriptions_ingress, GroupId=net["web"],
                 IpPermissions=[_tcp(23, "10.1.0.0/16", "x")]) == "InvalidPermission.NotFound"
    assert _code(ec2.update_security_group_rule_descriptions_ingress, GroupId=net["web"],
                 SecurityGroupRuleDescriptions=[{"SecurityGroupRuleId": egress_id,
                                                 "Description": "x"}]) == \
        "InvalidSecurityGroupRuleId.NotFound"  # an egress rule is not an ingress rule
    assert _code(ec2.update_security_group_rule_descriptions_ingress, GroupId=net["web"],
                 SecurityGroupRuleDescriptions=[{"SecurityGroupRuleId": rid,
                                                 "Description": "d" * 256}]) == \
        "InvalidParameterValue"
    assert _code(ec2.describe_security_group_rules, SecurityGroupRuleIds=["rule-1"]) == \
        "InvalidSecurityGroupRuleId.Malformed"

    # revoke by ids
    ec2.revoke_security_group_ingress(GroupId=net["web"], SecurityGroupRuleIds=[rid, second])
    assert _code(ec2.describe_security_group_rules, SecurityGroupRuleIds=[rid]) == \
        "InvalidSecurityGroupRuleId.NotFound"
    assert _code(ec2.revoke_security_group_ingress, GroupId=net["web"],
                 SecurityGroupRuleIds=[rid]) == "InvalidSecurityGroupRuleId.NotFound"
    assert ec2.describe_tags(Filters=[{"Name": "resource-id", "Values": [rid]}])["Tags"] == []


def _description(ec2, rid: str) -> str:
    return ec2.describe_security_group_rules(SecurityGroupRuleIds=[rid])[
        "SecurityGroupRules"][0].get("Description", "")


def test_ip_permission_filters(server, net) -> None:
    ec2 = server.ec2()
    out = ec2.authorize_security_group_ingress(GroupId=net["app"], IpPermissions=[
        _tcp(5432, "10.60.0.0/16"),
        {"IpProtocol": "udp", "FromPort": 53, "ToPort": 53,
         "UserIdGroupPairs": [{"GroupId": net["web"]}]}])
    ids = [r["SecurityGroupRuleId"] for r in out["SecurityGroupRules"]]
    try:
        def groups(*filters: tuple[str, str]) -> list[str]:
            flt = [{"Name": n, "Values": [v]} for n, v in filters]
            flt.append({"Name": "vpc-id", "Values": [net["vpc"]]})
            return sorted(g["GroupName"] for g in
                          ec2.describe_security_groups(Filters=flt)["SecurityGroups"])

        assert groups(("ip-permission.from-port", "5432")) == ["app"]
        assert groups(("ip-permission.to-port", "53"), ("ip-permission.protocol", "udp")) == \
            ["app"]
        assert groups(("ip-permission.cidr", "10.60.0.0/16")) == ["app"]
        assert groups(("ip-permission.group-id", net["web"])) == ["app"]
        assert groups(("ip-permission.group-name", "web")) == ["app"]
        assert groups(("ip-permission.user-id", "*")) == ["app", "default"]
        assert groups(("ip-permission.cidr", "0.0.0.0/0")) == []
        assert groups(("egress.ip-permission.cidr", "0.0.0.0/0")) == ["app", "default", "web"]
        assert groups(("egress.ip-permission.protocol", "-1")) == ["app", "default", "web"]
        assert groups(("egress.ip-permission.from-port", "5432")) == []
        assert groups(("ip-permission.ipv6-cidr", "*")) == []
    finally:
        ec2.revoke_security_group_ingress(GroupId=net["app"], SecurityGroupRuleIds=ids)


def test_modified_rule_takes_effect_in_the_kernel(server, net) -> None:
    ec2 = server.ec2()
    rid = ec2.authorize_security_group_ingress(GroupId=net["web"], IpPermissions=[
        _tcp(80, "10.60.0.0/16")])["SecurityGroupRules"][0]["SecurityGroupRuleId"]
    try:
        with resource(server, net["subnet"], [net["web"]], ports=(80, 81), ip="10.60.1.10") as srv, \
                resource(server, net["subnet"], [net["app"]]) as client:
            assert client.probe(srv.ip, 80) == "hello from 10.60.1.10"
            assert client.probe(srv.ip, 81) == "timeout"
            ec2.modify_security_group_rules(GroupId=net["web"], SecurityGroupRules=[{
                "SecurityGroupRuleId": rid, "SecurityGroupRule": {
                    "IpProtocol": "tcp", "FromPort": 81, "ToPort": 81,
                    "CidrIpv4": "10.60.1.0/24"}}])
            assert client.probe(srv.ip, 81) == "hello from 10.60.1.10"
            assert client.probe(srv.ip, 80) == "timeout"
    finally:
        ec2.revoke_security_group_ingress(GroupId=net["web"], SecurityGroupRuleIds=[rid])
