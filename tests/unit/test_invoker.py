"""service/invoke.py through boto3, in-process with fake execution: the three invocation types,
tail logs, limits, concurrency admission, durable Event retries and restart."""
from __future__ import annotations

import base64
import concurrent.futures
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from lambdaplane.store.functions import FunctionRecord
from tests.harness import make_zip
from tests.unit.lambda_inprocess import InProcessLambda

ROLE = "arn:aws:iam::000000000000:role/lambda"


def _server(tmp_path: Path, **overrides) -> Iterator[InProcessLambda]:
    server = InProcessLambda(tmp_path / "data", overrides)
    server.start()
    try:
        yield server
    finally:
        server.platform.environments.release.set()
        server.stop()


@pytest.fixture
def api(tmp_path: Path, database_url: str | None) -> Iterator[InProcessLambda]:
    yield from _server(tmp_path, event_retry_delays_s=(0.05, 0.05),
                       database=database_url or "")


def _create(lam, name: str = "f1") -> None:
    lam.create_function(FunctionName=name, Runtime="python3.11", Handler="app.handler",
                        Role=ROLE, Code={"ZipFile": make_zip({"app.py": "x = 1\n"})})


def _events(api: InProcessLambda, wanted: int, status: str | None = None,
            timeout_s: float = 10.0) -> list:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        events = api.platform.invoker.events.recent()
        done = [e for e in events if (status is None or e.status == status)]
        if len(done) >= wanted:
            return events
        time.sleep(0.02)
    raise AssertionError(f"events never reached {wanted} x {status}: "
                         f"{api.platform.invoker.events.recent()}")


def _error(call):
    with pytest.raises(ClientError) as err:
        call()
    return err.value.response


def test_request_response_with_tail_log(api):
    lam = api.client()
    _create(lam)
    resp = lam.invoke(FunctionName="f1", Payload=b'{"n": 1}', LogType="Tail")
    assert resp["StatusCode"] == 200 and resp["ExecutedVersion"] == "$LATEST"
    assert "FunctionError" not in resp
    assert json.loads(resp["Payload"].read())["echo"] == {"n": 1}
    log = base64.b64decode(resp["LogResult"]).decode()
    request_id = resp["ResponseMetadata"]["RequestId"]
    assert f"START RequestId: {request_id}" in log
    spec, inv = api.platform.environments.invocations[-1]
    assert inv.request_id == request_id and spec.name == "f1"


def test_function_error_is_still_200(api):
    lam = api.client()
    _create(lam)
    resp = lam.invoke(FunctionName="f1", Payload=b'{"fail": true}')
    assert resp["StatusCode"] == 200 and resp["FunctionError"] == "Unhandled"
    assert json.loads(resp["Payload"].read())["errorMessage"] == "boom"


def test_response_over_6mb_becomes_an_error(api):
    lam = api.client()
    _create(lam)
    resp = lam.invoke(FunctionName="f1", Payload=json.dumps({"big": 6 * 1024 * 1024}))
    assert resp["FunctionError"] == "Unhandled"
    assert json.loads(resp["Payload"].read())["errorType"] == "Function.ResponseSizeTooLarge"


def test_dry_run_and_payload_limits(api):
    lam = api.client()
    _create(lam)
    assert lam.invoke(FunctionName="f1", InvocationType="DryRun")["StatusCode"] == 204
    assert api.platform.environments.invocations == []
    big_event = json.dumps({"x": "y" * (1024 * 1024)}).encode()
    resp = _error(lambda: lam.invoke(FunctionName="f1", InvocationType="Event",
                                     Payload=big_event))
    assert resp["Error"]["Code"] == "RequestTooLargeException"
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 413
    too_big = json.dumps({"x": "y" * (6 * 1024 * 1024)}).encode()
    resp = _error(lambda: lam.invoke(FunctionName="f1", Payload=too_big))
    assert (resp["Error"]["Code"], resp["ResponseMetadata"]["HTTPStatusCode"]) == (
        "RequestTooLargeException", 413)
    assert resp["Error"]["Message"] == ("Request must be smaller than 6291456 bytes for the "
                                        "InvokeFunction operation")
    resp = _error(lambda: lam.invoke(FunctionName="f1", Payload=b"not json"))
    assert resp["Error"]["Code"] == "InvalidRequestContentException"


def test_pending_function_cannot_be_invoked(api):
    lam = api.client()
    _create(lam)
    store = api.platform.functions.store
    record: FunctionRecord = store.get("us-east-1", "f1")
    record.state = "Pending"
    store.save(record)
    resp = _error(lambda: lam.invoke(FunctionName="f1"))
    assert (resp["Error"]["Code"], resp["ResponseMetadata"]["HTTPStatusCode"]) == (
        "ResourceConflictException", 409)
    assert resp["Error"]["Message"] == ("The operation cannot be performed at this time. The "
                                        "function is currently in the following state: Pending")


def test_reserved_concurrency_throttles(api):
    lam = api.client()
    _create(lam)
    lam.put_function_concurrency(FunctionName="f1", ReservedConcurrentExecutions=0)
    resp = _error(lambda: lam.invoke(FunctionName="f1"))
    assert (resp["Error"]["Code"], resp["ResponseMetadata"]["HTTPStatusCode"]) == (
        "TooManyRequestsException", 429)
    assert resp["Reason"] == "ReservedFunctionConcurrentInvocationLimitExceeded"
    assert resp["ResponseMetadata"]["HTTPHeaders"]["retry-after"] == "1"
    lam.put_function_concurrency(FunctionName="f1", ReservedConcurrentExecutions=1)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        held = pool.submit(api.client().invoke, FunctionName="f1", Payload=b'{"hold": true}')
        _wait_for(lambda: api.platform.invoker.admission.per_function[("us-east-1", "f1")] == 1)
        resp = _error(lambda: lam.invoke(FunctionName="f1"))
        assert resp["Reason"] == "ReservedFunctionConcurrentInvocationLimitExceeded"
        api.call(_release(api))
        assert held.result(10)["StatusCode"] == 200
    assert lam.invoke(FunctionName="f1")["StatusCode"] == 200


def test_unreserved_pool_is_capped(tmp_path):
    for api in _server(tmp_path, account_concurrency=2):
        lam = api.client()
        _create(lam)
        _create(lam, "other")
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            held = [pool.submit(api.client().invoke, FunctionName=n, Payload=b'{"hold": true}')
                    for n in ("f1", "other")]
            _wait_for(lambda: api.platform.invoker.admission.unreserved["us-east-1"] == 2)
            resp = _error(lambda: lam.invoke(FunctionName="f1"))
            assert resp["Error"]["Code"] == "TooManyRequestsException"
            assert resp["Reason"] == "ConcurrentInvocationLimitExceeded"
            api.call(_release(api))
            assert [h.result(10)["StatusCode"] for h in held] == [200, 200]


async def _release(api: InProcessLambda) -> None:
    api.platform.environments.release.set()


def _wait_for(condition, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition never became true"
        time.sleep(0.01)


def test_event_runs_in_background(api):
    lam = api.client()
    _create(lam)
    resp = lam.invoke(FunctionName="f1", InvocationType="Event", Payload=b'{"e": 1}')
    assert resp["StatusCode"] == 202
    request_id = resp["ResponseMetadata"]["RequestId"]
    events = _events(api, 1, "succeeded")
    assert events[0].request_id == request_id and events[0].attempts == 1
    assert api.platform.environments.invocations[-1][1].request_id == request_id


def test_event_retried_twice_then_given_up(api):
    lam = api.client()
    _create(lam)
    lam.invoke(FunctionName="f1", InvocationType="Event", Payload=b'{"fail": true}')
    events = _events(api, 1, "failed")
    assert events[0].attempts == 3 and events[0].error_type == "Exception"
    ids = {inv.request_id for _, inv in api.platform.environments.invocations}
    assert ids == {events[0].request_id}  # every attempt keeps the request id
    assert len(api.platform.environments.invocations) == 3


def test_event_succeeds_on_a_retry(api):
    lam = api.client()
    _create(lam)
    api.platform.environments.fail_first = 1
    lam.invoke(FunctionName="f1", InvocationType="Event", Payload=b'{}')
    events = _events(api, 1, "succeeded")
    assert events[0].attempts == 2


def test_event_survives_a_restart(api):
    lam = api.client()
    _create(lam)
    # The event is running (held) when the server stops: it must run again afterwards.
    resp = lam.invoke(FunctionName="f1", InvocationType="Event", Payload=b'{"hold": true}')
    request_id = resp["ResponseMetadata"]["RequestId"]
    _wait_for(lambda: len(api.platform.environments.invocations) == 1)
    api.restart()
    api.call(_release(api))
    events = _events(api, 1, "succeeded")
    assert events[0].request_id == request_id
    assert [inv.request_id for _, inv in api.platform.environments.invocations] == [request_id]


def test_event_of_deleted_function_is_dropped(api):
    lam = api.client()
    _create(lam)
    lam.put_function_concurrency(FunctionName="f1", ReservedConcurrentExecutions=0)
    lam.invoke(FunctionName="f1", InvocationType="Event", Payload=b'{}')
    time.sleep(0.1)  # throttled: stays queued without using attempts
    assert api.platform.invoker.events.recent()[0].status == "queued"
    lam.delete_function(FunctionName="f1")
    events = _events(api, 1, "dropped")
    assert events[0].attempts == 0
