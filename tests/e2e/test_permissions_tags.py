"""Tags, the settings tools read around a function (code signing, account settings, runtime
management, recursion, provisioned concurrency and event source mapping lists), an operation
lambdaplane does not serve, and resource policies (AddPermission / RemovePermission /
GetPolicy), end to end through boto3 with AWS's errors."""
from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from botocore.exceptions import ClientError

from tests.conftest import live_server
from tests.harness import LiveServer, create_python_function

pytestmark = pytest.mark.root

ACCOUNT = "000000000000"
CODE = "def handler(event, context):\n    return event\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    yield from live_server(tmp_path_factory.mktemp("lptags"))


def _error(call) -> dict:
    with pytest.raises(ClientError) as err:
        call()
    return err.value.response


def _arn(name: str, qualifier: str | None = None) -> str:
    base = f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:{name}"
    return f"{base}:{qualifier}" if qualifier else base


def test_tags(server: LiveServer) -> None:
    lam = server.lambda_()
    create_python_function(lam, "tagged", CODE, Tags={"team": "a", "env": "dev"})
    arn = _arn("tagged")
    assert lam.list_tags(Resource=arn)["Tags"] == {"team": "a", "env": "dev"}
    before = lam.get_function_configuration(FunctionName="tagged")["RevisionId"]
    lam.tag_resource(Resource=arn, Tags={"env": "prod", "cost": "42"})
    assert lam.list_tags(Resource=arn)["Tags"] == {"team": "a", "env": "prod", "cost": "42"}
    assert lam.get_function(FunctionName="tagged")["Tags"] == \
        {"team": "a", "env": "prod", "cost": "42"}
    lam.untag_resource(Resource=arn, TagKeys=["team", "absent"])
    assert lam.list_tags(Resource=arn)["Tags"] == {"env": "prod", "cost": "42"}
    assert lam.get_function_configuration(FunctionName="tagged")["RevisionId"] == before

    def code(call) -> str:
        return _error(call)["Error"]["Code"]

    too_many = {f"k{i}": "v" for i in range(49)}
    assert code(lambda: lam.tag_resource(Resource=arn, Tags=too_many)) == \
        "InvalidParameterValueException"  # 51 with the two it has
    assert code(lambda: lam.tag_resource(Resource=arn, Tags={"aws:x": "1"})) == \
        "InvalidParameterValueException"
    assert code(lambda: lam.tag_resource(Resource=arn, Tags={"k" * 129: "1"})) == \
        "ValidationException"
    assert code(lambda: lam.tag_resource(Resource=arn, Tags={"k": "v" * 257})) == \
        "ValidationException"
    assert code(lambda: lam.list_tags(Resource=_arn("no-such"))) == "ResourceNotFoundException"
    assert code(lambda: lam.list_tags(Resource="tagged")) == "ValidationException"
    assert code(lambda: lam.list_tags(Resource=_arn("tagged", "1"))) == \
        "InvalidParameterValueException"
    assert code(lambda: create_python_function(
        lam, "tagged-2", CODE, Tags={f"k{i}": "v" for i in range(51)})) == \
        "InvalidParameterValueException"
    assert code(lambda: lam.get_function(FunctionName="tagged-2")) == \
        "ResourceNotFoundException"
    lam.delete_function(FunctionName="tagged")


def test_what_tools_read_around_a_function(server: LiveServer) -> None:
    lam = server.lambda_()
    create_python_function(lam, "around", CODE, Publish=True)
    signing = lam.get_function_code_signing_config(FunctionName="around")
    assert signing["FunctionName"] == "around" and signing["CodeSigningConfigArn"] == ""
    lam.delete_function_code_signing_config(FunctionName="around")
    assert lam.list_code_signing_configs()["CodeSigningConfigs"] == []
    assert _error(lambda: lam.get_function_code_signing_config(FunctionName="nope"))[
        "Error"]["Code"] == "ResourceNotFoundException"

    settings = lam.get_account_settings()
    assert settings["AccountUsage"]["FunctionCount"] >= 1
    code_size = lam.get_function_configuration(FunctionName="around")["CodeSize"]
    assert settings["AccountUsage"]["TotalCodeSize"] >= 2 * code_size  # $LATEST + version 1

    runtime = lam.get_runtime_management_config(FunctionName="around")
    assert runtime["UpdateRuntimeOn"] == "Auto" and runtime["FunctionArn"] == _arn("around")
    version_arn = ("arn:aws:lambda:us-east-1::runtime:"
                   "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")
    put = lam.put_runtime_management_config(FunctionName="around", Qualifier="1",
                                            UpdateRuntimeOn="Manual",
                                            RuntimeVersionArn=version_arn)
    assert put["FunctionArn"] == _arn("around", "1") and put["RuntimeVersionArn"] == version_arn
    got = lam.get_runtime_management_config(FunctionName="around", Qualifier="1")
    assert got["UpdateRuntimeOn"] == "Manual" and got["RuntimeVersionArn"] == version_arn
    assert lam.get_runtime_management_config(FunctionName="around")["UpdateRuntimeOn"] == \
        "Auto"
    err = _error(lambda: lam.put_runtime_management_config(FunctionName="around",
                                                           UpdateRuntimeOn="Manual"))
    assert err["Error"]["Code"] == "InvalidParameterValueException"

    assert lam.get_function_recursion_config(FunctionName="around")["RecursiveLoop"] == \
        "Terminate"
    assert lam.put_function_recursion_config(FunctionName="around", RecursiveLoop="Allow")[
        "RecursiveLoop"] == "Allow"
    assert lam.get_function_recursion_config(FunctionName="around")["RecursiveLoop"] == "Allow"
    assert _error(lambda: lam.put_function_recursion_config(
        FunctionName="around", RecursiveLoop="Sometimes"))["Error"]["Code"] == \
        "ValidationException"

    assert lam.list_provisioned_concurrency_configs(FunctionName="around")[
        "ProvisionedConcurrencyConfigs"] == []
    assert _error(lambda: lam.get_provisioned_concurrency_config(
        FunctionName="around", Qualifier="1"))["Error"]["Code"] == \
        "ProvisionedConcurrencyConfigNotFoundException"
    assert lam.list_event_source_mappings(FunctionName="around")["EventSourceMappings"] == []
    lam.delete_function(FunctionName="around")


def test_an_operation_lambdaplane_does_not_serve_is_named(server: LiveServer) -> None:
    lam = server.lambda_()
    err = _error(lambda: lam.list_capacity_providers())
    assert err["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert err["Error"]["Code"] == "UnknownOperationException"
    assert "ListCapacityProviders" in err["Error"]["Message"]
    # a path no operation has is still AWS's 404
    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(server.endpoint + "/2015-03-31/nothing-here", timeout=10)
    assert raised.value.code == 404
    assert json.loads(raised.value.read())["Type"] == "User"


def test_resource_policies(server: LiveServer) -> None:
    lam = server.lambda_()
    create_python_function(lam, "policed", CODE, Publish=True)
    lam.create_alias(FunctionName="policed", Name="live", FunctionVersion="1")
    err = _error(lambda: lam.get_policy(FunctionName="policed"))
    assert err["Error"]["Code"] == "ResourceNotFoundException"

    added = lam.add_permission(FunctionName="policed", StatementId="s3", Action=
                               "lambda:InvokeFunction", Principal="s3.amazonaws.com",
                               SourceArn="arn:aws:s3:::my-bucket", SourceAccount="123456789012")
    assert json.loads(added["Statement"]) == {
        "Sid": "s3", "Effect": "Allow", "Principal": {"Service": "s3.amazonaws.com"},
        "Action": "lambda:InvokeFunction", "Resource": _arn("policed"),
        "Condition": {"StringEquals": {"AWS:SourceAccount": "123456789012"},
                      "ArnLike": {"AWS:SourceArn": "arn:aws:s3:::my-bucket"}}}
    lam.add_permission(FunctionName="policed", StatementId="acct", Action="lambda:GetFunction",
                       Principal="111122223333", PrincipalOrgID="o-abcdefghij")
    lam.add_permission(FunctionName="policed", StatementId="url", Action=
                       "lambda:InvokeFunctionUrl", Principal="*", FunctionUrlAuthType="NONE")
    got = lam.get_policy(FunctionName="policed")
    policy = json.loads(got["Policy"])
    assert policy["Version"] == "2012-10-17" and policy["Id"] == "default"
    assert [s["Sid"] for s in policy["Statement"]] == ["s3", "acct", "url"]
    assert policy["Statement"][1]["Principal"] == {"AWS": "arn:aws:iam::111122223333:root"}
    assert policy["Statement"][1]["Condition"] == {
        "StringEquals": {"aws:PrincipalOrgID": "o-abcdefghij"}}
    assert policy["Statement"][2]["Principal"] == "*"
    assert policy["Statement"][2]["Condition"] == {
        "StringEquals": {"lambda:FunctionUrlAuthType": "NONE"}}

    # per qualifier: the alias has its own policy, on its own ARN
    lam.add_permission(FunctionName="policed", Qualifier="live", StatementId="s3",
                       Action="lambda:InvokeFunction", Principal="sns.amazonaws.com")
    alias_policy = json.loads(lam.get_policy(FunctionName="policed:live")["Policy"])
    assert [s["Resource"] for s in alias_policy["Statement"]] == [_arn("policed", "live")]
    assert len(json.loads(lam.get_policy(FunctionName="policed")["Policy"])["Statement"]) == 3

    def code(call) -> str:
        return _error(call)["Error"]["Code"]

    assert code(lambda: lam.add_permission(
        FunctionName="policed", StatementId="s3", Action="lambda:InvokeFunction",
        Principal="s3.amazonaws.com")) == "ResourceConflictException"
    assert code(lambda: lam.add_permission(
        FunctionName="policed", StatementId="new", Action="lambda:InvokeFunction",
        Principal="s3.amazonaws.com", RevisionId="stale")) == "PreconditionFailedException"
    assert code(lambda: lam.add_permission(
        FunctionName="policed", StatementId="bad sid", Action="lambda:InvokeFunction",
        Principal="s3.amazonaws.com")) == "ValidationException"
    assert code(lambda: lam.add_permission(
        FunctionName="policed", StatementId="x", Action="lambda:InvokeFunction",
        Principal="s3.amazonaws.com", Qualifier="9")) == "ResourceNotFoundException"
    assert code(lambda: lam.add_permission(
        FunctionName="nope", StatementId="x", Action="lambda:InvokeFunction",
        Principal="s3.amazonaws.com")) == "ResourceNotFoundException"
    assert code(lambda: lam.remove_permission(FunctionName="policed", StatementId="absent")) \
        == "ResourceNotFoundException"
    assert code(lambda: lam.remove_permission(FunctionName="policed", StatementId="s3",
                                              RevisionId="stale")) == \
        "PreconditionFailedException"

    lam.remove_permission(FunctionName="policed", StatementId="s3",
                          RevisionId=lam.get_policy(FunctionName="policed")["RevisionId"])
    assert [s["Sid"] for s in json.loads(lam.get_policy(FunctionName="policed")["Policy"])[
        "Statement"]] == ["acct", "url"]
    lam.remove_permission(FunctionName="policed", StatementId="acct")
    lam.remove_permission(FunctionName="policed", StatementId="url")
    assert code(lambda: lam.get_policy(FunctionName="policed")) == "ResourceNotFoundException"
    # a deleted alias takes its policy along
    lam.delete_alias(FunctionName="policed", Name="live")
    lam.create_alias(FunctionName="policed", Name="live", FunctionVersion="1")
    assert code(lambda: lam.get_policy(FunctionName="policed", Qualifier="live")) == \
        "ResourceNotFoundException"
    lam.delete_function(FunctionName="policed")
