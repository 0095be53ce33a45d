"""The Lambda control plane through boto3 against a live server: create/get/list/update/delete,
waiters, name/ARN forms, regions, every input error with AWS's code, status and message, and
a restart keeping every function."""
from __future__ import annotations

import json
import urllib.error
import urllib.request

import boto3
import botocore.config
import pytest
from botocore.exceptions import ClientError

from tests.harness import LiveServer, create_python_function, make_zip

pytestmark = pytest.mark.root

ROLE = "arn:aws:iam::000000000000:role/lambda"
ECHO = "def handler(event, context):\n    return {'event': event, 'v': 1}\n"
WAIT = {"Delay": 0.2, "MaxAttempts": 150}


def _regional(server: LiveServer, region: str):
    """The harness's client is pinned to us-east-1; the region travels in the signature."""
    return boto3.client("lambda", endpoint_url=server.endpoint, region_name=region,
                        aws_access_key_id="test", aws_secret_access_key="test",
                        config=botocore.config.Config(retries={"max_attempts": 1}))


def _error(call) -> tuple[str, int, str]:
    with pytest.raises(ClientError) as err:
        call()
    resp = err.value.response
    assert "Traceback" not in resp["Error"]["Message"]
    return (resp["Error"]["Code"], resp["ResponseMetadata"]["HTTPStatusCode"],
            resp["Error"]["Message"])


def _create(lam, name: str, **extra):
    params = {"Runtime": "python3.11", "Handler": "app.handler", "Role": ROLE, **extra}
    code = params.pop("zip", None) or make_zip({"app.py": ECHO})
    return lam.create_function(FunctionName=name, Code={"ZipFile": code}, **params)


def test_lifecycle_with_waiters(server: LiveServer) -> None:
    lam = server.lambda_()
    created = create_python_function(lam, "crud", ECHO, Environment={
        "Variables": {"STAGE": "one"}}, MemorySize=256, Timeout=10)
    assert created["FunctionArn"] == "arn:aws:lambda:us-east-1:000000000000:function:crud"
    lam.get_waiter("function_exists").wait(FunctionName="crud", WaiterConfig=WAIT)
    got = lam.get_function(FunctionName="crud")
    conf = got["Configuration"]
    assert (conf["State"], conf["LastUpdateStatus"]) == ("Active", "Successful")
    assert (conf["MemorySize"], conf["Timeout"], conf["Runtime"]) == (256, 10, "python3.11")
    assert conf["CodeSha256"] == created["CodeSha256"]
    assert got["Code"]["RepositoryType"] == "S3"
    with urllib.request.urlopen(got["Code"]["Location"], timeout=10) as r:
        assert r.read() == make_zip({"app.py": ECHO})
    assert "crud" in [f["FunctionName"] for f in lam.list_functions()["Functions"]]

    updated = lam.update_function_configuration(
        FunctionName="crud", Environment={"Variables": {"STAGE": "two"}})
    assert updated["RevisionId"] != conf["RevisionId"]
    lam.get_waiter("function_updated_v2").wait(FunctionName="crud", WaiterConfig=WAIT)
    assert lam.get_function_configuration(FunctionName="crud")["Environment"] == {
        "Variables": {"STAGE": "two"}}

    v2 = "def handler(event, context):\n    return {'v': 2}\n"
    lam.update_function_code(FunctionName="crud", ZipFile=make_zip({"app.py": v2}))
    lam.get_waiter("function_updated_v2").wait(FunctionName="crud", WaiterConfig=WAIT)
    resp = lam.invoke(FunctionName="crud", Payload=b"{}")
    assert json.loads(resp["Payload"].read()) == {"v": 2}  # the new code, not a warm old one

    assert lam.delete_function(FunctionName="crud")["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert _error(lambda: lam.get_function(FunctionName="crud")) == (
        "ResourceNotFoundException", 404,
        "Function not found: arn:aws:lambda:us-east-1:000000000000:function:crud")


def test_names_partial_and_full_arns(server: LiveServer) -> None:
    lam = server.lambda_()
    create_python_function(lam, "named", ECHO)
    arn = "arn:aws:lambda:us-east-1:000000000000:function:named"
    for ref in ("named", "000000000000:function:named", arn, arn + ":$LATEST"):
        resp = lam.invoke(FunctionName=ref, Payload=b'{"k": 1}')
        assert json.loads(resp["Payload"].read())["event"] == {"k": 1}
    assert lam.get_function(FunctionName="named", Qualifier="$LATEST")[
        "Configuration"]["FunctionArn"] == arn
    code, status, _ = _error(lambda: lam.get_function(FunctionName="named", Qualifier="9"))
    assert (code, status) == ("ResourceNotFoundException", 404)
    code, status, _ = _error(lambda: lam.invoke(FunctionName=arn + ":$LATEST", Qualifier="x"))
    assert (code, status) == ("InvalidParameterValueException", 400)
    lam.delete_function(FunctionName=arn)


def test_region_comes_from_the_signature(server: LiveServer) -> None:
    west = _regional(server, "us-west-2")
    east = server.lambda_()
    created = _create(west, "regional")
    assert created["FunctionArn"] == "arn:aws:lambda:us-west-2:000000000000:function:regional"
    west.get_waiter("function_active_v2").wait(FunctionName="regional", WaiterConfig=WAIT)
    assert _error(lambda: east.get_function(FunctionName="regional"))[:2] == (
        "ResourceNotFoundException", 404)
    assert "regional" not in [f["FunctionName"] for f in east.list_functions()["Functions"]]
    west.delete_function(FunctionName="regional")


def test_list_paging(server: LiveServer) -> None:
    lam = server.lambda_()
    names = [f"page-{i}" for i in range(5)]
    for name in names:
        _create(lam, name)
    first = lam.list_functions(MaxItems=2)
    assert len(first["Functions"]) == 2 and first["NextMarker"]
    listed = [f["FunctionName"] for page in lam.get_paginator("list_functions").paginate(
        PaginationConfig={"PageSize": 2}) for f in page["Functions"]]
    assert [n for n in listed if n.startswith("page-")] == names
    for name in names:
        lam.delete_function(FunctionName=name)


ERRORS = [
    ({"zip": b"definitely not a zip"}, ("InvalidParameterValueException", 400,
     "Could not unzip uploaded file. Please check your file, then try to upload again.")),
    ({"zip": make_zip({"../escape.py": "x"})}, ("InvalidParameterValueException", 400,
     "Could not unzip uploaded file: the entry '../escape.py' points outside the deployment "
     "package.")),
    ({"Runtime": "nodejs12.x"}, ("InvalidParameterValueException", 400,
     "The runtime parameter of nodejs12.x is no longer supported for creating or updating AWS "
     "Lambda functions. We recommend you use the new runtime (nodejs24.x) while creating or "
     "updating functions.")),
    ({"MemorySize": 10241}, ("InvalidParameterValueException", 400,
     "'MemorySize' value failed to satisfy constraint: Member must have value less than or "
     "equal to 10240")),
    ({"MemorySize": 127}, ("ValidationException", 400,
     "1 validation error detected: Value '127' at 'memorySize' failed to satisfy constraint: "
     "Member must have value greater than or equal to 128")),
    ({"Timeout": 901}, ("InvalidParameterValueException", 400,
     "'Timeout' value failed to satisfy constraint: Member must have value less than or "
     "equal to 900")),
    ({"Timeout": 0}, ("ValidationException", 400,
     "1 validation error detected: Value '0' at 'timeout' failed to satisfy constraint: "
     "Member must have value greater than or equal to 1")),
    ({"Environment": {"Variables": {"AWS_REGION": "x", "LAMBDA_TASK_ROOT": "y"}}},
     ("InvalidParameterValueException", 400,
      "Lambda was unable to configure your environment variables because the environment "
      "variables you have provided contains reserved keys that are currently not supported "
      "for modification. Reserved keys used in this request: AWS_REGION, LAMBDA_TASK_ROOT")),
    ({"Runtime": "cobol"}, ("ValidationException", 400, None)),
]


@pytest.mark.parametrize("extra,expected", ERRORS)
def test_create_errors(server: LiveServer, extra, expected) -> None:
    lam = server.client("lambda", parameter_validation=False)
    code, status, message = _error(lambda: _create(lam, "invalid", **extra))
    assert (code, status) == expected[:2]
    if expected[2] is not None:
        assert message == expected[2]
    assert "invalid" not in [f["FunctionName"] for f in lam.list_functions()["Functions"]]


def test_env_over_4kb_and_duplicates(server: LiveServer) -> None:
    lam = server.lambda_()
    code, status, message = _error(lambda: _create(lam, "fat-env", Environment={
        "Variables": {f"VAR{i}": "v" * 200 for i in range(25)}}))
    assert (code, status) == ("InvalidParameterValueException", 400)
    assert "exceeded the 4KB limit" in message
    _create(lam, "dup")
    assert _error(lambda: _create(lam, "dup")) == ("ResourceConflictException", 409,
                                                   "Function already exist: dup")
    lam.delete_function(FunctionName="dup")


def test_malformed_json_and_unknown_routes(server: LiveServer) -> None:
    req = urllib.request.Request(server.endpoint + "/2015-03-31/functions", data=b'{"a":',
                                 method="POST", headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=10)
    assert err.value.code == 400
    assert err.value.headers["x-amzn-ErrorType"] == "InvalidRequestContentException"
    assert json.loads(err.value.read())["Type"] == "User"
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(server.endpoint + "/2015-03-31/nothing", timeout=10)
    assert err.value.code == 404
    assert err.value.headers["x-amzn-ErrorType"] == "UnknownOperationException"


def test_concurrency_settings(server: LiveServer) -> None:
    lam = server.lambda_()
    _create(lam, "reserved")
    base = lam.get_account_settings()["AccountLimit"]
    assert base["ConcurrentExecutions"] == 1000
    assert base["CodeSizeUnzipped"] == 262144000 and base["CodeSizeZipped"] == 52428800
    lam.put_function_concurrency(FunctionName="reserved", ReservedConcurrentExecutions=10)
    assert lam.get_function_concurrency(FunctionName="reserved")[
        "ReservedConcurrentExecutions"] == 10
    after = lam.get_account_settings()["AccountLimit"]["UnreservedConcurrentExecutions"]
    assert after == base["UnreservedConcurrentExecutions"] - 10
    code, status, message = _error(lambda: lam.put_function_concurrency(
        FunctionName="reserved", ReservedConcurrentExecutions=after + 10 - 99))
    assert (code, status) == ("InvalidParameterValueException", 400)
    assert "below its minimum value of [100]" in message
    lam.delete_function_concurrency(FunctionName="reserved")
    assert "ReservedConcurrentExecutions" not in lam.get_function_concurrency(
        FunctionName="reserved")
    lam.delete_function(FunctionName="reserved")


def test_restart_keeps_every_function(fresh_server: LiveServer) -> None:
    lam = fresh_server.lambda_()
    created = create_python_function(lam, "durable", ECHO,
                                     Environment={"Variables": {"KEEP": "yes"}})
    _create(_regional(fresh_server, "eu-west-1"), "durable-eu")
    lam.put_function_concurrency(FunctionName="durable", ReservedConcurrentExecutions=7)
    fresh_server.restart()
    lam = fresh_server.lambda_()
    got = lam.get_function(FunctionName="durable")
    assert got["Configuration"]["RevisionId"] == created["RevisionId"]
    assert got["Configuration"]["Environment"] == {"Variables": {"KEEP": "yes"}}
    assert got["Concurrency"] == {"ReservedConcurrentExecutions": 7}
    eu = _regional(fresh_server, "eu-west-1")
    assert eu.get_function(FunctionName="durable-eu")["Configuration"]["FunctionArn"].startswith(
        "arn:aws:lambda:eu-west-1:")
    resp = lam.invoke(FunctionName="durable", Payload=b'{"after": "restart"}')
    assert json.loads(resp["Payload"].read())["event"] == {"after": "restart"}
