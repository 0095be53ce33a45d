"""Every CLI subcommand, given bad input or a server that is not there, exits non-zero and
says why on stderr (no silent 0, no traceback)."""
from __future__ import annotations

import subprocess
import sys

import pytest

from tests.harness import LiveServer, free_port

pytestmark = pytest.mark.root

NOWHERE = f"http://127.0.0.1:{free_port()}"  # nothing listens there


def lambdaplane(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lambdaplane.cli", *args],
                          capture_output=True, text=True, timeout=120)


def assert_refused(out: subprocess.CompletedProcess[str], *words: str) -> None:
    assert out.returncode != 0, (out.stdout, out.stderr)
    assert "Traceback" not in out.stderr, out.stderr
    for word in words:
        assert word in out.stderr, out.stderr


def test_logs_of_a_function_that_does_not_exist(server: LiveServer) -> None:
    assert_refused(lambdaplane("logs", "nosuch", "--endpoint", server.endpoint),
                   "lambdaplane logs", "nosuch")


@pytest.mark.parametrize("command", [
    ["logs", "hello"], ["status"], ["ps"], ["net", "show"],
    ["run", "--subnet", "subnet-1", "--", "true"], ["demo", "--samples", "1"],
])
def test_client_commands_name_an_unreachable_server(command: list[str]) -> None:
    args = [command[0], "--endpoint", NOWHERE, *command[1:]]  # before `run`'s `--`
    assert_refused(lambdaplane(*args), NOWHERE)


def test_run_with_an_unknown_subnet(server: LiveServer) -> None:
    assert_refused(lambdaplane("run", "--subnet", "subnet-0nosuch", "--endpoint",
                               server.endpoint, "--", "true"), "subnet-0nosuch")


def test_run_on_a_host_without_an_agent(server: LiveServer) -> None:
    assert_refused(lambdaplane("run", "--subnet", "subnet-1", "--host", "nosuch", "--endpoint",
                               server.endpoint, "--", "true"),
                   "no live host named 'nosuch'", "lambdaplane agent --name nosuch")


def test_run_without_a_command(server: LiveServer) -> None:
    assert_refused(lambdaplane("run", "--subnet", "subnet-1", "--endpoint", server.endpoint),
                   "no command given")


def test_bench_against_an_unreachable_server(tmp_path) -> None:
    assert_refused(lambdaplane("bench", "invoke", "--quick", "--endpoint", NOWHERE,
                               "--out", str(tmp_path)), "cannot reach", NOWHERE)


@pytest.mark.parametrize("args, words", [
    (["serve", "--auth", "sigv4"], ["--credentials"]),
    (["serve", "--auth", "sigv4", "--credentials", "/nonexistent/creds"], ["credentials"]),
    (["serve", "--instance", "NOT-OK", "--data-dir", "/nonexistent/lp"], ["instance"]),
    (["clean", "--instance", "NOT-OK"], ["instance"]),
    (["nosuchcommand"], ["invalid choice"]),
    (["logs"], ["name"]),
    (["net", "list"], ["invalid choice"]),
    (["bench", "nosuch"], ["invalid choice"]),
])
def test_bad_arguments(args: list[str], words: list[str]) -> None:
    assert_refused(lambdaplane(*args), *words)
