"""One data dir, one server: a second `serve` or a `clean` on the data dir of a running server
refuses with a message naming the running server's pid, and touches nothing (before the lock,
both removed the running server's namespaces and cgroups and killed its zygote)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.harness import LiveServer, create_python_function, free_port

pytestmark = pytest.mark.root

HANDLER = "def handler(event, context):\n    return {'n': event['n']}\n"


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lambdaplane.cli", *args],
                          capture_output=True, text=True, timeout=60, check=False)


def invoke(server: LiveServer, name: str, n: int) -> None:
    out = server.lambda_().invoke(FunctionName=name, Payload=json.dumps({"n": n}))
    assert json.loads(out["Payload"].read()) == {"n": n}


def kernel_objects(server: LiveServer) -> set[str]:
    """Namespaces, links, nft tables and cgroups (pre-forked processes come and go)."""
    return {found for found in server.leftovers() if not found.startswith("processes ")}


def test_second_server_and_clean_refuse_and_touch_nothing(fresh_server: LiveServer) -> None:
    server = fresh_server
    assert server.proc is not None
    pid = server.proc.pid
    create_python_function(server.lambda_(), "first", HANDLER)
    invoke(server, "first", 1)  # a warm environment and a zygote exist now
    before = kernel_objects(server)
    assert before, "the running server should own kernel objects"

    second = run_cli("serve", "--port", str(free_port()), "--data-dir", str(server.data_dir),
                     "--no-uplink")
    assert second.returncode != 0
    assert f"pid {pid}" in second.stderr and "in use" in second.stderr, second.stderr

    clean = run_cli("clean", "--data-dir", str(server.data_dir))
    assert clean.returncode != 0
    assert f"pid {pid}" in clean.stderr and "nothing removed" in clean.stderr, clean.stderr

    assert kernel_objects(server) >= before  # every namespace, link, table, cgroup still there
    assert server.proc.poll() is None
    invoke(server, "first", 2)  # warm path intact
    create_python_function(server.lambda_(), "second", HANDLER)
    invoke(server, "second", 3)  # cold path (zygote) intact


def test_lock_is_free_once_the_server_is_gone(fresh_server: LiveServer) -> None:
    """A server killed with SIGKILL leaves no stale lock: the kernel drops it."""
    fresh_server.kill()
    fresh_server.start()
    create_python_function(fresh_server.lambda_(), "after", HANDLER)
    invoke(fresh_server, "after", 4)
