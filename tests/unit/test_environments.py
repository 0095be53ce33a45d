"""ExecutionEnvironments' pure parts (no root): the reserved environment variables and how an
exit status is worded. The kernel-backed behaviour is in tests/net/test_environments.py."""
from __future__ import annotations

from pathlib import Path

from lambdaplane.sandbox.environments import exit_description, reserved_environment
from lambdaplane.sandbox.types import FunctionSpec


def _spec(runtime: str, environment: dict[str, str]) -> FunctionSpec:
    return FunctionSpec(region="eu-west-1", name="f", arn="arn:aws:lambda:eu-west-1:1:function:f",
                        version="3", runtime=runtime, handler="app.handler", memory_mb=256,
                        timeout_s=3, environment=environment, code_sha256="0", code_dir=Path("/x"),
                        revision_id="r")


def test_reserved_variables_win_and_user_variables_pass_through() -> None:
    env = reserved_environment(_spec("python3.11", {"A": "1", "AWS_REGION": "forged"}),
                               "stream", 9001)
    assert env["A"] == "1"
    assert env["AWS_REGION"] == env["AWS_DEFAULT_REGION"] == "eu-west-1"
    assert env["AWS_EXECUTION_ENV"] == "AWS_Lambda_python3.11"
    assert env["AWS_LAMBDA_FUNCTION_VERSION"] == "3"
    assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "256"
    assert env["AWS_LAMBDA_RUNTIME_API"] == "169.254.1.1:9001"
    assert env["AWS_LAMBDA_LOG_STREAM_NAME"] == "stream"
    assert env["AWS_LAMBDA_LOG_GROUP_NAME"] == "/aws/lambda/f"
    assert env["TZ"] == "UTC" and env["LANG"] == "en_US.UTF-8"


def test_provided_runtimes_have_no_execution_env() -> None:
    env = reserved_environment(_spec("provided.al2023", {"AWS_EXECUTION_ENV": "x"}), "s", 9001)
    assert "AWS_EXECUTION_ENV" not in env


def test_exit_description_matches_lambda_wording() -> None:
    assert exit_description(1) == "exit status 1"
    assert exit_description(0) == "exit status 0"
    assert exit_description(-9) == "signal: killed"
    assert exit_description(-6) == "signal: aborted"
