"""IAM roles and policies and STS through boto3 against a live server: every call, IAM's errors,
state that survives a restart, Lambda refusing a known role that does not trust it, and
GetCallerIdentity in `--auth sigv4` mode naming the credentials file's profile."""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import boto3
import botocore.config
import pytest
from botocore.exceptions import ClientError

from tests.conftest import live_server
from tests.harness import REGION, LiveServer, make_zip

pytestmark = pytest.mark.root

LAMBDA_TRUST = {"Version": "2012-10-17", "Statement": [{
    "Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
    "Action": "sts:AssumeRole"}]}
EC2_TRUST = {"Version": "2012-10-17", "Statement": [{
    "Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"},
    "Action": "sts:AssumeRole"}]}
POLICY = {"Version": "2012-10-17", "Statement": [{
    "Effect": "Allow", "Action": "logs:PutLogEvents", "Resource": "*"}]}
BASIC = "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"


def error(call, **kwargs) -> tuple[int, str, str]:
    with pytest.raises(ClientError) as err:
        call(**kwargs)
    resp = err.value.response
    return resp["ResponseMetadata"]["HTTPStatusCode"], resp["Error"]["Code"], \
        resp["Error"]["Message"]


@pytest.fixture(scope="module")
def iam(server: LiveServer):
    return server.client("iam")


def test_role_lifecycle(server: LiveServer, iam) -> None:
    role = iam.create_role(RoleName="app", Path="/service/", Description="the app",
                           AssumeRolePolicyDocument=json.dumps(LAMBDA_TRUST),
                           Tags=[{"Key": "team", "Value": "a"}])["Role"]
    assert role["Arn"] == "arn:aws:iam::000000000000:role/service/app"
    assert role["RoleId"].startswith("AROA") and len(role["RoleId"]) == 21
    assert role["AssumeRolePolicyDocument"] == LAMBDA_TRUST  # URL-encoded on the wire
    got = iam.get_role(RoleName="app")["Role"]
    assert (got["Description"], got["MaxSessionDuration"], got["Tags"]) == \
        ("the app", 3600, [{"Key": "team", "Value": "a"}])
    assert [r["RoleName"] for r in iam.list_roles()["Roles"]] == ["app"]
    assert iam.list_roles(PathPrefix="/other/")["Roles"] == []

    iam.update_assume_role_policy(RoleName="app", PolicyDocument=json.dumps(EC2_TRUST))
    assert iam.get_role(RoleName="app")["Role"]["AssumeRolePolicyDocument"] == EC2_TRUST
    iam.update_role(RoleName="app", Description="changed", MaxSessionDuration=7200)
    got = iam.get_role(RoleName="app")["Role"]
    assert (got["Description"], got["MaxSessionDuration"]) == ("changed", 7200)

    iam.tag_role(RoleName="app", Tags=[{"Key": "env", "Value": "dev"}])
    assert iam.list_role_tags(RoleName="app")["Tags"] == [
        {"Key": "team", "Value": "a"}, {"Key": "env", "Value": "dev"}]
    iam.untag_role(RoleName="app", TagKeys=["team"])
    assert iam.list_role_tags(RoleName="app")["Tags"] == [{"Key": "env", "Value": "dev"}]

    iam.delete_role(RoleName="app")
    assert error(iam.get_role, RoleName="app")[:2] == (404, "NoSuchEntity")


def test_role_errors(iam) -> None:
    iam.create_role(RoleName="dup", AssumeRolePolicyDocument=json.dumps(LAMBDA_TRUST))
    status, code, message = error(iam.create_role, RoleName="DUP",
                                  AssumeRolePolicyDocument=json.dumps(LAMBDA_TRUST))
    assert (status, code, message) == (409, "EntityAlreadyExists",
                                       "Role with name DUP already exists.")
    assert error(iam.get_role, RoleName="nosuch") == (
        404, "NoSuchEntity", "The role with name nosuch cannot be found.")
    assert error(iam.delete_role, RoleName="nosuch")[1] == "NoSuchEntity"
    assert error(iam.create_role, RoleName="bad", AssumeRolePolicyDocument="{not json")[1:] == \
        ("MalformedPolicyDocument", "This policy contains invalid Json")
    assert error(iam.create_role, RoleName="bad",
                 AssumeRolePolicyDocument=json.dumps({"Statement": []}))[1] == \
        "MalformedPolicyDocument"
    assert error(iam.create_role, RoleName="bad name!",
                 AssumeRolePolicyDocument=json.dumps(LAMBDA_TRUST))[1] == "ValidationError"
    assert error(iam.create_role, RoleName="bad", Path="no-slashes",
                 AssumeRolePolicyDocument=json.dumps(LAMBDA_TRUST))[1] == "ValidationError"
    assert error(iam.update_role, RoleName="dup", MaxSessionDuration=50000)[1] == \
        "ValidationError"
    assert error(iam.update_assume_role_policy, RoleName="dup",
                 PolicyDocument="[]")[1] == "MalformedPolicyDocument"
    iam.delete_role(RoleName="dup")


def test_inline_policies_and_delete_conflict(iam) -> None:
    iam.create_role(RoleName="inl", AssumeRolePolicyDocument=json.dumps(LAMBDA_TRUST))
    iam.put_role_policy(RoleName="inl", PolicyName="logs", PolicyDocument=json.dumps(POLICY))
    got = iam.get_role_policy(RoleName="inl", PolicyName="logs")
    assert (got["RoleName"], got["PolicyName"], got["PolicyDocument"]) == ("inl", "logs", POLICY)
    assert iam.list_role_policies(RoleName="inl")["PolicyNames"] == ["logs"]
    assert error(iam.delete_role, RoleName="inl") == (
        409, "DeleteConflict", "Cannot delete entity, must delete policies first.")
    assert error(iam.get_role_policy, RoleName="inl", PolicyName="other")[:2] == \
        (404, "NoSuchEntity")
    assert error(iam.put_role_policy, RoleName="inl", PolicyName="x",
                 PolicyDocument="nope")[1] == "MalformedPolicyDocument"
    iam.delete_role_policy(RoleName="inl", PolicyName="logs")
    assert error(iam.delete_role_policy, RoleName="inl", PolicyName="logs")[1] == "NoSuchEntity"
    iam.delete_role(RoleName="inl")


def test_managed_policies_and_attachments(iam) -> None:
    iam.create_role(RoleName="att", AssumeRolePolicyDocument=json.dumps(LAMBDA_TRUST))
    policy = iam.create_policy(PolicyName="mine", Description="d",
                               PolicyDocument=json.dumps(POLICY))["Policy"]
    arn = policy["Arn"]
    assert arn == "arn:aws:iam::000000000000:policy/mine"
    assert (policy["DefaultVersionId"], policy["AttachmentCount"]) == ("v1", 0)
    assert error(iam.create_policy, PolicyName="mine",
                 PolicyDocument=json.dumps(POLICY))[:2] == (409, "EntityAlreadyExists")
    version = iam.get_policy_version(PolicyArn=arn, VersionId="v1")["PolicyVersion"]
    assert version["Document"] == POLICY and version["IsDefaultVersion"]
    assert error(iam.get_policy_version, PolicyArn=arn, VersionId="v9")[1] == "NoSuchEntity"

    iam.attach_role_policy(RoleName="att", PolicyArn=arn)
    iam.attach_role_policy(RoleName="att", PolicyArn=BASIC)  # AWS-managed: accepted by ARN
    assert iam.list_attached_role_policies(RoleName="att")["AttachedPolicies"] == [
        {"PolicyName": "mine", "PolicyArn": arn},
        {"PolicyName": "AWSLambdaBasicExecutionRole", "PolicyArn": BASIC}]
    assert iam.get_policy(PolicyArn=arn)["Policy"]["AttachmentCount"] == 1
    assert iam.get_policy(PolicyArn=BASIC)["Policy"]["PolicyName"] == \
        "AWSLambdaBasicExecutionRole"
    local = iam.list_policies(Scope="Local")["Policies"]
    assert [p["Arn"] for p in local] == [arn]
    assert BASIC in [p["Arn"] for p in iam.list_policies(Scope="AWS", OnlyAttached=True)
                     ["Policies"]]
    assert error(iam.attach_role_policy, RoleName="att",
                 PolicyArn="arn:aws:iam::000000000000:policy/nosuch") == (
        404, "NoSuchEntity",
        "Policy arn:aws:iam::000000000000:policy/nosuch does not exist or is not attachable.")
    assert error(iam.delete_role, RoleName="att") == (
        409, "DeleteConflict", "Cannot delete entity, must detach all policies first.")
    assert error(iam.delete_policy, PolicyArn=arn)[:2] == (409, "DeleteConflict")

    iam.detach_role_policy(RoleName="att", PolicyArn=arn)
    iam.detach_role_policy(RoleName="att", PolicyArn=BASIC)
    assert error(iam.detach_role_policy, RoleName="att", PolicyArn=BASIC)[1] == "NoSuchEntity"
    assert iam.list_attached_role_policies(RoleName="att")["AttachedPolicies"] == []
    iam.delete_policy(PolicyArn=arn)
    assert error(iam.get_policy, PolicyArn=arn)[:2] == (404, "NoSuchEntity")
    iam.delete_role(RoleName="att")


def test_paging(iam) -> None:
    for i in range(5):
        iam.create_role(RoleName=f"page{i}", Path="/paging/",
                        AssumeRolePolicyDocument=json.dumps(LAMBDA_TRUST))
    first = iam.list_roles(PathPrefix="/paging/", MaxItems=2)
    assert first["IsTruncated"] and len(first["Roles"]) == 2
    names = [r["RoleName"] for r in first["Roles"]]
    pages = iam.get_paginator("list_roles").paginate(
        PathPrefix="/paging/",
        PaginationConfig={"PageSize": 2, "StartingToken": first["Marker"]})
    names += [r["RoleName"] for page in pages for r in page["Roles"]]
    assert names == [f"page{i}" for i in range(5)]
    for i in range(5):
        iam.delete_role(RoleName=f"page{i}")


def test_sts(server: LiveServer, iam) -> None:
    sts = server.client("sts")
    me = sts.get_caller_identity()
    assert (me["Account"], me["Arn"]) == ("000000000000", "arn:aws:iam::000000000000:root")
    role = iam.create_role(RoleName="assumable",
                           AssumeRolePolicyDocument=json.dumps(LAMBDA_TRUST))["Role"]
    got = sts.assume_role(RoleArn=role["Arn"], RoleSessionName="s1", DurationSeconds=900)
    assert got["AssumedRoleUser"]["Arn"] == \
        "arn:aws:sts::000000000000:assumed-role/assumable/s1"
    assert got["Credentials"]["AccessKeyId"].startswith("ASIA")
    session = boto3.client("sts", endpoint_url=server.endpoint, region_name=REGION,
                           aws_access_key_id=got["Credentials"]["AccessKeyId"],
                           aws_secret_access_key=got["Credentials"]["SecretAccessKey"],
                           aws_session_token=got["Credentials"]["SessionToken"])
    assert session.get_caller_identity()["Arn"] == got["AssumedRoleUser"]["Arn"]
    assert error(sts.assume_role, RoleArn="arn:aws:iam::000000000000:role/nosuch",
                 RoleSessionName="s1")[:2] == (403, "AccessDenied")
    assert error(sts.assume_role, RoleArn=role["Arn"], RoleSessionName="s1",
                 DurationSeconds=7200)[1] == "ValidationError"
    iam.delete_role(RoleName="assumable")


def test_create_function_with_a_role_lambda_cannot_assume(server: LiveServer, iam) -> None:
    lam = server.lambda_()
    untrusting = iam.create_role(RoleName="for-ec2",
                                 AssumeRolePolicyDocument=json.dumps(EC2_TRUST))["Role"]["Arn"]
    code = {"ZipFile": make_zip({"app.py": "def handler(e, c):\n    return 1\n"})}
    status, kind, message = error(lam.create_function, FunctionName="nope",
                                  Runtime="python3.11", Handler="app.handler",
                                  Role=untrusting, Code=code)
    assert (status, kind, message) == (400, "InvalidParameterValueException",
                                       "The role defined for the function cannot be assumed "
                                       "by Lambda.")
    trusting = iam.create_role(RoleName="for-lambda",
                               AssumeRolePolicyDocument=json.dumps(LAMBDA_TRUST))["Role"]["Arn"]
    lam.create_function(FunctionName="yes", Runtime="python3.11", Handler="app.handler",
                        Role=trusting, Code=code)
    assert error(lam.update_function_configuration, FunctionName="yes",
                 Role=untrusting)[1] == "InvalidParameterValueException"
    # a role IAM here does not know is accepted, as before
    lam.create_function(FunctionName="unknown-role", Runtime="python3.11",
                        Handler="app.handler", Role="arn:aws:iam::000000000000:role/elsewhere",
                        Code=code)
    for name in ("yes", "unknown-role"):
        lam.delete_function(FunctionName=name)
    for name in ("for-ec2", "for-lambda"):
        iam.delete_role(RoleName=name)


def test_iam_state_survives_a_restart(fresh_server: LiveServer) -> None:
    iam = fresh_server.client("iam")
    iam.create_role(RoleName="kept", AssumeRolePolicyDocument=json.dumps(LAMBDA_TRUST))
    iam.put_role_policy(RoleName="kept", PolicyName="p", PolicyDocument=json.dumps(POLICY))
    arn = iam.create_policy(PolicyName="kept-policy",
                            PolicyDocument=json.dumps(POLICY))["Policy"]["Arn"]
    iam.attach_role_policy(RoleName="kept", PolicyArn=arn)
    fresh_server.restart()
    iam = fresh_server.client("iam")
    assert iam.get_role(RoleName="kept")["Role"]["AssumeRolePolicyDocument"] == LAMBDA_TRUST
    assert iam.list_role_policies(RoleName="kept")["PolicyNames"] == ["p"]
    assert iam.list_attached_role_policies(RoleName="kept")["AttachedPolicies"][0][
        "PolicyArn"] == arn


@pytest.fixture(scope="module")
def sigv4_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    base: Path = tmp_path_factory.mktemp("lpsts")
    creds = base / "credentials"
    creds.write_text("[default]\naws_access_key_id = AKIDROOT0000\naws_secret_access_key = s1\n"
                     "[deployer]\naws_access_key_id = AKIDDEPLOYER\naws_secret_access_key = s2\n")
    yield from live_server(base, "--auth", "sigv4", "--credentials", str(creds))


def test_caller_identity_from_the_credentials_file(sigv4_server: LiveServer) -> None:
    def sts(key: str, secret: str):
        return boto3.client("sts", endpoint_url=sigv4_server.endpoint, region_name=REGION,
                            aws_access_key_id=key, aws_secret_access_key=secret,
                            config=botocore.config.Config(retries={"max_attempts": 1}))

    assert sts("AKIDROOT0000", "s1").get_caller_identity()["Arn"] == \
        "arn:aws:iam::000000000000:root"
    me = sts("AKIDDEPLOYER", "s2").get_caller_identity()
    assert (me["Account"], me["Arn"]) == ("000000000000",
                                          "arn:aws:iam::000000000000:user/deployer")
    assert me["UserId"].startswith("AIDA")
    # refused before STS answers, with STS's own codes
    assert error(sts("AKIDDEPLOYER", "wrong").get_caller_identity)[:2] == \
        (403, "SignatureDoesNotMatch")
    assert error(sts("AKIDNOSUCH", "x").get_caller_identity) == \
        (403, "InvalidClientTokenId", "The security token included in the request is invalid.")
    iam = boto3.client("iam", endpoint_url=sigv4_server.endpoint, region_name=REGION,
                       aws_access_key_id="AKIDDEPLOYER", aws_secret_access_key="s2")
    assert iam.list_roles()["Roles"] == []  # signed for "iam": the scope check follows
    # AssumeRole's temporary keys sign requests like the file's keys
    role = iam.create_role(RoleName="deploy", AssumeRolePolicyDocument=json.dumps(
        LAMBDA_TRUST))["Role"]
    got = sts("AKIDDEPLOYER", "s2").assume_role(RoleArn=role["Arn"], RoleSessionName="ci",
                                                DurationSeconds=900)["Credentials"]
    session = boto3.client("sts", endpoint_url=sigv4_server.endpoint, region_name=REGION,
                           aws_access_key_id=got["AccessKeyId"],
                           aws_secret_access_key=got["SecretAccessKey"],
                           aws_session_token=got["SessionToken"])
    assert session.get_caller_identity()["Arn"] == \
        "arn:aws:sts::000000000000:assumed-role/deploy/ci"
    assert error(sts(got["AccessKeyId"], "not-its-secret").get_caller_identity)[1] == \
        "SignatureDoesNotMatch"
    iam.delete_role(RoleName="deploy")
    # a well-signed request for a service not served here: the JSON answer, not an auth error
    dynamodb = boto3.client("dynamodb", endpoint_url=sigv4_server.endpoint, region_name=REGION,
                            aws_access_key_id="AKIDDEPLOYER", aws_secret_access_key="s2",
                            config=botocore.config.Config(retries={"max_attempts": 1}))
    assert error(dynamodb.list_tables)[:2] == (404, "UnknownServiceException")
    # an IAM request signed for STS (both served) is refused as IAM refuses a wrong scope
    signer = iam._request_signer  # noqa: SLF001
    signer._signing_name = "sts"  # noqa: SLF001
    status, code, message = error(iam.list_roles)
    assert (status, code) == (403, "SignatureDoesNotMatch")
    assert "scoped to correct service: 'iam'" in message
    ec2 = boto3.client("ec2", endpoint_url=sigv4_server.endpoint, region_name=REGION,
                       aws_access_key_id="AKIDDEPLOYER", aws_secret_access_key="s2")
    ec2._request_signer._signing_name = "iam"  # noqa: SLF001
    assert error(ec2.describe_vpcs)[:2] == (401, "AuthFailure")
