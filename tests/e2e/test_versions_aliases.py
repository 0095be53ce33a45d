"""Versions and aliases end to end through boto3: PublishVersion (and Publish=true),
ListVersionsByFunction, qualified reads, invokes and deletes, X-Amz-Executed-Version, the
version and invoked ARN a function sees, RevisionId/CodeSha256 preconditions, aliases with
weighted routing measured over 1,000 real invokes, AWS's errors, and a version keeping its
Hyperplane ENI after $LATEST leaves the VPC."""
from __future__ import annotations

import concurrent.futures
import json
from collections import Counter
from collections.abc import Iterator

import pytest
from botocore.exceptions import ClientError

from tests.conftest import live_server
from tests.e2e.vpc_support import wait_until
from tests.harness import LiveServer, create_python_function, make_zip

pytestmark = pytest.mark.root

ACCOUNT = "000000000000"
WAIT = {"Delay": 0.2, "MaxAttempts": 150}
CODE = """
import os
LABEL = {label!r}
def handler(event, context):
    return {{"label": LABEL, "version": os.environ["AWS_LAMBDA_FUNCTION_VERSION"],
            "ctx_version": context.function_version,
            "arn": context.invoked_function_arn}}
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    yield from live_server(tmp_path_factory.mktemp("lpver"))


def _error(call) -> dict:
    with pytest.raises(ClientError) as err:
        call()
    return err.value.response


def _code(label: str) -> bytes:
    return make_zip({"app.py": CODE.format(label=label)})


def _invoke(lam, name: str, qualifier: str | None = None) -> tuple[dict, dict]:
    kwargs = {"Qualifier": qualifier} if qualifier else {}
    resp = lam.invoke(FunctionName=name, **kwargs)
    body = json.loads(resp["Payload"].read())
    assert "FunctionError" not in resp, body
    return resp, body


def _arn(name: str, qualifier: str | None = None) -> str:
    base = f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:{name}"
    return f"{base}:{qualifier}" if qualifier else base


def test_publish_list_get_invoke_and_delete_versions(server: LiveServer) -> None:
    lam = server.lambda_()
    created = create_python_function(lam, "ver", CODE.format(label="one"), Publish=True)
    assert created["Version"] == "1" and created["FunctionArn"] == _arn("ver", "1")
    # unchanged code and configuration: PublishVersion returns the last version
    assert lam.publish_version(FunctionName="ver")["Version"] == "1"
    lam.update_function_code(FunctionName="ver", ZipFile=_code("two"))
    lam.get_waiter("function_updated_v2").wait(FunctionName="ver", WaiterConfig=WAIT)
    latest = lam.get_function_configuration(FunctionName="ver")
    two = lam.publish_version(FunctionName="ver", Description="second",
                              CodeSha256=latest["CodeSha256"],
                              RevisionId=latest["RevisionId"])
    assert two["Version"] == "2" and two["Description"] == "second"
    assert two["CodeSha256"] == latest["CodeSha256"] and two["State"] == "Active"
    versions = lam.list_versions_by_function(FunctionName="ver")["Versions"]
    assert [v["Version"] for v in versions] == ["$LATEST", "1", "2"]
    assert versions[1]["FunctionArn"] == _arn("ver", "1")
    assert versions[0]["FunctionArn"] == _arn("ver", "$LATEST")
    page = lam.list_versions_by_function(FunctionName="ver", MaxItems=2)
    assert len(page["Versions"]) == 2 and page["NextMarker"]
    rest = lam.list_versions_by_function(FunctionName="ver", Marker=page["NextMarker"])
    assert [v["Version"] for v in rest["Versions"]] == ["2"]

    # qualified reads: Qualifier, or a qualified name / ARN
    assert lam.get_function(FunctionName="ver", Qualifier="1")["Configuration"]["Version"] == "1"
    assert lam.get_function_configuration(FunctionName=_arn("ver", "2"))["Version"] == "2"
    assert lam.get_function_configuration(FunctionName="ver:1")["CodeSha256"] == \
        created["CodeSha256"]

    # each version runs its own code, sees its version and the ARN it was invoked by
    resp, body = _invoke(lam, "ver", "1")
    assert resp["ExecutedVersion"] == "1"
    assert body == {"label": "one", "version": "1", "ctx_version": "1",
                    "arn": _arn("ver", "1")}
    resp, body = _invoke(lam, _arn("ver", "2"))
    assert resp["ExecutedVersion"] == "2" and body["label"] == "two" and body["version"] == "2"
    resp, body = _invoke(lam, "ver")
    assert resp["ExecutedVersion"] == "$LATEST" and body["arn"] == _arn("ver")
    resp, body = _invoke(lam, "ver", "$LATEST")
    assert body["version"] == "$LATEST" and body["arn"] == _arn("ver", "$LATEST")

    # Publish=true on UpdateFunctionCode answers the new version
    three = lam.update_function_code(FunctionName="ver", ZipFile=_code("three"), Publish=True)
    assert three["Version"] == "3"
    lam.get_waiter("function_updated_v2").wait(FunctionName="ver", WaiterConfig=WAIT)
    assert _invoke(lam, "ver", "3")[1]["label"] == "three"
    assert _invoke(lam, "ver", "1")[1]["label"] == "one"  # versions are immutable

    # an Event invoke of a version runs that version (queued as name:qualifier)
    assert lam.invoke(FunctionName="ver", Qualifier="1", InvocationType="Event")[
        "StatusCode"] == 202
    assert wait_until(lambda: [e["Status"] for e in server.admin("events?function=ver:1")]
                      == ["succeeded"], timeout_s=30)

    # delete a version; $LATEST and the others stay
    lam.delete_function(FunctionName="ver", Qualifier="3")
    err = _error(lambda: lam.get_function(FunctionName="ver", Qualifier="3"))
    assert err["Error"]["Code"] == "ResourceNotFoundException"
    assert err["Error"]["Message"] == f"Function not found: {_arn('ver', '3')}"
    assert [v["Version"] for v in lam.list_versions_by_function(FunctionName="ver")[
        "Versions"]] == ["$LATEST", "1", "2"]
    # numbers are not reused
    lam.update_function_code(FunctionName="ver", ZipFile=_code("four"))
    lam.get_waiter("function_updated_v2").wait(FunctionName="ver", WaiterConfig=WAIT)
    assert lam.publish_version(FunctionName="ver")["Version"] == "4"

    # ListFunctions with FunctionVersion=ALL lists the versions after $LATEST
    every = lam.list_functions(FunctionVersion="ALL")["Functions"]
    assert [f["Version"] for f in every if f["FunctionName"] == "ver"] == \
        ["$LATEST", "1", "2", "4"]
    assert [f["Version"] for f in lam.list_functions()["Functions"]
            if f["FunctionName"] == "ver"] == ["$LATEST"]

    # deleting the function takes every version
    lam.delete_function(FunctionName="ver")
    err = _error(lambda: lam.get_function(FunctionName="ver", Qualifier="1"))
    assert err["Error"]["Code"] == "ResourceNotFoundException"
    create_python_function(lam, "ver", CODE.format(label="again"))
    assert lam.publish_version(FunctionName="ver")["Version"] == "1"  # a new function
    lam.delete_function(FunctionName="ver")


def test_version_errors_are_aws_s(server: LiveServer) -> None:
    lam = server.lambda_()
    create_python_function(lam, "ver-err", CODE.format(label="x"))
    latest = lam.get_function_configuration(FunctionName="ver-err")
    err = _error(lambda: lam.publish_version(FunctionName="ver-err", RevisionId="stale"))
    assert err["Error"]["Code"] == "PreconditionFailedException"
    assert err["ResponseMetadata"]["HTTPStatusCode"] == 412
    err = _error(lambda: lam.publish_version(FunctionName="ver-err", CodeSha256="bad"))
    assert err["Error"]["Code"] == "InvalidParameterValueException"
    assert "is different from current CodeSHA256 in $LATEST" in err["Error"]["Message"]
    err = _error(lambda: lam.update_function_code(FunctionName="ver-err", ZipFile=_code("y"),
                                                  RevisionId="stale"))
    assert err["Error"]["Code"] == "PreconditionFailedException"
    err = _error(lambda: lam.publish_version(FunctionName="no-such-function"))
    assert err["Error"]["Code"] == "ResourceNotFoundException"
    for qualifier in ("7", "nosuchalias"):
        err = _error(lambda q=qualifier: lam.invoke(FunctionName="ver-err", Qualifier=q))
        assert err["Error"]["Code"] == "ResourceNotFoundException"
        assert err["Error"]["Message"] == f"Function not found: {_arn('ver-err', qualifier)}"
    err = _error(lambda: lam.invoke(FunctionName="ver-err:1", Qualifier="2"))
    assert err["Error"]["Code"] == "InvalidParameterValueException"
    err = _error(lambda: lam.delete_function(FunctionName="ver-err", Qualifier="$LATEST"))
    assert err["Error"]["Code"] == "InvalidParameterValueException"
    err = _error(lambda: lam.delete_function(FunctionName="ver-err", Qualifier="9"))
    assert err["Error"]["Code"] == "ResourceNotFoundException"
    err = _error(lambda: lam.publish_version(FunctionName="ver-err:1"))
    assert err["Error"]["Code"] == "InvalidParameterValueException"
    assert lam.get_function_configuration(FunctionName="ver-err")["RevisionId"] == \
        latest["RevisionId"]
    lam.delete_function(FunctionName="ver-err")


def test_aliases_and_their_errors(server: LiveServer) -> None:
    lam = server.lambda_()
    create_python_function(lam, "al", CODE.format(label="one"), Publish=True)
    lam.update_function_code(FunctionName="al", ZipFile=_code("two"), Publish=True)
    lam.get_waiter("function_updated_v2").wait(FunctionName="al", WaiterConfig=WAIT)
    alias = lam.create_alias(FunctionName="al", Name="live", FunctionVersion="1",
                             Description="production")
    assert alias["AliasArn"] == _arn("al", "live") and alias["FunctionVersion"] == "1"
    assert alias["RevisionId"]
    got = lam.get_alias(FunctionName="al", Name="live")
    assert got["Description"] == "production" and got["RevisionId"] == alias["RevisionId"]

    # the alias is a name for the function wherever one is given
    resp, body = _invoke(lam, "al", "live")
    assert resp["ExecutedVersion"] == "1" and body["label"] == "one"
    assert body["arn"] == _arn("al", "live") and body["version"] == "1"
    resp, body = _invoke(lam, _arn("al", "live"))
    assert resp["ExecutedVersion"] == "1"
    config = lam.get_function_configuration(FunctionName="al", Qualifier="live")
    assert config["Version"] == "1" and config["FunctionArn"] == _arn("al", "live")

    updated = lam.update_alias(FunctionName="al", Name="live", FunctionVersion="2",
                               RevisionId=got["RevisionId"])
    assert updated["FunctionVersion"] == "2" and updated["RevisionId"] != got["RevisionId"]
    assert _invoke(lam, "al", "live")[1]["label"] == "two"
    err = _error(lambda: lam.update_alias(FunctionName="al", Name="live",
                                          RevisionId=got["RevisionId"]))
    assert err["Error"]["Code"] == "PreconditionFailedException"

    lam.create_alias(FunctionName="al", Name="head", FunctionVersion="$LATEST")
    assert [a["Name"] for a in lam.list_aliases(FunctionName="al")["Aliases"]] == \
        ["head", "live"]
    assert [a["Name"] for a in lam.list_aliases(FunctionName="al", FunctionVersion="2")[
        "Aliases"]] == ["live"]

    # AWS's errors
    def code(call) -> str:
        return _error(call)["Error"]["Code"]

    assert code(lambda: lam.create_alias(FunctionName="al", Name="live",
                                         FunctionVersion="1")) == "ResourceConflictException"
    assert code(lambda: lam.create_alias(FunctionName="al", Name="x",
                                         FunctionVersion="9")) == "ResourceNotFoundException"
    assert code(lambda: lam.create_alias(FunctionName="al", Name="123",
                                         FunctionVersion="1")) == "ValidationException"
    assert code(lambda: lam.create_alias(FunctionName="nope", Name="x",
                                         FunctionVersion="1")) == "ResourceNotFoundException"
    assert code(lambda: lam.get_alias(FunctionName="al", Name="gone")) == \
        "ResourceNotFoundException"
    bad_routing = [
        ("1", {"1": 0.5}, "is already included in routing configuration"),
        ("$LATEST", {"1": 0.5}, "$LATEST is not supported"),
        ("1", {"2": 0.2, "3": 0.1}, "cannot be greater than 1"),
        ("1", {"9": 0.2}, "does not exist"),
    ]
    for primary, weights, message in bad_routing:
        err = _error(lambda v=primary, w=weights: lam.create_alias(
            FunctionName="al", Name="w", FunctionVersion=v,
            RoutingConfig={"AdditionalVersionWeights": w}))
        assert err["Error"]["Code"] == "InvalidParameterValueException", err
        assert message in err["Error"]["Message"]
    err = _error(lambda: lam.create_alias(FunctionName="al", Name="w", FunctionVersion="1",
                                          RoutingConfig={"AdditionalVersionWeights": {"2": 1.5}}))
    assert err["Error"]["Code"] == "ValidationException"
    # a version an alias uses cannot be deleted
    err = _error(lambda: lam.delete_function(FunctionName="al", Qualifier="2"))
    assert err["Error"]["Code"] == "ResourceConflictException"
    assert "[live]" in err["Error"]["Message"]

    lam.delete_alias(FunctionName="al", Name="head")
    lam.delete_alias(FunctionName="al", Name="head")  # AWS: 204 again
    assert [a["Name"] for a in lam.list_aliases(FunctionName="al")["Aliases"]] == ["live"]
    lam.delete_function(FunctionName="al")
    assert code(lambda: lam.get_alias(FunctionName="al", Name="live")) == \
        "ResourceNotFoundException"


def test_weighted_alias_splits_real_invokes(server: LiveServer) -> None:
    lam = server.lambda_()
    create_python_function(lam, "split", CODE.format(label="one"), Publish=True)
    lam.update_function_code(FunctionName="split", ZipFile=_code("two"), Publish=True)
    lam.get_waiter("function_updated_v2").wait(FunctionName="split", WaiterConfig=WAIT)
    alias = lam.create_alias(FunctionName="split", Name="canary", FunctionVersion="1",
                             RoutingConfig={"AdditionalVersionWeights": {"2": 0.3}})
    assert alias["RoutingConfig"] == {"AdditionalVersionWeights": {"2": 0.3}}

    def one(_: int) -> tuple[str, str]:
        resp, body = _invoke(lam, "split", "canary")
        assert body["arn"] == _arn("split", "canary")
        return resp["ExecutedVersion"], body["label"]

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        seen = Counter(pool.map(one, range(1000)))
    assert set(seen) == {("1", "one"), ("2", "two")}  # each version runs its own code
    share = seen[("2", "two")] / 1000
    print(f"\nalias canary at weight 0.3: {seen[('2', 'two')]} of 1000 invokes on version 2 "
          f"({share:.1%})")
    assert 0.25 <= share <= 0.35
    lam.delete_function(FunctionName="split")


def test_a_version_keeps_its_eni_after_latest_leaves_the_vpc(server: LiveServer) -> None:
    lam, ec2 = server.lambda_(), server.ec2()
    vpc = ec2.create_vpc(CidrBlock="10.71.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.71.1.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName="ver", Description="ver",
                                      VpcId=vpc)["GroupId"]

    def enis() -> list[dict]:
        return ec2.describe_network_interfaces(Filters=[
            {"Name": "interface-type", "Values": ["lambda"]},
            {"Name": "subnet-id", "Values": [subnet]}])["NetworkInterfaces"]

    try:
        create_python_function(lam, "ver-vpc", CODE.format(label="vpc"), Publish=True,
                               VpcConfig={"SubnetIds": [subnet], "SecurityGroupIds": [group]})
        version = lam.get_function_configuration(FunctionName="ver-vpc", Qualifier="1")
        assert version["State"] == "Active" and version["VpcConfig"]["VpcId"] == vpc
        (eni,) = enis()
        lam.update_function_configuration(FunctionName="ver-vpc", VpcConfig={
            "SubnetIds": [], "SecurityGroupIds": []})
        lam.get_waiter("function_updated_v2").wait(FunctionName="ver-vpc", WaiterConfig=WAIT)
        assert lam.get_function_configuration(FunctionName="ver-vpc")["VpcConfig"][
            "VpcId"] == ""
        # $LATEST left the VPC; version 1 still uses the ENI, and runs attached to it
        assert [e["NetworkInterfaceId"] for e in enis()] == [eni["NetworkInterfaceId"]]
        resp, body = _invoke(lam, "ver-vpc", "1")
        assert resp["ExecutedVersion"] == "1" and body["label"] == "vpc"
        assert lam.get_function_configuration(FunctionName="ver-vpc", Qualifier="1")[
            "VpcConfig"]["SubnetIds"] == [subnet]
        assert [e["NetworkInterfaceId"] for e in enis()] == [eni["NetworkInterfaceId"]]
        # the last user of the ENI goes: so does the ENI
        lam.delete_function(FunctionName="ver-vpc", Qualifier="1")
        assert wait_until(lambda: enis() == [], timeout_s=30)
    finally:
        try:
            lam.delete_function(FunctionName="ver-vpc")
        except ClientError:
            pass
        wait_until(lambda: enis() == [], timeout_s=30)
        ec2.delete_subnet(SubnetId=subnet)
        ec2.delete_security_group(GroupId=group)
        ec2.delete_vpc(VpcId=vpc)


def test_versions_aliases_and_urls_survive_a_restart(fresh_server: LiveServer) -> None:
    lam = fresh_server.lambda_()
    create_python_function(lam, "kept", CODE.format(label="one"), Publish=True)
    lam.update_function_code(FunctionName="kept", ZipFile=_code("two"), Publish=True)
    lam.get_waiter("function_updated_v2").wait(FunctionName="kept", WaiterConfig=WAIT)
    lam.create_alias(FunctionName="kept", Name="live", FunctionVersion="1",
                     RoutingConfig={"AdditionalVersionWeights": {"2": 0.5}})
    lam.add_permission(FunctionName="kept", StatementId="s", Action="lambda:InvokeFunction",
                       Principal="s3.amazonaws.com")
    fresh_server.restart()
    lam = fresh_server.lambda_()
    assert [v["Version"] for v in lam.list_versions_by_function(FunctionName="kept")[
        "Versions"]] == ["$LATEST", "1", "2"]
    assert lam.get_alias(FunctionName="kept", Name="live")["RoutingConfig"] == \
        {"AdditionalVersionWeights": {"2": 0.5}}
    assert _invoke(lam, "kept", "1")[1]["label"] == "one"
    assert {_invoke(lam, "kept", "live")[0]["ExecutedVersion"] for _ in range(40)} == {"1", "2"}
    assert json.loads(lam.get_policy(FunctionName="kept")["Policy"])["Statement"][0]["Sid"] == "s"
    assert lam.publish_version(FunctionName="kept")["Version"] == "2"  # unchanged: no new one
