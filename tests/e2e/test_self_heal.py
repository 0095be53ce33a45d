"""A server whose zygote vanishes under it (SIGKILL from outside) notices at once, says so in
status, and rebuilds it and its pre-forked sandboxes within seconds, without a restart:
cold and warm invokes keep working."""
from __future__ import annotations

import json
import os
import signal
import time

import pytest

from lambdaplane.cleanup import CGROUP_ROOT
from lambdaplane.net.names import Names
from tests.harness import LiveServer, create_python_function

pytestmark = pytest.mark.root

HANDLER = "def handler(event, context):\n    return {'n': event['n']}\n"


def zygote_pids(server: LiveServer) -> set[int]:
    root = CGROUP_ROOT / "pids" / Names(server.instance).cgroup_dir
    pids: set[int] = set()
    for d in root.glob("zygote-*"):
        pids.update(int(x) for x in (d / "cgroup.procs").read_text().split())
    return pids


def execution(server: LiveServer) -> dict:
    return server.admin("status")["execution"]  # type: ignore[index]


def wait_for(what: str, ok, timeout_s: float = 30.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while True:
        value = ok()
        if value:
            return value
        assert time.monotonic() < deadline, f"not within {timeout_s}s: {what}"
        time.sleep(0.1)


def invoke(server: LiveServer, name: str, n: int) -> None:
    out = server.lambda_().invoke(FunctionName=name, Payload=json.dumps({"n": n}))
    assert json.loads(out["Payload"].read()) == {"n": n}


def test_vanished_zygote_is_noticed_and_rebuilt(server: LiveServer) -> None:
    create_python_function(server.lambda_(), "heal", HANDLER)
    invoke(server, "heal", 1)
    target = execution(server)["prewarmed_target"]
    wait_for("pre-forked sandboxes ready", lambda: execution(server)["prewarmed_ready"] == target)
    before = zygote_pids(server)
    assert len(before) == 1
    os.kill(before.pop(), signal.SIGKILL)

    # noticed and replaced: a new zygote, counted in status; the pre-forked sandboxes rebuilt
    try:
        state = wait_for("zygote replaced", lambda: (s := execution(server))[
            "zygote_restarts"] >= 1 and not s["zygotes_down"] and s)
    except AssertionError as e:
        raise AssertionError(f"{e}\n{execution(server)}\n{server.log()[-4000:]}") from None
    assert state["zygote_restarts"] == 1
    wait_for("new zygote running", lambda: execution(server)["zygotes"]
             and len(zygote_pids(server)) == 1)
    wait_for("pre-forked sandboxes rebuilt",
             lambda: execution(server)["prewarmed_ready"] == target)
    create_python_function(server.lambda_(), "after", HANDLER)
    invoke(server, "after", 2)  # cold, through the new zygote
    invoke(server, "heal", 3)  # its environment died with the old zygote: a new one
    invoke(server, "heal", 4)  # warm
