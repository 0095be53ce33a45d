"""Asynchronous invocation configuration through boto3 against a live server: the five
operations with AWS's shapes and errors; MaximumRetryAttempts and MaximumEventAgeInSeconds
applied to the Event queue; OnSuccess / OnFailure destinations receiving AWS's invocation
record."""
from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from lambdaplane.sandbox.logs import log_path
from tests.conftest import live_server
from tests.harness import LiveServer, create_python_function

pytestmark = pytest.mark.root

ACCOUNT = "000000000000"
APP = """
def handler(event, context):
    print("RUN", context.aws_request_id)
    if event.get("fail"):
        raise ValueError("asked to fail")
    return {"echo": event}
"""
SINK = """
import json

def handler(event, context):
    print("RECORD " + json.dumps(event))
    return None
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    yield from live_server(tmp_path_factory.mktemp("eic"), "--event-retry-delays", "0.2,0.2")


def _arn(name: str) -> str:
    return f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:{name}"


def _error(call) -> dict:
    with pytest.raises(ClientError) as err:
        call()
    return err.value.response


def _log_lines(server: LiveServer, function: str, prefix: str) -> list[str]:
    path = log_path(server.data_dir, "us-east-1", function)
    if not path.exists():
        return []
    return [line.split(prefix, 1)[1].strip() for line in path.read_text().splitlines()
            if prefix in line]


def _records(server: LiveServer, sink: str, count: int = 1,
             timeout_s: float = 60.0) -> list[dict]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        records = [json.loads(text) for text in _log_lines(server, sink, "RECORD ")]
        if len(records) >= count:
            return records
        time.sleep(0.1)
    raise AssertionError(f"{sink} got no {count} records: {_log_lines(server, sink, '')}")


def _events(server: LiveServer, function: str, status: str,
            timeout_s: float = 60.0) -> list[dict]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        events = [e for e in server.admin(f"events?function={function}")
                  if e["Status"] == status]
        if events:
            return events
        time.sleep(0.1)
    raise AssertionError(f"no {status} event for {function}")


def test_operations_shapes_and_errors(server: LiveServer) -> None:
    lam = server.lambda_()
    create_python_function(lam, "eic-ops", APP)
    create_python_function(lam, "eic-ops-sink", SINK)
    err = _error(lambda: lam.get_function_event_invoke_config(FunctionName="eic-ops"))
    assert err["Error"]["Code"] == "ResourceNotFoundException"
    assert err["Error"]["Message"] == \
        f"The function {_arn('eic-ops')}:$LATEST doesn't have an EventInvokeConfig"
    put = lam.put_function_event_invoke_config(
        FunctionName="eic-ops", MaximumRetryAttempts=1, MaximumEventAgeInSeconds=120,
        DestinationConfig={"OnFailure": {"Destination": _arn("eic-ops-sink")}})
    assert put["FunctionArn"] == f"{_arn('eic-ops')}:$LATEST"
    assert (put["MaximumRetryAttempts"], put["MaximumEventAgeInSeconds"]) == (1, 120)
    assert put["DestinationConfig"] == {"OnSuccess": {},
                                        "OnFailure": {"Destination": _arn("eic-ops-sink")}}
    assert put["LastModified"].year >= 2024
    updated = lam.update_function_event_invoke_config(
        FunctionName=_arn("eic-ops"), MaximumRetryAttempts=0,
        DestinationConfig={"OnSuccess": {"Destination": _arn("eic-ops-sink")}})
    assert updated["MaximumRetryAttempts"] == 0 and updated["MaximumEventAgeInSeconds"] == 120
    assert updated["DestinationConfig"]["OnSuccess"] == {"Destination": _arn("eic-ops-sink")}
    assert updated["DestinationConfig"]["OnFailure"] == {"Destination": _arn("eic-ops-sink")}
    got = lam.get_function_event_invoke_config(FunctionName="eic-ops", Qualifier="$LATEST")
    assert got["MaximumRetryAttempts"] == 0
    # Put replaces the whole configuration
    put = lam.put_function_event_invoke_config(FunctionName="eic-ops", MaximumRetryAttempts=2)
    assert "MaximumEventAgeInSeconds" not in put
    assert put["DestinationConfig"] == {"OnSuccess": {}, "OnFailure": {}}
    listed = lam.list_function_event_invoke_configs(FunctionName="eic-ops")
    assert [c["FunctionArn"] for c in listed["FunctionEventInvokeConfigs"]] == \
        [f"{_arn('eic-ops')}:$LATEST"]
    # AWS's limits and errors (the server's own checks: botocore's are off)
    unchecked = server.client("lambda", parameter_validation=False)
    for kwargs in ({"MaximumRetryAttempts": 3}, {"MaximumRetryAttempts": -1},
                   {"MaximumEventAgeInSeconds": 59}, {"MaximumEventAgeInSeconds": 21601}):
        err = _error(lambda: unchecked.put_function_event_invoke_config(
            FunctionName="eic-ops", **kwargs))
        assert err["Error"]["Code"] == "ValidationException"
    err = _error(lambda: lam.put_function_event_invoke_config(
        FunctionName="eic-ops", DestinationConfig={"OnFailure": {"Destination": _arn("eic-ops")}}))
    assert err["Error"]["Code"] == "InvalidParameterValueException"
    err = _error(lambda: lam.put_function_event_invoke_config(
        FunctionName="eic-ops", DestinationConfig={"OnFailure": {
            "Destination": f"arn:aws:sqs:us-east-1:{ACCOUNT}:queue"}}))
    assert err["Error"]["Code"] == "InvalidParameterValueException"
    err = _error(lambda: lam.put_function_event_invoke_config(FunctionName="eic-nothing",
                                                              MaximumRetryAttempts=1))
    assert err["Error"]["Code"] == "ResourceNotFoundException"
    err = _error(lambda: lam.update_function_event_invoke_config(FunctionName="eic-ops-sink",
                                                                 MaximumRetryAttempts=1))
    assert err["Error"]["Code"] == "ResourceNotFoundException"
    lam.delete_function_event_invoke_config(FunctionName="eic-ops")
    err = _error(lambda: lam.delete_function_event_invoke_config(FunctionName="eic-ops"))
    assert err["Error"]["Code"] == "ResourceNotFoundException"
    assert lam.list_function_event_invoke_configs(
        FunctionName="eic-ops")["FunctionEventInvokeConfigs"] == []
    # a deleted function's configuration goes with it
    lam.put_function_event_invoke_config(FunctionName="eic-ops", MaximumRetryAttempts=1)
    lam.delete_function(FunctionName="eic-ops")
    create_python_function(lam, "eic-ops", APP)
    err = _error(lambda: lam.get_function_event_invoke_config(FunctionName="eic-ops"))
    assert err["Error"]["Code"] == "ResourceNotFoundException"


def test_zero_retries_runs_once_and_on_failure_gets_the_record(server: LiveServer) -> None:
    lam = server.lambda_()
    create_python_function(lam, "eic-fail", APP)
    create_python_function(lam, "eic-fail-sink", SINK)
    lam.put_function_event_invoke_config(
        FunctionName="eic-fail", MaximumRetryAttempts=0,
        DestinationConfig={"OnFailure": {"Destination": _arn("eic-fail-sink")}})
    resp = lam.invoke(FunctionName="eic-fail", InvocationType="Event",
                      Payload=json.dumps({"fail": True, "n": 1}))
    request_id = resp["ResponseMetadata"]["RequestId"]
    [record] = _records(server, "eic-fail-sink")
    failed = _events(server, "eic-fail", "failed")
    assert [(e["RequestId"], e["Attempts"]) for e in failed] == [(request_id, 1)]
    assert _log_lines(server, "eic-fail", "RUN ") == [request_id]  # it ran exactly once
    assert record["version"] == "1.0" and record["timestamp"].endswith("Z")
    assert record["requestContext"] == {
        "requestId": request_id, "functionArn": f"{_arn('eic-fail')}:$LATEST",
        "condition": "RetriesExhausted", "approximateInvokeCount": 1}
    assert record["requestPayload"] == {"fail": True, "n": 1}
    assert record["responseContext"] == {"statusCode": 200, "executedVersion": "$LATEST",
                                         "functionError": "Unhandled"}
    assert record["responsePayload"]["errorMessage"] == "asked to fail"
    assert record["responsePayload"]["errorType"] == "ValueError"


def test_an_alias_event_uses_the_alias_config_and_names_its_version(server: LiveServer) -> None:
    lam = server.lambda_()
    create_python_function(lam, "eic-alias", APP)
    create_python_function(lam, "eic-alias-sink", SINK)
    version = lam.publish_version(FunctionName="eic-alias")["Version"]
    lam.create_alias(FunctionName="eic-alias", Name="live", FunctionVersion=version)
    # $LATEST's config would retry twice and name no destination: the alias's own applies
    lam.put_function_event_invoke_config(
        FunctionName="eic-alias", Qualifier="live", MaximumRetryAttempts=0,
        DestinationConfig={"OnFailure": {"Destination": _arn("eic-alias-sink")}})
    resp = lam.invoke(FunctionName="eic-alias", Qualifier="live", InvocationType="Event",
                      Payload=json.dumps({"fail": True}))
    [record] = _records(server, "eic-alias-sink")
    assert record["requestContext"]["requestId"] == resp["ResponseMetadata"]["RequestId"]
    assert record["requestContext"]["functionArn"] == f"{_arn('eic-alias')}:live"
    assert record["requestContext"]["approximateInvokeCount"] == 1
    assert record["responseContext"]["executedVersion"] == version


def test_default_retries_run_three_times(server: LiveServer) -> None:
    lam = server.lambda_()
    create_python_function(lam, "eic-thrice", APP)
    create_python_function(lam, "eic-thrice-sink", SINK)
    lam.put_function_event_invoke_config(
        FunctionName="eic-thrice",
        DestinationConfig={"OnFailure": {"Destination": _arn("eic-thrice-sink")}})
    lam.invoke(FunctionName="eic-thrice", InvocationType="Event", Payload=b'{"fail": 1}')
    [record] = _records(server, "eic-thrice-sink")
    assert record["requestContext"]["approximateInvokeCount"] == 3
    assert len(_log_lines(server, "eic-thrice", "RUN ")) == 3


def test_on_success_gets_the_record(server: LiveServer) -> None:
    lam = server.lambda_()
    create_python_function(lam, "eic-ok", APP)
    create_python_function(lam, "eic-ok-sink", SINK)
    lam.put_function_event_invoke_config(
        FunctionName="eic-ok", DestinationConfig={
            "OnSuccess": {"Destination": _arn("eic-ok-sink")},
            "OnFailure": {"Destination": _arn("eic-ok-sink")}})
    resp = lam.invoke(FunctionName="eic-ok", InvocationType="Event", Payload=b'{"k": "v"}')
    [record] = _records(server, "eic-ok-sink")
    assert record["requestContext"] == {
        "requestId": resp["ResponseMetadata"]["RequestId"],
        "functionArn": f"{_arn('eic-ok')}:$LATEST", "condition": "Success",
        "approximateInvokeCount": 1}
    assert record["requestPayload"] == {"k": "v"}
    assert record["responseContext"] == {"statusCode": 200, "executedVersion": "$LATEST"}
    assert record["responsePayload"] == {"echo": {"k": "v"}}
    # a synchronous invoke sends nothing to destinations
    lam.invoke(FunctionName="eic-ok", Payload=b'{"sync": 1}')
    time.sleep(1)
    assert len(_records(server, "eic-ok-sink")) == 1


def test_event_older_than_its_maximum_age_is_dropped(server: LiveServer) -> None:
    lam = server.lambda_()
    create_python_function(lam, "eic-old", APP)
    create_python_function(lam, "eic-old-sink", SINK)
    lam.put_function_event_invoke_config(
        FunctionName="eic-old", MaximumEventAgeInSeconds=60,
        DestinationConfig={"OnFailure": {"Destination": _arn("eic-old-sink")}})
    # held (throttled, not an attempt) while it ages: reserved concurrency 0
    lam.put_function_concurrency(FunctionName="eic-old", ReservedConcurrentExecutions=0)
    resp = lam.invoke(FunctionName="eic-old", InvocationType="Event", Payload=b'{"old": 1}')
    request_id = resp["ResponseMetadata"]["RequestId"]
    # age it by two minutes where the queue keeps it (the server's own database)
    db = sqlite3.connect(Path(server.data_dir) / "lambdaplane.sqlite3", timeout=30)
    try:
        with db:
            changed = db.execute("UPDATE event_invocations SET accepted_at=accepted_at-120 "
                                 "WHERE request_id=?", (request_id,)).rowcount
    finally:
        db.close()
    assert changed == 1
    lam.delete_function_concurrency(FunctionName="eic-old")
    dropped = _events(server, "eic-old", "dropped")
    assert [(e["RequestId"], e["ErrorType"]) for e in dropped] == \
        [(request_id, "EventAgeExceeded")]
    [record] = _records(server, "eic-old-sink")
    assert record["requestContext"]["condition"] == "EventAgeExceeded"
    assert record["requestContext"]["approximateInvokeCount"] == 0
    assert record["requestPayload"] == {"old": 1}
    assert _log_lines(server, "eic-old", "RUN ") == []  # never ran
