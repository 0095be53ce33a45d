"""Adaptive capacity (sandbox/capacity.py) on a live server: a burst of simultaneous cold starts
raises the pool and pre-forked targets to its size (and they are filled), status and /metrics
say so and why, and after the (here short) capacity window without traffic the targets and
what is kept ready are back at the floors."""
from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Iterator

import pytest

from tests.conftest import live_server
from tests.harness import LiveServer, create_python_function

pytestmark = pytest.mark.root

BURST = 12
WINDOW_S = 30.0  # held for 15 s: time to fill on a loaded machine, before it decays
APP = """
import time

def handler(event, context):
    time.sleep(event["hold"])
    return "ok"
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    yield from live_server(tmp_path_factory.mktemp("lp"), "--pool-size", "3", "--prefork",
                           "2", "--capacity-window", str(WINDOW_S), "--keep-alive", "2")


def _execution(server: LiveServer) -> dict:
    return server.admin("status")["execution"]  # type: ignore[index]


def _wait(server: LiveServer, ok, what: str, timeout_s: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        ex = _execution(server)
        if ok(ex):
            return ex
        assert time.monotonic() < deadline, f"{what}: {json.dumps(ex)}"
        time.sleep(0.1)


def _burst(server: LiveServer, name: str, n: int) -> None:
    clients = [server.lambda_() for _ in range(n)]
    barrier = threading.Barrier(n)
    errors: list[object] = []

    def one(lam) -> None:
        barrier.wait()
        resp = lam.invoke(FunctionName=name, Payload=b'{"hold": 1.5}')
        if "FunctionError" in resp:
            errors.append(resp["Payload"].read())

    threads = [threading.Thread(target=one, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_a_burst_raises_the_targets_and_idleness_lowers_them(server: LiveServer) -> None:
    lam = server.lambda_()
    create_python_function(lam, "cap-burst", APP)
    quiet = _wait(server, lambda ex: ex["prewarmed_ready"] == 2 and ex["pool_ready"] >= 3,
                  "floors not filled")
    cap = quiet["capacity"]
    assert cap["mode"] == "adaptive"
    assert (cap["pool_target"], cap["pool_bound"]) == (3, "floor")
    assert (cap["prefork_target"], cap["prefork_bound"]) == (2, "floor")

    _burst(server, "cap-burst", BURST)
    # learnt: targets at the burst's size, and filled ahead of the next burst
    raised = _wait(server, lambda ex: ex["prewarmed_ready"] >= BURST and
                   ex["pool_ready"] >= BURST, "targets not raised and filled")
    cap = raised["capacity"]
    assert cap["learnt_peak"] >= BURST and cap["learnt_peaks"]["python3.11"] >= BURST
    assert cap["pool_bound"] == "demand" and cap["pool_target"] >= BURST
    assert cap["prefork_bound"] == "demand" and cap["prefork_target"] >= BURST
    with urllib.request.urlopen(server.endpoint + "/metrics", timeout=10) as r:
        metrics = r.read().decode()
    assert 'lambdaplane_capacity_target{bound="demand",kind="prefork"}' in metrics
    assert 'lambdaplane_capacity_learnt_peak{runtime="python3.11"}' in metrics

    # idle for the window: back at the floors, the extra sandboxes gone
    lowered = _wait(server, lambda ex: ex["prewarmed_ready"] == 2 and ex["pool_ready"] <= 3
                    and ex["capacity"]["learnt_peak"] == 0, "not lowered after idleness")
    cap = lowered["capacity"]
    assert (cap["pool_target"], cap["pool_bound"]) == (3, "floor")
    assert (cap["prefork_target"], cap["prefork_bound"]) == (2, "floor")
    assert lam.invoke(FunctionName="cap-burst", Payload=b'{"hold": 0}')["StatusCode"] == 200


def test_fixed_capacity_keeps_the_flags(tmp_path) -> None:
    for server in live_server(tmp_path, "--pool-size", "3", "--prefork", "2", "--capacity",
                              "fixed"):
        lam = server.lambda_()
        create_python_function(lam, "cap-fixed", APP)
        _burst(server, "cap-fixed", 6)
        cap = _execution(server)["capacity"]
        assert cap["mode"] == "fixed" and cap["learnt_peak"] >= 6
        assert (cap["pool_target"], cap["pool_bound"]) == (3, "fixed")
        assert (cap["prefork_target"], cap["prefork_bound"]) == (2, "fixed")
