"""The Lambda endpoint through boto3, in-process with fake execution: CRUD, waiters, every
error with AWS's code/status/message, regions, paging, code download, unknown routes."""
from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from tests.harness import make_zip
from tests.unit.lambda_inprocess import InProcessLambda

ROLE = "arn:aws:iam::000000000000:role/lambda"


@pytest.fixture
def api(tmp_path: Path, database_url: str | None) -> Iterator[InProcessLambda]:
    server = InProcessLambda(tmp_path / "data", {"database": database_url or ""})
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _create(lam, name: str = "f1", **extra):
    zip_bytes = extra.pop("zip", None) or make_zip({"app.py": "def handler(e, c):\n    return e\n"})
    params = {"Runtime": "python3.11", "Handler": "app.handler", "Role": ROLE, **extra}
    return lam.create_function(FunctionName=name, Code={"ZipFile": zip_bytes}, **params)


def _error(call) -> tuple[str, int, str, dict]:
    with pytest.raises(ClientError) as err:
        call()
    resp = err.value.response
    return (resp["Error"]["Code"], resp["ResponseMetadata"]["HTTPStatusCode"],
            resp["Error"]["Message"], resp)


def test_create_get_list_update_delete(api):
    lam = api.client()
    created = _create(lam, Environment={"Variables": {"GREETING": "hi"}}, Tags={"team": "a"})
    assert created["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert created["FunctionArn"] == "arn:aws:lambda:us-east-1:000000000000:function:f1"
    assert created["State"] == "Active" and created["Version"] == "$LATEST"
    lam.get_waiter("function_exists").wait(FunctionName="f1")
    lam.get_waiter("function_active_v2").wait(FunctionName="f1")
    got = lam.get_function(FunctionName="f1")
    assert got["Configuration"] == {k: v for k, v in created.items() if k != "ResponseMetadata"}
    assert got["Code"]["RepositoryType"] == "S3"
    assert got["Tags"] == {"team": "a"}
    with urllib.request.urlopen(got["Code"]["Location"]) as r:
        assert r.read() == make_zip({"app.py": "def handler(e, c):\n    return e\n"})
    assert lam.get_function_configuration(FunctionName="f1")["Environment"] == {
        "Variables": {"GREETING": "hi"}}
    updated = lam.update_function_configuration(FunctionName="f1", Timeout=10,
                                                Description="second")
    assert updated["LastUpdateStatus"] == "InProgress"
    assert updated["RevisionId"] != created["RevisionId"]
    lam.get_waiter("function_updated_v2").wait(FunctionName="f1",
                                               WaiterConfig={"Delay": 0.1, "MaxAttempts": 50})
    new_code = make_zip({"app.py": "def handler(e, c):\n    return 2\n"})
    code = lam.update_function_code(FunctionName="f1", ZipFile=new_code)
    assert code["CodeSha256"] != created["CodeSha256"] and code["Timeout"] == 10
    lam.get_waiter("function_updated_v2").wait(FunctionName="f1",
                                               WaiterConfig={"Delay": 0.1, "MaxAttempts": 50})
    assert [f["FunctionName"] for f in lam.list_functions()["Functions"]] == ["f1"]
    deleted = lam.delete_function(FunctionName="f1")
    assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert lam.list_functions()["Functions"] == []
    assert api.platform.environments.retired == [("us-east-1", "f1")] * 3


def test_functions_are_per_region(api):
    east, west = api.client("us-east-1"), api.client("us-west-2")
    _create(east)
    created = _create(west)
    assert created["FunctionArn"] == "arn:aws:lambda:us-west-2:000000000000:function:f1"
    west.delete_function(FunctionName="f1")
    assert east.get_function(FunctionName="f1")["Configuration"]["FunctionName"] == "f1"
    code, status, message, _ = _error(lambda: west.get_function(FunctionName="f1"))
    assert (code, status) == ("ResourceNotFoundException", 404)
    assert message == "Function not found: arn:aws:lambda:us-west-2:000000000000:function:f1"


def test_paging_with_marker(api):
    lam = api.client()
    for i in range(7):
        _create(lam, f"fn{i}")
    first = lam.list_functions(MaxItems=3)
    assert len(first["Functions"]) == 3 and "NextMarker" in first
    names = [f["FunctionName"] for page in lam.get_paginator("list_functions").paginate(
        PaginationConfig={"PageSize": 2}) for f in page["Functions"]]
    assert names == [f"fn{i}" for i in range(7)]


@pytest.mark.parametrize("call,expected", [
    (lambda lam: lam.get_function(FunctionName="nope"),
     ("ResourceNotFoundException", 404,
      "Function not found: arn:aws:lambda:us-east-1:000000000000:function:nope")),
    (lambda lam: lam.invoke(FunctionName="nope"),
     ("ResourceNotFoundException", 404,
      "Function not found: arn:aws:lambda:us-east-1:000000000000:function:nope")),
    (lambda lam: _create(lam, "bad", zip=b"not a zip"),
     ("InvalidParameterValueException", 400,
      "Could not unzip uploaded file. Please check your file, then try to upload again.")),
    (lambda lam: _create(lam, "bad", Runtime="nodejs12.x"),
     ("InvalidParameterValueException", 400,
      "The runtime parameter of nodejs12.x is no longer supported for creating or updating "
      "AWS Lambda functions. We recommend you use the new runtime (nodejs24.x) while creating "
      "or updating functions.")),
    (lambda lam: _create(lam, "bad", MemorySize=10241),
     ("InvalidParameterValueException", 400,
      "'MemorySize' value failed to satisfy constraint: Member must have value less than or "
      "equal to 10240")),
    (lambda lam: _create(lam, "bad", Timeout=901),
     ("InvalidParameterValueException", 400,
      "'Timeout' value failed to satisfy constraint: Member must have value less than or "
      "equal to 900")),
    (lambda lam: _create(lam, "bad", MemorySize=64),
     ("ValidationException", 400,
      "1 validation error detected: Value '64' at 'memorySize' failed to satisfy constraint: "
      "Member must have value greater than or equal to 128")),
    (lambda lam: _create(lam, "bad", Environment={"Variables": {"AWS_SESSION_TOKEN": "x"}}),
     ("InvalidParameterValueException", 400,
      "Lambda was unable to configure your environment variables because the environment "
      "variables you have provided contains reserved keys that are currently not supported "
      "for modification. Reserved keys used in this request: AWS_SESSION_TOKEN")),
    (lambda lam: _create(lam, "bad", zip=make_zip({"../x.py": "x"})),
     ("InvalidParameterValueException", 400,
      "Could not unzip uploaded file: the entry '../x.py' points outside the deployment "
      "package.")),
])
def test_errors_have_aws_code_status_and_message(api, call, expected):
    lam = api.client(parameter_validation=False)
    code, status, message, resp = _error(lambda: call(lam))
    assert (code, status, message) == expected
    assert resp["ResponseMetadata"]["HTTPHeaders"]["x-amzn-errortype"] == expected[0]
    assert "Traceback" not in message


def test_duplicate_and_env_size(api):
    lam = api.client()
    _create(lam)
    assert _error(lambda: _create(lam))[:3] == ("ResourceConflictException", 409,
                                                 "Function already exist: f1")
    code, status, message, _ = _error(lambda: _create(lam, "big", Environment={
        "Variables": {f"K{i}": "v" * 100 for i in range(50)}}))
    assert (code, status) == ("InvalidParameterValueException", 400)
    assert "exceeded the 4KB limit" in message


def test_malformed_json_and_unknown_route(api):
    req = urllib.request.Request(api.endpoint + "/2015-03-31/functions", data=b"{oops",
                                 method="POST", headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req)
    assert err.value.code == 400
    assert err.value.headers["x-amzn-ErrorType"] == "InvalidRequestContentException"
    body = json.loads(err.value.read())
    assert body["Type"] == "User" and "Could not parse request body" in body["message"]
    for path in ("/2015-03-31/no-such-thing", "/2015-03-31"):
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(api.endpoint + path)
        assert err.value.code == 404
        assert err.value.headers["x-amzn-ErrorType"] == "UnknownOperationException"
        assert json.loads(err.value.read())["Type"] == "User"
    # a path outside Lambda's API dates: api/dispatch.py's JSON naming it (tests/e2e/test_dispatch)
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(api.endpoint + "/totally/unknown")
    assert err.value.code == 404
    assert err.value.headers["x-amzn-ErrorType"] == "UnknownServiceException"
    assert "GET /totally/unknown" in json.loads(err.value.read())["message"]


def test_unexpected_exception_is_a_service_exception(api, monkeypatch):
    lam = api.client()
    _create(lam)

    def broken(*_args, **_kwargs):
        raise RuntimeError("secret internals")
    monkeypatch.setattr(api.platform.functions, "get", broken)
    code, status, message, _ = _error(lambda: lam.get_function(FunctionName="f1"))
    assert (code, status) == ("ServiceException", 500)
    assert "secret internals" not in message and "Traceback" not in message


def test_concurrency_and_account_settings(api):
    lam = api.client()
    _create(lam)
    assert lam.get_function_concurrency(FunctionName="f1").get(
        "ReservedConcurrentExecutions") is None
    assert lam.put_function_concurrency(FunctionName="f1", ReservedConcurrentExecutions=5)[
        "ReservedConcurrentExecutions"] == 5
    assert lam.get_function_concurrency(FunctionName="f1")["ReservedConcurrentExecutions"] == 5
    assert lam.get_function(FunctionName="f1")["Concurrency"] == {
        "ReservedConcurrentExecutions": 5}
    settings = lam.get_account_settings()
    assert settings["AccountLimit"] == {
        "TotalCodeSize": 80530636800, "CodeSizeUnzipped": 262144000,
        "CodeSizeZipped": 52428800, "ConcurrentExecutions": 1000,
        "UnreservedConcurrentExecutions": 995}
    assert settings["AccountUsage"]["FunctionCount"] == 1
    code, status, message, _ = _error(lambda: lam.put_function_concurrency(
        FunctionName="f1", ReservedConcurrentExecutions=901))
    assert (code, status) == ("InvalidParameterValueException", 400)
    assert message == ("Specified ReservedConcurrentExecutions for function decreases "
                       "account's UnreservedConcurrentExecution below its minimum value of "
                       "[100].")
    resp = lam.delete_function_concurrency(FunctionName="f1")
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert lam.get_account_settings()["AccountLimit"]["UnreservedConcurrentExecutions"] == 1000


def test_restart_keeps_functions(api):
    lam = api.client()
    created = _create(lam, Environment={"Variables": {"KEEP": "yes"}})
    lam.put_function_concurrency(FunctionName="f1", ReservedConcurrentExecutions=3)
    api.restart()
    lam = api.client()
    got = lam.get_function(FunctionName="f1")
    assert got["Configuration"]["RevisionId"] == created["RevisionId"]
    assert got["Configuration"]["Environment"] == {"Variables": {"KEEP": "yes"}}
    assert got["Concurrency"] == {"ReservedConcurrentExecutions": 3}
