"""Invoke through boto3 against a live server running real functions: RequestResponse, function
errors, Tail logs, DryRun, payload limits, reserved and account concurrency (429), and Event
invocations — retried on error and durable across a restart."""
from __future__ import annotations

import base64
import concurrent.futures
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from tests.conftest import live_server
from tests.harness import LiveServer, create_python_function

pytestmark = pytest.mark.root

APP = """
import os, time

def handler(event, context):
    print("handling", event.get("tag", "-"))
    if event.get("fail"):
        raise ValueError("asked to fail")
    if event.get("sleep"):
        time.sleep(event["sleep"])
    if event.get("big"):
        return "x" * event["big"]
    return {"event": event, "stage": os.environ.get("STAGE"), "region": os.environ["AWS_REGION"],
            "request_id": context.aws_request_id}
"""


def _error(call) -> dict:
    with pytest.raises(ClientError) as err:
        call()
    return err.value.response


def _events(server: LiveServer, function: str, status: str, count: int = 1,
            timeout_s: float = 60.0) -> list[dict]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        events = server.admin(f"events?function={function}")
        if len([e for e in events if e["Status"] == status]) >= count:
            return events
        time.sleep(0.1)
    raise AssertionError(f"no {count} {status} events for {function}: "
                         f"{server.admin(f'events?function={function}')}")


def test_request_response_tail_and_environment(server: LiveServer) -> None:
    lam = server.lambda_()
    create_python_function(lam, "inv-echo", APP, Environment={"Variables": {"STAGE": "e2e"}})
    resp = lam.invoke(FunctionName="inv-echo", Payload=json.dumps({"tag": "t1"}), LogType="Tail")
    assert resp["StatusCode"] == 200 and resp["ExecutedVersion"] == "$LATEST"
    body = json.loads(resp["Payload"].read())
    assert body["event"] == {"tag": "t1"} and body["stage"] == "e2e"
    assert body["region"] == "us-east-1"
    assert body["request_id"] == resp["ResponseMetadata"]["RequestId"]
    log = base64.b64decode(resp["LogResult"]).decode()
    assert "handling t1" in log
    assert len(base64.b64decode(resp["LogResult"])) <= 4096


def test_function_error_is_200_unhandled(server: LiveServer) -> None:
    lam = server.lambda_()
    create_python_function(lam, "inv-fail", APP)
    resp = lam.invoke(FunctionName="inv-fail", Payload=b'{"fail": true}')
    assert resp["StatusCode"] == 200 and resp["FunctionError"] == "Unhandled"
    body = json.loads(resp["Payload"].read())
    assert body["errorMessage"] == "asked to fail" and body["errorType"] == "ValueError"


def test_dry_run_and_limits(server: LiveServer) -> None:
    lam = server.lambda_()
    create_python_function(lam, "inv-limits", APP)
    assert lam.invoke(FunctionName="inv-limits", InvocationType="DryRun")["StatusCode"] == 204
    too_big = json.dumps({"pad": "p" * (6 * 1024 * 1024)}).encode()
    resp = _error(lambda: lam.invoke(FunctionName="inv-limits", Payload=too_big))
    assert (resp["Error"]["Code"], resp["ResponseMetadata"]["HTTPStatusCode"]) == (
        "RequestTooLargeException", 413)
    event = json.dumps({"pad": "p" * (1024 * 1024)}).encode()
    resp = _error(lambda: lam.invoke(FunctionName="inv-limits", InvocationType="Event",
                                     Payload=event))
    assert (resp["Error"]["Code"], resp["ResponseMetadata"]["HTTPStatusCode"]) == (
        "RequestTooLargeException", 413)
    resp = lam.invoke(FunctionName="inv-limits", Payload=json.dumps({"big": 6 * 1024 * 1024}))
    assert resp["FunctionError"] == "Unhandled"
    assert json.loads(resp["Payload"].read())["errorType"] == "Function.ResponseSizeTooLarge"
    resp = _error(lambda: lam.invoke(FunctionName="inv-limits", Payload=b"not json"))
    assert resp["Error"]["Code"] == "InvalidRequestContentException"


def test_reserved_concurrency_429(server: LiveServer) -> None:
    lam = server.lambda_()
    create_python_function(lam, "inv-reserved", APP)
    lam.put_function_concurrency(FunctionName="inv-reserved", ReservedConcurrentExecutions=0)
    resp = _error(lambda: lam.invoke(FunctionName="inv-reserved"))
    assert (resp["Error"]["Code"], resp["ResponseMetadata"]["HTTPStatusCode"]) == (
        "TooManyRequestsException", 429)
    assert resp["Reason"] == "ReservedFunctionConcurrentInvocationLimitExceeded"
    assert resp["ResponseMetadata"]["HTTPHeaders"]["retry-after"]
    lam.put_function_concurrency(FunctionName="inv-reserved", ReservedConcurrentExecutions=1)
    assert _throttled_while_busy(server, lam, "inv-reserved") == \
        "ReservedFunctionConcurrentInvocationLimitExceeded"


def _throttled_while_busy(server: LiveServer, lam, name: str) -> str | None:
    """Hold the function busy with one slow call; a second call must be throttled. Probing
    starts only once the slow call runs on the server: a probe that came first would take the
    one slot and throttle the slow call instead."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        slow = pool.submit(server.lambda_().invoke, FunctionName=name,
                           Payload=json.dumps({"sleep": 4}))
        while not slow.done() and server.admin("status")["execution"]["in_flight"] < 1:
            time.sleep(0.02)
        reason = None
        while not slow.done() and reason is None:
            try:
                lam.invoke(FunctionName=name, Payload=b"{}")
            except ClientError as e:
                assert e.response["Error"]["Code"] == "TooManyRequestsException"
                reason = e.response["Reason"]
            time.sleep(0.05)
        assert slow.result(60)["StatusCode"] == 200
    return reason


@pytest.fixture
def quick_retry_server(tmp_path: Path) -> Iterator[LiveServer]:
    yield from live_server(tmp_path, "--event-retry-delays", "0.2,0.2",
                           "--account-concurrency", "1")


def test_unreserved_pool_429_and_event_retries(quick_retry_server: LiveServer) -> None:
    server = quick_retry_server
    lam = server.lambda_()
    create_python_function(lam, "inv-pool", APP)
    assert _throttled_while_busy(server, lam, "inv-pool") == "ConcurrentInvocationLimitExceeded"

    resp = lam.invoke(FunctionName="inv-pool", InvocationType="Event", Payload=b'{"fail": 1}')
    assert resp["StatusCode"] == 202
    request_id = resp["ResponseMetadata"]["RequestId"]
    failed = [e for e in _events(server, "inv-pool", "failed") if e["RequestId"] == request_id]
    assert failed and failed[0]["Attempts"] == 3 and failed[0]["ErrorType"]

    resp = lam.invoke(FunctionName="inv-pool", InvocationType="Event", Payload=b'{"tag": 1}')
    ok = [e for e in _events(server, "inv-pool", "succeeded")
          if e["RequestId"] == resp["ResponseMetadata"]["RequestId"]]
    assert ok and ok[0]["Attempts"] == 1


def test_event_is_durable_across_restart(fresh_server: LiveServer) -> None:
    lam = fresh_server.lambda_()
    create_python_function(lam, "inv-durable", APP)
    # Reserved concurrency 0 keeps the accepted event queued (throttled) until after restart.
    lam.put_function_concurrency(FunctionName="inv-durable", ReservedConcurrentExecutions=0)
    resp = lam.invoke(FunctionName="inv-durable", InvocationType="Event", Payload=b'{"tag": 2}')
    assert resp["StatusCode"] == 202
    request_id = resp["ResponseMetadata"]["RequestId"]
    fresh_server.restart()
    queued = fresh_server.admin("events?function=inv-durable")
    assert [(e["RequestId"], e["Status"]) for e in queued] == [(request_id, "queued")]
    lam = fresh_server.lambda_()
    lam.delete_function_concurrency(FunctionName="inv-durable")
    events = _events(fresh_server, "inv-durable", "succeeded")
    assert [(e["RequestId"], e["Status"]) for e in events] == [(request_id, "succeeded")]
