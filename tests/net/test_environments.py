"""ExecutionEnvironments end to end on the real kernel: pooled netns, cgroups, zygote, Runtime
API. Python and provided.al2023 (a shell bootstrap using curl) functions; cold start then warm
reuse, function errors, timeout, exit, OOM, logs, retire, idle reaping — and after stop, not one
namespace, link, nft table, cgroup or process of the test instance is left."""
from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from lambdaplane.cleanup import fresh_instance, clean_instance, leftovers
from lambdaplane.config import Settings
from lambdaplane.net.executor import NetThread
from lambdaplane.net.names import Names
from lambdaplane.sandbox.environments import ExecutionEnvironments
from lambdaplane.sandbox.logs import tail_lines
from lambdaplane.sandbox.types import FunctionSpec, Invocation

pytestmark = pytest.mark.root

REGION = "us-east-1"

PYTHON_APP = r'''
import os, time
ENV_TOKEN = os.urandom(8).hex()  # pid is 1 in every environment (own pid ns)
calls = 0

def handler(event, context):
    global calls
    calls += 1
    action = event.get("action")
    print(f"handling {action} #{calls}")
    if action == "fail":
        raise ValueError("bad value")
    if action == "sleep":
        time.sleep(event["seconds"])
    if action == "exit":
        os._exit(1)
    if action == "oom":
        hog = []
        while True:
            hog.append(bytearray(16 * 1024 * 1024))
    return {
        "calls": calls, "env_token": ENV_TOKEN, "uid": os.getuid(),
        "request_id": context.aws_request_id,
        "env": {k: os.environ.get(k) for k in (
            "_HANDLER", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_EXECUTION_ENV",
            "AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
            "AWS_LAMBDA_FUNCTION_VERSION", "AWS_LAMBDA_INITIALIZATION_TYPE",
            "AWS_LAMBDA_LOG_GROUP_NAME", "AWS_LAMBDA_LOG_STREAM_NAME", "AWS_LAMBDA_RUNTIME_API",
            "LAMBDA_TASK_ROOT", "LAMBDA_RUNTIME_DIR", "TZ", "LANG", "PATH", "LD_LIBRARY_PATH",
            "MY_VAR")},
    }
'''

SHELL_BOOTSTRAP = r'''#!/bin/sh
set -eu
API="http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime"
echo "bootstrap starting"
while true; do
  HEADERS="$(mktemp)"
  EVENT="$(curl -sS -D "$HEADERS" "$API/invocation/next")"
  ID="$(grep -i '^Lambda-Runtime-Aws-Request-Id:' "$HEADERS" | cut -d: -f2 | tr -d '[:space:]')"
  echo "shell got $EVENT"
  curl -sS -o /dev/null -X POST "$API/invocation/$ID/response" \
    -d "{\"echo\": $EVENT, \"exec_env\": \"${AWS_EXECUTION_ENV:-unset}\"}"
done
'''


class Harness:
    def __init__(self, envs: ExecutionEnvironments, tmp: Path) -> None:
        self.envs = envs
        self.tmp = tmp

    def spec(self, name: str, runtime: str = "python3.11", files: dict[str, str] | None = None,
             handler: str = "app.handler", memory_mb: int = 128, timeout_s: int = 3,
             revision: str = "r1") -> FunctionSpec:
        code = self.tmp / f"code-{name}-{revision}"
        code.mkdir(exist_ok=True)
        code.chmod(0o755)  # the function runs as an unprivileged uid
        for filename, text in (files or {"app.py": PYTHON_APP}).items():
            path = code / filename
            path.write_text(text)
            path.chmod(0o755)
        return FunctionSpec(
            region=REGION, name=name,
            arn=f"arn:aws:lambda:{REGION}:000000000000:function:{name}", version="$LATEST",
            runtime=runtime, handler=handler, memory_mb=memory_mb, timeout_s=timeout_s,
            environment={"MY_VAR": "mine"}, code_sha256="0" * 64, code_dir=code,
            revision_id=revision)

    async def invoke(self, spec: FunctionSpec, event: dict):
        request_id = str(uuid.uuid4())
        result = await self.envs.invoke(spec, Invocation(request_id, json.dumps(event).encode()))
        return request_id, result


@pytest_asyncio.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    instance = fresh_instance("t")
    settings = Settings(data_dir=tmp_path / "data", instance=instance, uplink=False,
                        pool_size=2, keep_alive_s=300)
    names = Names(settings.ensure_instance())
    net = NetThread()
    envs = ExecutionEnvironments(settings, names, net)
    try:
        await envs.start()
        yield Harness(envs, tmp_path)
    finally:
        await envs.stop()
        net.close()
        left = await asyncio.to_thread(leftovers, instance)
        await asyncio.to_thread(clean_instance, instance)
        assert not left, f"left behind: {left}"


async def test_python_cold_then_warm(harness: Harness) -> None:
    spec = harness.spec("hello")
    rid1, cold = await harness.invoke(spec, {"action": "hi"})
    assert cold.function_error is None, cold.payload
    assert cold.cold_start and cold.init_duration_ms is not None
    body = json.loads(cold.payload)
    assert body["calls"] == 1 and body["request_id"] == rid1
    assert body["uid"] == harness.envs.settings.sandbox_uid
    assert f"START RequestId: {rid1} Version: $LATEST" in cold.log_text
    assert "handling hi #1" in cold.log_text
    assert f"END RequestId: {rid1}" in cold.log_text
    assert re.search(rf"REPORT RequestId: {rid1}\tDuration: [\d.]+ ms\tBilled Duration: \d+ ms\t"
                     rf"Memory Size: 128 MB\tMax Memory Used: \d+ MB\tInit Duration: [\d.]+ ms",
                     cold.log_text), cold.log_text

    rid2, warm = await harness.invoke(spec, {"action": "hi"})
    assert not warm.cold_start and warm.init_duration_ms is None
    warm_body = json.loads(warm.payload)
    assert warm_body["calls"] == 2 and warm_body["env_token"] == body["env_token"]  # the same environment
    assert "Init Duration" not in warm.log_text and "handling hi #2" in warm.log_text
    assert "handling hi #1" not in warm.log_text
    assert harness.envs.stats()["environments"]["idle"] == 1

    env = body["env"]
    assert env == {
        "_HANDLER": "app.handler", "AWS_REGION": REGION, "AWS_DEFAULT_REGION": REGION,
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.11", "AWS_LAMBDA_FUNCTION_NAME": "hello",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128", "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/hello",
        "AWS_LAMBDA_LOG_STREAM_NAME": env["AWS_LAMBDA_LOG_STREAM_NAME"],
        "AWS_LAMBDA_RUNTIME_API": "169.254.1.1:9001", "LAMBDA_TASK_ROOT": "/var/task",
        "LAMBDA_RUNTIME_DIR": "/var/runtime", "TZ": "UTC", "LANG": "en_US.UTF-8",
        "PATH": env["PATH"], "LD_LIBRARY_PATH": env["LD_LIBRARY_PATH"], "MY_VAR": "mine"}
    assert re.fullmatch(r"\d{4}/\d\d/\d\d/\[\$LATEST\][0-9a-f]{32}",
                        env["AWS_LAMBDA_LOG_STREAM_NAME"])

    # the per-function log file holds both invocations, in order
    lines = tail_lines(harness.envs.settings.data_dir, REGION, "hello", 100)
    assert lines is not None
    starts = [line for line in lines if line.startswith("START")]
    assert starts == [f"START RequestId: {rid1} Version: $LATEST",
                      f"START RequestId: {rid2} Version: $LATEST"]

    # a new revision never reuses the old environment
    _, other = await harness.invoke(harness.spec("hello", revision="r2"), {"action": "hi"})
    assert other.cold_start


async def test_function_error_keeps_environment(harness: Harness) -> None:
    spec = harness.spec("fails")
    _, result = await harness.invoke(spec, {"action": "fail"})
    assert result.function_error == "Unhandled"
    body = json.loads(result.payload)
    assert body["errorType"] == "ValueError" and body["errorMessage"] == "bad value"
    _, again = await harness.invoke(spec, {"action": "hi"})
    assert not again.cold_start and again.function_error is None


async def test_timeout_kills_environment(harness: Harness) -> None:
    spec = harness.spec("slow", timeout_s=1)
    rid, result = await harness.invoke(spec, {"action": "sleep", "seconds": 30})
    assert result.function_error == "Unhandled" and result.error_type == "Sandbox.Timedout"
    body = json.loads(result.payload)
    assert body["errorType"] == "Sandbox.Timedout"
    assert re.fullmatch(rf"\d{{4}}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{{3}}Z {rid} "
                        r"Task timed out after 1\.00 seconds", body["errorMessage"])
    assert body["errorMessage"] in result.log_text
    assert 1000 <= result.duration_ms < 3000
    _, after = await harness.invoke(spec, {"action": "hi"})
    assert after.cold_start and after.function_error is None


async def test_exit_during_invocation(harness: Harness) -> None:
    spec = harness.spec("exits")
    rid, result = await harness.invoke(spec, {"action": "exit"})
    assert result.error_type == "Runtime.ExitError" and result.function_error == "Unhandled"
    assert json.loads(result.payload) == {
        "errorType": "Runtime.ExitError",
        "errorMessage": f"RequestId: {rid} Error: Runtime exited with error: exit status 1"}
    _, after = await harness.invoke(spec, {"action": "hi"})
    assert after.cold_start and after.function_error is None


async def test_out_of_memory(harness: Harness) -> None:
    spec = harness.spec("hog", memory_mb=128)
    _, result = await harness.invoke(spec, {"action": "oom"})
    assert result.error_type == "Runtime.OutOfMemory", result.payload
    assert json.loads(result.payload)["errorType"] == "Runtime.OutOfMemory"


async def test_init_error_is_reported(harness: Harness) -> None:
    spec = harness.spec("broken", files={"app.py": "import not_a_module_anywhere\n"})
    _, result = await harness.invoke(spec, {})
    assert result.function_error == "Unhandled"
    assert json.loads(result.payload)["errorType"] == "Runtime.ImportModuleError"


async def test_provided_shell_bootstrap(harness: Harness) -> None:
    spec = harness.spec("shell", runtime="provided.al2023", handler="function.handler",
                        files={"bootstrap": SHELL_BOOTSTRAP})
    _, cold = await harness.invoke(spec, {"n": 1})
    assert cold.function_error is None, (cold.payload, cold.log_text)
    assert json.loads(cold.payload) == {"echo": {"n": 1}, "exec_env": "unset"}
    assert "bootstrap starting" in cold.log_text and 'shell got {"n": 1}' in cold.log_text
    _, warm = await harness.invoke(spec, {"n": 2})
    assert not warm.cold_start and json.loads(warm.payload)["echo"] == {"n": 2}


async def test_retire_and_idle_reaping(harness: Harness) -> None:
    spec = harness.spec("retired")
    await harness.invoke(spec, {"action": "hi"})
    assert harness.envs.stats()["environments"]["idle"] == 1
    await harness.envs.retire(spec.key)
    _, after = await harness.invoke(spec, {"action": "hi"})
    assert after.cold_start

    harness.envs.settings.keep_alive_s = 0.2
    for _ in range(200):
        if not harness.envs.stats()["environments"]["idle"]:
            break
        await asyncio.sleep(0.05)
    assert harness.envs.stats()["environments"]["idle"] == 0


async def test_concurrent_invocations_use_separate_environments(harness: Harness) -> None:
    spec = harness.spec("parallel")
    results = await asyncio.gather(*(harness.invoke(spec, {"action": "sleep", "seconds": 0.3})
                                     for _ in range(3)))
    pids = {json.loads(r.payload)["env_token"] for _, r in results}
    assert len(pids) == 3
    assert harness.envs.in_flight(spec.key) == 0 and harness.envs.total_in_flight() == 0
