"""Terraform's AWS provider, replayed call by call with boto3 (Terraform itself cannot be installed
here). The sequences follow the provider's source (internal/service/iam/role.go and
role_policy_attachment.go; provider start-up in aws-sdk-go-base): what `terraform apply`, a
second `terraform plan` (every read must return what was written, or Terraform sees a change)
and `terraform destroy` send, in their order, including how the provider tolerates or fails on
each error code. Covered so far: provider start-up, aws_iam_role, aws_iam_role_policy_attachment,
aws_security_group, aws_vpc_security_group_ingress_rule, and the destroy of a VPC function's
group and subnet (the provider's wait for the Lambda ENI).
"""
from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request

import pytest
from botocore.exceptions import ClientError

from tests.harness import LiveServer, make_zip

pytestmark = pytest.mark.root

TRUST = json.dumps({"Version": "2012-10-17", "Statement": [{
    "Action": "sts:AssumeRole", "Effect": "Allow",
    "Principal": {"Service": "lambda.amazonaws.com"}}]})
BASIC = "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"


def code_of(call, **kwargs) -> str:
    with pytest.raises(ClientError) as err:
        call(**kwargs)
    return err.value.response["Error"]["Code"]


def provider_start(server: LiveServer) -> str:
    """configure: credentials validated and the account id read with sts:GetCallerIdentity
    (skip_credentials_validation / skip_requesting_account_id false); IMDS skipped."""
    identity = server.client("sts").get_caller_identity()
    assert identity["Arn"].startswith("arn:aws:iam::")
    return identity["Account"]


def read_role(iam, name: str) -> dict:
    """resourceRoleRead: GetRole, ListRolePolicies (+ GetRolePolicy each), and
    ListAttachedRolePolicies (paged)."""
    role = iam.get_role(RoleName=name)["Role"]
    inline = {}
    for page in iam.get_paginator("list_role_policies").paginate(RoleName=name):
        for policy in page["PolicyNames"]:
            inline[policy] = iam.get_role_policy(RoleName=name,
                                                 PolicyName=policy)["PolicyDocument"]
    attached = [a["PolicyArn"] for page in iam.get_paginator(
        "list_attached_role_policies").paginate(RoleName=name) for a in page["AttachedPolicies"]]
    return {"arn": role["Arn"], "create_date": role["CreateDate"],
            "unique_id": role["RoleId"], "path": role["Path"],
            "max_session_duration": role["MaxSessionDuration"],
            "description": role.get("Description", ""),
            "assume_role_policy": role["AssumeRolePolicyDocument"], "inline": inline,
            "managed": attached, "tags": role.get("Tags", [])}


def attachment_exists(iam, role: str, arn: str) -> bool:
    """RoleHasPolicyARNAttachment: ListAttachedRolePolicies pages, looking for the ARN."""
    return any(a["PolicyArn"] == arn for page in iam.get_paginator(
        "list_attached_role_policies").paginate(RoleName=role) for a in page["AttachedPolicies"])


def raw_get_role(server: LiveServer, name: str) -> str:
    body = urllib.parse.urlencode({"Action": "GetRole", "Version": "2010-05-08",
                                   "RoleName": name}).encode()
    request = urllib.request.Request(server.endpoint + "/", data=body, headers={
        "Content-Type": "application/x-www-form-urlencoded; charset=utf-8",
        "Authorization": "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/iam/aws4_request"
                         ", SignedHeaders=host, Signature=00"})
    with urllib.request.urlopen(request, timeout=30) as resp:
        return resp.read().decode()


def test_iam_role_with_policy_attachment(server: LiveServer) -> None:
    account = provider_start(server)
    iam = server.client("iam")

    # apply: aws_iam_role.fn
    created = iam.create_role(RoleName="tf-fn", Path="/", AssumeRolePolicyDocument=TRUST,
                              MaxSessionDuration=3600,
                              Tags=[{"Key": "managed-by", "Value": "terraform"}])["Role"]
    assert created["Arn"] == f"arn:aws:iam::{account}:role/tf-fn"
    state = read_role(iam, "tf-fn")
    assert state["arn"] == created["Arn"] and state["unique_id"] == created["RoleId"]
    assert state["assume_role_policy"] == json.loads(TRUST)
    # Go's url.QueryUnescape reads the wire form: the document must survive it exactly
    raw = raw_get_role(server, "tf-fn")
    wire = raw.split("<AssumeRolePolicyDocument>")[1].split("</AssumeRolePolicyDocument>")[0]
    assert json.loads(urllib.parse.unquote_plus(wire)) == json.loads(TRUST)

    # apply: aws_iam_role_policy_attachment.basic (depends on the role)
    iam.attach_role_policy(RoleName="tf-fn", PolicyArn=BASIC)
    assert attachment_exists(iam, "tf-fn", BASIC)

    # plan: refresh reads everything again; nothing may differ from what apply saw
    provider_start(server)
    again = read_role(iam, "tf-fn")
    assert {k: v for k, v in again.items() if k != "managed"} == \
        {k: v for k, v in state.items() if k != "managed"}
    assert again["managed"] == [BASIC]
    assert attachment_exists(iam, "tf-fn", BASIC)

    # destroy, in dependency order: the attachment, then the role
    iam.detach_role_policy(RoleName="tf-fn", PolicyArn=BASIC)
    # DeleteRole (managed_policy_arns/inline_policy unset): instance profiles first
    assert iam.list_instance_profiles_for_role(RoleName="tf-fn")["InstanceProfiles"] == []
    iam.delete_role(RoleName="tf-fn")
    # a refresh after destroy sees NoSuchEntity, which the provider takes as "gone"
    assert code_of(iam.get_role, RoleName="tf-fn") == "NoSuchEntity"
    assert code_of(iam.list_attached_role_policies, RoleName="tf-fn") == "NoSuchEntity"
    assert code_of(iam.detach_role_policy, RoleName="tf-fn", PolicyArn=BASIC) == "NoSuchEntity"


def test_role_with_inline_and_managed_policies_destroys_in_the_providers_order(
        server: LiveServer) -> None:
    """managed_policy_arns + inline_policy on aws_iam_role: destroy lists and detaches the
    managed ones, lists and deletes the inline ones, then DeleteRole succeeds (no
    DeleteConflict for the provider to retry on)."""
    iam = server.client("iam")
    iam.create_role(RoleName="tf-full", AssumeRolePolicyDocument=TRUST)
    iam.put_role_policy(RoleName="tf-full", PolicyName="logs", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "logs:*",
                                                "Resource": "*"}]}))
    iam.attach_role_policy(RoleName="tf-full", PolicyArn=BASIC)
    state = read_role(iam, "tf-full")
    assert list(state["inline"]) == ["logs"] and state["managed"] == [BASIC]
    assert code_of(iam.delete_role, RoleName="tf-full") == "DeleteConflict"

    assert iam.list_instance_profiles_for_role(RoleName="tf-full")["InstanceProfiles"] == []
    for arn in read_role(iam, "tf-full")["managed"]:
        iam.detach_role_policy(RoleName="tf-full", PolicyArn=arn)
    for page in iam.get_paginator("list_role_policies").paginate(RoleName="tf-full"):
        for name in page["PolicyNames"]:
            iam.delete_role_policy(RoleName="tf-full", PolicyName=name)
    iam.delete_role(RoleName="tf-full")
    assert code_of(iam.list_instance_profiles_for_role, RoleName="tf-full") == "NoSuchEntity"


def ec2_code(call, **kwargs) -> tuple[str, str]:
    with pytest.raises(ClientError) as err:
        call(**kwargs)
    return err.value.response["Error"]["Code"], err.value.response["Error"]["Message"]


def read_security_group(ec2, group_id: str) -> dict:
    """findSecurityGroupByID: DescribeSecurityGroups with GroupIds."""
    return ec2.describe_security_groups(GroupIds=[group_id])["SecurityGroups"][0]


def test_security_group_and_ingress_rule(server: LiveServer) -> None:
    """aws_security_group (vpc_security_group.go) with no inline rules, and
    aws_vpc_security_group_ingress_rule; the VPC is made directly (aws_vpc's own reads —
    DescribeVpcAttribute, the main route table, the default network ACL — are not replayed)."""
    ec2 = server.ec2()
    vpc = ec2.create_vpc(CidrBlock="10.77.0.0/16")["Vpc"]["VpcId"]

    # apply: aws_security_group.fn
    group = ec2.create_security_group(
        GroupName="tf-fn", Description="Managed by Terraform", VpcId=vpc,
        TagSpecifications=[{"ResourceType": "security-group",
                            "Tags": [{"Key": "Name", "Value": "tf-fn"}]}])["GroupId"]
    assert read_security_group(ec2, group)["GroupId"] == group  # waitSecurityGroupCreated
    # the default allow-all egress rules are revoked: IPv4 must succeed …
    ec2.revoke_security_group_egress(GroupId=group, IpPermissions=[{
        "IpProtocol": "-1", "FromPort": 0, "ToPort": 0, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
    # … and IPv6 may only fail with InvalidPermission.NotFound or an InvalidParameterValue
    # about remote-ipv6-range (anything else fails the apply)
    try:
        ec2.revoke_security_group_egress(GroupId=group, IpPermissions=[{
            "IpProtocol": "-1", "FromPort": 0, "ToPort": 0,
            "Ipv6Ranges": [{"CidrIpv6": "::/0"}]}])
    except ClientError as err:
        code = err.response["Error"]["Code"]
        message = err.response["Error"]["Message"]
        assert code == "InvalidPermission.NotFound" or (
            code == "InvalidParameterValue" and "remote-ipv6-range" in message), (code, message)
    state = read_security_group(ec2, group)  # update → read
    assert state["IpPermissions"] == [] and state["IpPermissionsEgress"] == []
    assert (state["GroupName"], state["Description"], state["VpcId"]) == \
        ("tf-fn", "Managed by Terraform", vpc)

    # apply: aws_vpc_security_group_ingress_rule.http
    rule = ec2.authorize_security_group_ingress(
        GroupId=group, IpPermissions=[{"IpProtocol": "tcp", "FromPort": 8080, "ToPort": 8080,
                                       "IpRanges": [{"CidrIp": "10.77.0.0/16"}]}],
        TagSpecifications=[{"ResourceType": "security-group-rule",
                            "Tags": [{"Key": "Name", "Value": "http"}]}]
    )["SecurityGroupRules"][0]
    rule_id = rule["SecurityGroupRuleId"]
    read = ec2.describe_security_group_rules(SecurityGroupRuleIds=[rule_id])[
        "SecurityGroupRules"][0]
    assert (read["GroupId"], read["IsEgress"], read["IpProtocol"], read["FromPort"],
            read["ToPort"], read["CidrIpv4"]) == (group, False, "tcp", 8080, 8080,
                                                  "10.77.0.0/16")
    assert {"Key": "Name", "Value": "http"} in read["Tags"]

    # plan: both reads return what apply saw
    assert read_security_group(ec2, group)["IpPermissionsEgress"] == []
    assert ec2.describe_security_group_rules(SecurityGroupRuleIds=[rule_id])[
        "SecurityGroupRules"][0] == read

    # destroy: the rule (by id), then the group
    ec2.revoke_security_group_ingress(GroupId=group, SecurityGroupRuleIds=[rule_id])
    assert ec2_code(ec2.describe_security_group_rules,
                    SecurityGroupRuleIds=[rule_id])[0] == "InvalidSecurityGroupRuleId.NotFound"
    # deleteLingeringENIs: none use the group
    assert ec2.describe_network_interfaces(Filters=[
        {"Name": "group-id", "Values": [group]}])["NetworkInterfaces"] == []
    ec2.delete_security_group(GroupId=group)
    # RetryUntilNotFound: the provider waits for InvalidGroup.NotFound
    assert ec2_code(read_security_group, ec2=ec2, group_id=group)[0] == "InvalidGroup.NotFound"
    ec2.delete_vpc(VpcId=vpc)


def delete_lingering_enis(ec2, filter_name: str, resource_id: str,
                          patience_s: float = 120.0) -> list[str]:
    """deleteLingeringENIs: each Lambda ENI (Description `AWS Lambda VPC ENI…`) attached by
    `amazon-aws` is polled until `available` (then deleted) or gone (NotFound: nothing to do);
    returns what it saw. The provider waits up to 45 minutes; lambdaplane should need seconds."""
    seen = []
    enis = ec2.describe_network_interfaces(Filters=[
        {"Name": filter_name, "Values": [resource_id]}])["NetworkInterfaces"]
    for eni in enis:
        if not eni.get("Description", "").startswith("AWS Lambda VPC ENI"):
            continue
        eni_id = eni["NetworkInterfaceId"]
        seen.append(eni_id)
        assert eni["InterfaceType"] == "lambda" and eni["RequesterManaged"]
        if (eni.get("Attachment") or {}).get("InstanceOwnerId") == "amazon-aws":
            deadline = time.monotonic() + patience_s
            while True:  # waitNetworkInterfaceAvailableAfterUse
                try:
                    eni = ec2.describe_network_interfaces(
                        NetworkInterfaceIds=[eni_id])["NetworkInterfaces"][0]
                except ClientError as err:
                    assert err.response["Error"]["Code"] == "InvalidNetworkInterfaceID.NotFound"
                    eni = None
                    break
                if eni["Status"] == "available":
                    break
                assert time.monotonic() < deadline, f"{eni_id} still {eni['Status']}"
                time.sleep(0.5)
        if eni is not None:
            assert "Attachment" not in eni  # available: nothing to detach
            ec2.delete_network_interface(NetworkInterfaceId=eni_id)
    return seen


def test_vpc_function_destroy_waits_for_its_eni_in_seconds(server: LiveServer) -> None:
    """aws_lambda_function with vpc_config, destroyed before its aws_security_group and
    aws_subnet: the provider's wait for the Lambda ENI, then the group, subnet and VPC go."""
    ec2, lam = server.ec2(), server.lambda_()
    vpc = ec2.create_vpc(CidrBlock="10.78.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.78.1.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName="tf-vpc-fn", Description="Managed by Terraform",
                                      VpcId=vpc)["GroupId"]
    lam.create_function(FunctionName="tf-vpc-fn", Runtime="python3.11", Handler="app.handler",
                        Role="arn:aws:iam::000000000000:role/lambda",
                        Code={"ZipFile": make_zip({"app.py": "def handler(e, c):\n"
                                                             "    return 1\n"})},
                        VpcConfig={"SubnetIds": [subnet], "SecurityGroupIds": [group]})
    lam.get_waiter("function_active_v2").wait(FunctionName="tf-vpc-fn",
                                              WaiterConfig={"Delay": 0.2, "MaxAttempts": 300})
    assert lam.invoke(FunctionName="tf-vpc-fn")["StatusCode"] == 200
    eni = ec2.describe_network_interfaces(Filters=[
        {"Name": "group-id", "Values": [group]}])["NetworkInterfaces"][0]
    assert eni["Description"].startswith("AWS Lambda VPC ENI")
    assert eni["Attachment"]["InstanceOwnerId"] == "amazon-aws"

    started = time.monotonic()
    lam.delete_function(FunctionName="tf-vpc-fn")  # aws_lambda_function destroy
    assert delete_lingering_enis(ec2, "group-id", group) == [eni["NetworkInterfaceId"]]
    ec2.delete_security_group(GroupId=group)  # no DependencyViolation left to retry on
    delete_lingering_enis(ec2, "subnet-id", subnet)
    ec2.delete_subnet(SubnetId=subnet)
    ec2.delete_vpc(VpcId=vpc)
    elapsed = time.monotonic() - started
    print(f"destroy after the VPC function: {elapsed:.1f} s")  # measured, not asserted
