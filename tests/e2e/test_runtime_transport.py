"""`serve --runtime-transport http`: the built-in Python runtimes back on the HTTP Runtime API
(no socketpair in the sandbox), with the same results, function errors and logs as the default
socketpair transport (tests/hostile/test_runtime_socket.py covers that one)."""
from __future__ import annotations

import base64
import json
from collections.abc import Iterator

import pytest

from tests.conftest import live_server
from tests.harness import LiveServer, create_python_function

pytestmark = pytest.mark.root

APP = r'''
import os, socket

def unix_sockets():
    found = 0
    for name in os.listdir("/proc/self/fd"):
        try:
            if os.readlink("/proc/self/fd/" + name).startswith("socket:"):
                with socket.socket(fileno=os.dup(int(name))) as s:
                    found += s.family == socket.AF_UNIX
        except OSError:
            pass
    return found

def handler(event, context):
    print("handling", context.aws_request_id)
    if event.get("fail"):
        raise ValueError("asked to fail")
    return {"unix_sockets": unix_sockets()}
'''


@pytest.fixture(scope="module")
def http_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    yield from live_server(tmp_path_factory.mktemp("lp"), "--runtime-transport", "http")


def test_http_transport_runs_python_functions(http_server: LiveServer) -> None:
    lam = http_server.lambda_()
    create_python_function(lam, "transport-http", APP)
    out = lam.invoke(FunctionName="transport-http", Payload=b"{}", LogType="Tail")
    body = json.loads(out["Payload"].read())
    assert body["unix_sockets"] == 0  # the runtime speaks HTTP: no socketpair handed over
    log = base64.b64decode(out["LogResult"]).decode()
    assert "handling " in log and "REPORT RequestId:" in log
    failed = lam.invoke(FunctionName="transport-http", Payload=json.dumps({"fail": True}))
    assert failed["FunctionError"] == "Unhandled"
    assert json.loads(failed["Payload"].read())["errorType"] == "ValueError"


def test_socket_transport_is_the_default(server: LiveServer) -> None:
    lam = server.lambda_()
    create_python_function(lam, "transport-socket", APP)
    out = lam.invoke(FunctionName="transport-socket", Payload=b"{}", LogType="Tail")
    body = json.loads(out["Payload"].read())
    assert body["unix_sockets"] == 1  # the socketpair, handed over at fork
    log = base64.b64decode(out["LogResult"]).decode()
    assert "handling " in log and "REPORT RequestId:" in log
    failed = lam.invoke(FunctionName="transport-socket", Payload=json.dumps({"fail": True}))
    assert failed["FunctionError"] == "Unhandled"
    assert json.loads(failed["Payload"].read())["errorType"] == "ValueError"
