"""AWS's own Runtime Interface Client (awslambdaric, from PyPI) against our Runtime API: a
`provided.al2023` function packaged as AWS documents for a custom Python runtime — the client
vendored into the zip, a `bootstrap` that runs `python3 -m awslambdaric app.handler` — created
and invoked through boto3. Its results, its error payloads (Runtime.ImportModuleError, an
unhandled exception) and its log lines come back as AWS's would."""
from __future__ import annotations

import base64
import importlib.util
import json
from pathlib import Path

import pytest

from tests.harness import LiveServer, make_zip

pytestmark = pytest.mark.root

BOOTSTRAP = """#!/bin/sh
export PYTHONPATH=/var/task
exec /usr/bin/python3 -m awslambdaric "$_HANDLER"
"""

APP = """
import os

def handler(event, context):
    print("ric handling", event.get("n"))
    if event.get("fail"):
        raise KeyError("asked to fail")
    return {"n": event.get("n"), "request_id": context.aws_request_id,
            "function": context.function_name, "memory": context.memory_limit_in_mb,
            "left_ms": context.get_remaining_time_in_millis(),
            "region": os.environ["AWS_REGION"]}
"""

# awslambdaric and what it imports (pip's own names for them)
VENDORED = ("awslambdaric", "simplejson", "snapshot_restore_py", "runtime_client")


def _vendored_files() -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    for module in VENDORED:
        spec = importlib.util.find_spec(module)
        assert spec is not None and spec.origin is not None, f"{module} is not installed"
        if spec.submodule_search_locations:  # a package: the whole directory
            root = Path(next(iter(spec.submodule_search_locations)))
            for path in root.rglob("*"):
                if path.is_file() and "__pycache__" not in path.parts:
                    files[str(path.relative_to(root.parent))] = path.read_bytes()
        else:
            files[Path(spec.origin).name] = Path(spec.origin).read_bytes()
    return files


def _create(lam, name: str, app: str) -> None:
    files = {**_vendored_files(), "bootstrap": BOOTSTRAP, "app.py": app}
    lam.create_function(FunctionName=name, Runtime="provided.al2023", Handler="app.handler",
                        Role="arn:aws:iam::000000000000:role/lambda", MemorySize=256,
                        Timeout=10, Code={"ZipFile": make_zip(files, {"bootstrap": 0o755})})
    lam.get_waiter("function_active_v2").wait(FunctionName=name,
                                              WaiterConfig={"Delay": 0.2, "MaxAttempts": 100})


def test_aws_runtime_interface_client_serves_invocations(server: LiveServer) -> None:
    lam = server.lambda_()
    _create(lam, "ric-ok", APP)
    seen = []
    for n in range(3):  # a cold start, then the same environment warm
        resp = lam.invoke(FunctionName="ric-ok", Payload=json.dumps({"n": n}), LogType="Tail")
        assert resp["StatusCode"] == 200 and "FunctionError" not in resp
        body = json.loads(resp["Payload"].read())
        assert body["n"] == n and body["function"] == "ric-ok" and body["memory"] == "256"  # a str, as in AWS
        assert body["region"] == "us-east-1" and 0 < body["left_ms"] <= 10_000
        assert body["request_id"] == resp["ResponseMetadata"]["RequestId"]
        log = base64.b64decode(resp["LogResult"]).decode()
        assert f"ric handling {n}" in log and f"END RequestId: {body['request_id']}" in log
        seen.append("Init Duration" in log)
    assert seen == [True, False, False]

    resp = lam.invoke(FunctionName="ric-ok", Payload=json.dumps({"fail": True}))
    assert resp["FunctionError"] == "Unhandled"
    error = json.loads(resp["Payload"].read())
    assert error["errorType"] == "KeyError" and "asked to fail" in error["errorMessage"]
    assert isinstance(error["stackTrace"], list) and error["stackTrace"]


def test_aws_runtime_interface_client_reports_init_errors(server: LiveServer) -> None:
    lam = server.lambda_()
    _create(lam, "ric-broken", "import no_such_module_here\n")
    resp = lam.invoke(FunctionName="ric-broken", Payload=b"{}")
    assert resp["FunctionError"] == "Unhandled"
    error = json.loads(resp["Payload"].read())
    assert error["errorType"] == "Runtime.ImportModuleError"
    assert "no_such_module_here" in error["errorMessage"]
