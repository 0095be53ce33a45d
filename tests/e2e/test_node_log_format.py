"""LoggingConfig on Node.js functions through boto3 against a live server: LogFormat JSON
writes each console call as one JSON object (timestamp, level, requestId, message), as AWS's
Node.js runtimes do, ApplicationLogLevel filters them, and errors the runtime logs are JSON
too; LogFormat Text stays AWS's tab-separated line. Both with node pre-started (the function
arrives after node was loaded: its format is set then) and exec'd at cold start."""
from __future__ import annotations

import base64
import json
from collections.abc import Iterator

import pytest

from lambdaplane.sandbox.runtimes import registry
from tests.conftest import live_server
from tests.e2e.vpc_support import wait_until
from tests.harness import NODE_MODES, LiveServer, make_zip

pytestmark = pytest.mark.root

RUNTIME = "nodejs22.x"
ROLE = "arn:aws:iam::000000000000:role/lambda"
WAIT = {"Delay": 0.2, "MaxAttempts": 150}

APP = """
exports.handler = async (event) => {
  console.trace("trace line");
  console.debug("debug line");
  console.info("info line");
  console.warn("low stock", 3);
  console.error({ order: 7, items: ["a"] });
  console.error("failed:", new TypeError("bad input"));
  if (event.fail) throw new RangeError("asked to fail");
  return "ok";
};
"""


@pytest.fixture(scope="module", params=NODE_MODES)
def server(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    if registry.get(RUNTIME) is None:
        pytest.skip(f"{RUNTIME} is not installed (make install)")
    args = ("--prestart", "0") if request.param == "exec" else ()
    for live in live_server(tmp_path_factory.mktemp("lp"), *args):
        if not args:  # a first cold start makes the runtime's pool of started nodes
            lam = live.lambda_()
            lam.create_function(FunctionName="primer", Runtime=RUNTIME, Handler="index.handler",
                                Role=ROLE, Code={"ZipFile": make_zip({"index.js": APP})})
            lam.get_waiter("function_active_v2").wait(FunctionName="primer", WaiterConfig=WAIT)
            lam.invoke(FunctionName="primer", Payload=b"{}")
        yield live


def _prestarted_ready(server: LiveServer) -> int:
    pools = server.admin("status")["execution"].get("prestarted", {})  # type: ignore[index]
    return int(pools.get(RUNTIME, {}).get("prewarmed_ready", 0))


def _create(server: LiveServer, name: str, logging: dict[str, str]) -> None:
    lam = server.lambda_()
    lam.create_function(FunctionName=name, Runtime=RUNTIME, Handler="index.handler", Role=ROLE,
                        Code={"ZipFile": make_zip({"index.js": APP})}, LoggingConfig=logging)
    lam.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig=WAIT)
    if server.extra_args != ["--prestart", "0"]:  # the next cold start takes a started node
        assert wait_until(lambda: _prestarted_ready(server) > 0, 60)


def _invoke(server: LiveServer, name: str, event: object) -> tuple[str, list[str]]:
    resp = server.lambda_().invoke(FunctionName=name, Payload=json.dumps(event),
                                   LogType="Tail")
    log = base64.b64decode(resp["LogResult"]).decode()
    return resp["ResponseMetadata"]["RequestId"], log.splitlines()


def _records(lines: list[str]) -> list[dict]:
    """The application's JSON records (the platform's have a "type")."""
    parsed = [json.loads(line) for line in lines if line.startswith("{")]
    return [r for r in parsed if "type" not in r]


def test_json_records_filtered_by_application_log_level(server: LiveServer) -> None:
    _create(server, "json-warn", {"LogFormat": "JSON", "ApplicationLogLevel": "WARN"})
    request_id, lines = _invoke(server, "json-warn", {})
    assert not any(line.startswith("START") for line in lines)  # platform records are JSON
    records = _records(lines)
    assert [r["level"] for r in records] == ["WARN", "ERROR", "ERROR"], records
    warn, obj, failed = records
    assert set(warn) == {"timestamp", "level", "requestId", "message"}
    assert warn["requestId"] == request_id and warn["message"] == "low stock 3"
    assert warn["timestamp"].endswith("Z") and "T" in warn["timestamp"]
    assert obj["message"] == {"order": 7, "items": ["a"]}  # one argument: as it is
    assert failed["message"].startswith("failed: TypeError: bad input")
    assert failed["errorType"] == "TypeError" and failed["errorMessage"] == "bad input"
    assert isinstance(failed["stackTrace"], list) and failed["stackTrace"][0].startswith(
        "TypeError: bad input")
    # an error the handler throws: the runtime's own line, the error as an object
    request_id, lines = _invoke(server, "json-warn", {"fail": True})
    error = _records(lines)[-1]
    assert error["level"] == "ERROR" and error["requestId"] == request_id
    assert error["message"]["errorType"] == "RangeError"
    assert error["message"]["errorMessage"] == "asked to fail"
    assert isinstance(error["message"]["stackTrace"], list)
    assert not any("Invoke Error" in line for line in lines)


def test_json_debug_level_and_text_format(server: LiveServer) -> None:
    _create(server, "json-debug", {"LogFormat": "JSON", "ApplicationLogLevel": "DEBUG"})
    _, lines = _invoke(server, "json-debug", {})
    levels = [r["level"] for r in _records(lines)]
    assert levels == ["DEBUG", "INFO", "WARN", "ERROR", "ERROR"]  # no TRACE below DEBUG
    # Text (the default): AWS's tab-separated lines, every level (no filtering in Text)
    _create(server, "text-logs", {"LogFormat": "Text"})
    request_id, lines = _invoke(server, "text-logs", {"fail": True})
    fields = [line.split("\t") for line in lines
              if line.count("\t") >= 3 and not line.startswith("REPORT")]
    assert [f[2] for f in fields] == ["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "ERROR",
                                      "ERROR"]
    assert all(f[1] == request_id for f in fields)
    assert fields[3][3] == "low stock 3" and fields[4][3] == "{ order: 7, items: [ 'a' ] }"
    assert fields[6][3] == "Invoke Error " and json.loads(fields[6][4])["errorType"] == \
        "RangeError"
    assert any(line.startswith("START RequestId:") for line in lines)
