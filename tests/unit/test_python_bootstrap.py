"""The Python runtime (runtimes/python_bootstrap.py) against a stub Runtime API on 127.0.0.1,
run standalone under the system interpreter exactly as the zygote runs it (-I -S): AWS's
success/error/init-error payloads, the context object and stdout per invocation. No root."""
from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from lambdaplane.sandbox.zygote import default_interpreter
from tests.unit.runtime_api_stub import RuntimeApiStub

BOOTSTRAP = Path(__file__).parents[2] / "lambdaplane/sandbox/runtimes/python_bootstrap.py"

APP = '''
import os, sys
def handler(event, context):
    print("hello from", event.get("name"))
    return {
        "event": event,
        "request_id": context.aws_request_id,
        "function_name": context.function_name,
        "function_version": context.function_version,
        "arn": context.invoked_function_arn,
        "memory": context.memory_limit_in_mb,
        "log_group": context.log_group_name,
        "log_stream": context.log_stream_name,
        "remaining": context.get_remaining_time_in_millis(),
        "trace": os.environ.get("_X_AMZN_TRACE_ID"),
        "client_custom": context.client_context.custom if context.client_context else None,
        "client_app": context.client_context.client.app_title if context.client_context
                      else None,
        "cognito": context.identity.cognito_identity_id,
        "cwd": os.getcwd(),
        "path0": sys.path[0],
    }

def fails(event, context):
    raise ValueError("boom " + str(event))

def unserialisable(event, context):
    return {1, 2}

def exits(event, context):
    sys.exit(7)
'''


@pytest.fixture
def stub() -> Iterator[RuntimeApiStub]:
    s = RuntimeApiStub()
    try:
        yield s
    finally:
        s.close()


def _start(stub: RuntimeApiStub, task: Path, handler: str) -> subprocess.Popen[bytes]:
    env = {"AWS_LAMBDA_RUNTIME_API": stub.address, "_HANDLER": handler,
           "LAMBDA_TASK_ROOT": str(task), "AWS_LAMBDA_FUNCTION_NAME": "f",
           "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128",
           "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/f",
           "AWS_LAMBDA_LOG_STREAM_NAME": "2024/01/01/[$LATEST]abc", "PATH": "/usr/bin:/bin"}
    return subprocess.Popen([default_interpreter(), "-I", "-S", str(BOOTSTRAP)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


@pytest.fixture
def task(tmp_path: Path) -> Path:
    (tmp_path / "app.py").write_text(APP)
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "mod.py").write_text("def h(event, context):\n    return 'nested'\n")
    (tmp_path / "needs_dep.py").write_text("import not_installed_anywhere\n")
    (tmp_path / "broken.py").write_text("def h(:\n")
    (tmp_path / "raises.py").write_text("raise RuntimeError('at import')\n")
    return tmp_path


def _stop(proc: subprocess.Popen[bytes]) -> str:
    proc.kill()
    out, _ = proc.communicate(timeout=10)
    return out.decode()


def test_success_context_and_connection_reuse(stub: RuntimeApiStub, task: Path) -> None:
    proc = _start(stub, task, "app.handler")
    try:
        client_context = {"custom": {"k": "v"}, "client": {"app_title": "demo"}}
        stub.invoke("req-1", {"name": "one"}, deadline_in_ms=5000, headers={
            "Lambda-Runtime-Trace-Id": "Root=1-abc",
            "Lambda-Runtime-Client-Context": json.dumps(client_context),
            "Lambda-Runtime-Cognito-Identity": json.dumps({"cognitoIdentityId": "cid"})})
        first = stub.next_posted()
        stub.invoke("req-2", {"name": "two"}, headers={
            # base64 (X-Amz-Client-Context's form) is decoded too
            "Lambda-Runtime-Client-Context": base64.b64encode(
                json.dumps(client_context).encode()).decode()})
        second = stub.next_posted()
    finally:
        output = _stop(proc)
    assert (first.kind, first.request_id) == ("response", "req-1")
    body = first.json()
    assert body["event"] == {"name": "one"}
    assert body["request_id"] == "req-1"
    assert body["function_name"] == "f"
    assert body["function_version"] == "$LATEST"
    assert body["memory"] == "128"
    assert body["arn"] == "arn:aws:lambda:us-east-1:000000000000:function:f"
    assert body["log_group"] == "/aws/lambda/f"
    assert body["log_stream"] == "2024/01/01/[$LATEST]abc"
    assert 0 < body["remaining"] <= 5000
    assert body["trace"] == "Root=1-abc"
    assert body["client_custom"] == {"k": "v"} and body["client_app"] == "demo"
    assert body["cognito"] == "cid"
    assert body["cwd"] == str(task) and body["path0"] == str(task)
    assert second.json()["event"] == {"name": "two"} and second.json()["trace"] is None
    assert second.json()["client_app"] == "demo"
    assert "hello from one" in output and "hello from two" in output
    # One keep-alive connection served every request.
    assert len(stub.connections) == 1


def test_handler_exception_is_aws_error_payload(stub: RuntimeApiStub, task: Path) -> None:
    proc = _start(stub, task, "app.fails")
    try:
        stub.invoke("req-e", 42)
        posted = stub.next_posted()
    finally:
        output = _stop(proc)
    assert posted.kind == "error" and posted.request_id == "req-e"
    assert posted.headers["Lambda-Runtime-Function-Error-Type"] == "ValueError"
    error = posted.json()
    assert error["errorType"] == "ValueError"
    assert error["errorMessage"] == "boom 42"
    assert error["requestId"] == "req-e"
    assert any("app.py" in line and "in fails" in line for line in error["stackTrace"])
    assert not any("python_bootstrap" in line for line in error["stackTrace"])
    assert "[ERROR] ValueError: boom 42" in output


def test_unserialisable_result_is_marshal_error(stub: RuntimeApiStub, task: Path) -> None:
    proc = _start(stub, task, "app.unserialisable")
    try:
        stub.invoke("req-m", {})
        posted = stub.next_posted()
    finally:
        _stop(proc)
    assert posted.kind == "error"
    assert posted.json()["errorType"] == "Runtime.MarshalError"
    assert posted.json()["errorMessage"] == (
        "Unable to marshal response: Object of type set is not JSON serializable")


def test_path_style_handler(stub: RuntimeApiStub, task: Path) -> None:
    proc = _start(stub, task, "pkg/mod.h")
    try:
        stub.invoke("req-p", {})
        posted = stub.next_posted()
    finally:
        _stop(proc)
    assert (posted.kind, posted.json()) == ("response", "nested")


@pytest.mark.parametrize("handler,error_type,message", [
    ("missing.handler", "Runtime.ImportModuleError",
     "Unable to import module 'missing': No module named 'missing'"),
    ("needs_dep.h", "Runtime.ImportModuleError",
     "Unable to import module 'needs_dep': No module named 'not_installed_anywhere'"),
    ("app.nothere", "Runtime.HandlerNotFound", "Handler 'nothere' missing on module 'app'"),
    ("app", "Runtime.MalformedHandlerName",
     "Bad handler 'app': not enough values to unpack (expected 2, got 1)"),
    ("broken.h", "Runtime.UserCodeSyntaxError", None),
    ("raises.h", "RuntimeError", "at import"),
])
def test_init_errors(stub: RuntimeApiStub, task: Path, handler: str, error_type: str,
                     message: str | None) -> None:
    proc = _start(stub, task, handler)
    try:
        posted = stub.next_posted()
        status = proc.wait(timeout=10)
    finally:
        output = _stop(proc)
    assert posted.kind == "init_error"
    assert posted.headers["Lambda-Runtime-Function-Error-Type"] == error_type
    error = posted.json()
    assert error["errorType"] == error_type
    assert error["requestId"] == ""
    if message is not None:
        assert error["errorMessage"] == message
    assert status != 0
    assert f"[ERROR] {error_type}" in output
    assert stub.next_calls == []  # never asked for work


def test_sys_exit_in_handler_ends_the_runtime(stub: RuntimeApiStub, task: Path) -> None:
    proc = _start(stub, task, "app.exits")
    try:
        stub.invoke("req-x", {})
        status = proc.wait(timeout=10)
    finally:
        _stop(proc)
    assert status == 7
    assert stub.posted.empty()


def test_bootstrap_is_stdlib_only() -> None:
    """It runs under the runtime's own interpreter with no site-packages at all."""
    code = ("import sys; sys.argv=['x']; import runpy; "
            f"m = runpy.run_path({str(BOOTSTRAP)!r}, run_name='not_main'); "
            "bad = [n for n in sys.modules if n.split('.')[0] in "
            "('lambdaplane', 'aiohttp', 'pyroute2', 'boto3', 'botocore')]; "
            "print(bad)")
    out = subprocess.run([default_interpreter(), "-I", "-S", "-c", code], capture_output=True,
                         text=True, timeout=30, check=True).stdout
    assert out.strip() == "[]"
