"""Node.js started ahead of its function (sandbox/prestart.py), through boto3 against a live
server: a pre-started sandbox says when its node is loaded and warmed up, a cold start takes
such a one, the function runs in it with nothing of the warm-up left (no log line, no request
id, its own environment and working directory), and its node runs in its function's cpu group
(a weight from its MemorySize) like PID 1 of its sandbox; cold starts that find no node ready
grow the pool."""
from __future__ import annotations

import base64
import json
import subprocess
import sys
import urllib.request
from collections.abc import Iterator

import pytest

from lambdaplane.net.names import Names
from lambdaplane.sandbox import boot_cpu, cgroups, prestart_sizing
from lambdaplane.sandbox.runtimes import registry
from tests.conftest import live_server
from tests.e2e.vpc_support import wait_until
from tests.harness import LiveServer, make_zip

pytestmark = pytest.mark.root

RUNTIME = "nodejs22.x"
ROLE = "arn:aws:iam::000000000000:role/lambda"
WAIT = {"Delay": 0.2, "MaxAttempts": 150}

APP = """
const fs = require("fs");
exports.handler = async (event, context) => {
  console.log("from the function");
  return { pid: process.pid, cwd: process.cwd(), requestId: context.awsRequestId,
    env: Object.keys(process.env).filter((k) => k.startsWith("LAMBDAPLANE")),
    task: process.env.LAMBDA_TASK_ROOT, warmUpLoaded: Object.keys(require.cache)
      .filter((p) => p.startsWith("/var/runtime/warmup")).length,
    cgroup: fs.readFileSync("/proc/self/cgroup", "utf8") };
};
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    if registry.get(RUNTIME) is None:
        pytest.skip(f"{RUNTIME} is not installed (make install)")
    yield from live_server(tmp_path_factory.mktemp("lp"))


def _pool(server: LiveServer) -> dict[str, int]:
    return server.admin("status")["execution"].get("prestarted", {}).get(  # type: ignore[index]
        RUNTIME, {})


def _create(server: LiveServer, name: str, memory: int = 128) -> None:
    lam = server.lambda_()
    lam.create_function(FunctionName=name, Runtime=RUNTIME, Handler="index.handler", Role=ROLE,
                        Code={"ZipFile": make_zip({"index.js": APP})}, MemorySize=memory)
    lam.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig=WAIT)


def _invoke(server: LiveServer, name: str) -> tuple[str, dict, str]:
    resp = server.lambda_().invoke(FunctionName=name, Payload=b"{}", LogType="Tail")
    body = json.loads(resp["Payload"].read())
    assert "FunctionError" not in resp, body
    return (resp["ResponseMetadata"]["RequestId"], body,
            base64.b64decode(resp["LogResult"]).decode())


def test_cold_start_takes_a_warmed_up_node(server: LiveServer) -> None:
    _create(server, "first")
    _invoke(server, "first")  # the runtime's first cold start makes its pool
    assert wait_until(lambda: _pool(server).get("runtime_ready", 0) > 0, 60), _pool(server)
    before = _pool(server)
    _create(server, "warmed", memory=1769)
    request_id, body, log = _invoke(server, "warmed")
    after = _pool(server)
    assert after["taken_ready"] == before["taken_ready"] + 1, (before, after)
    assert body["pid"] != 1  # node was forked by the sandbox's PID 1, ahead of its function
    assert body["requestId"] == request_id and body["cwd"] == "/var/task"
    assert body["task"] == "/var/task" and body["env"] == []
    assert body["warmUpLoaded"] == 1  # the warm-up's own handler: loaded, never the function's
    lines = [line for line in log.splitlines() if "\tINFO\t" in line]
    assert len(lines) == 1 and lines[0].split("\t")[1:] == [request_id, "INFO",
                                                            "from the function"], log
    assert "warm-up" not in log and "lambdaplane-ready" not in log
    # the hit ratio counts the first cold start (no pool yet: none) and this one (ready)
    assert after["taken_none"] >= 1 and after["boot_ms"] > 0, after
    total = after["taken_ready"] + after["taken_starting"] + after["taken_none"]
    assert after["hit_ratio"] == round(after["taken_ready"] / total, 4), after
    with urllib.request.urlopen(server.endpoint + "/metrics", timeout=30) as r:
        text = r.read().decode()
    assert (f'lambdaplane_prestart_cold_starts_total{{found="ready",runtime="{RUNTIME}"}} '
            f'{float(after["taken_ready"])}') in text, text
    assert f'lambdaplane_prestart_hit_ratio{{runtime="{RUNTIME}"}}' in text
    shown = subprocess.run([sys.executable, "-m", "lambdaplane.cli", "status", "--endpoint",
                            server.endpoint], capture_output=True, text=True, timeout=60)
    line = next(line for line in shown.stdout.splitlines() if line.startswith("prestart"))
    assert line.startswith(f"prestart   {RUNTIME}: ") and "hit ratio " in line, shown.stdout
    assert f"found node ready {after['taken_ready']}," in line, line


@pytest.mark.skipif(not cgroups.has_cpu_controller(), reason="no v1 cpu cgroup")
def test_prestarted_node_runs_in_its_function_cpu_group(server: LiveServer) -> None:
    _create(server, "first-cpu")
    _invoke(server, "first-cpu")
    assert wait_until(lambda: _pool(server).get("runtime_ready", 0) > 0, 60), _pool(server)
    _create(server, "cpu-node", memory=1769)
    _invoke(server, "cpu-node")
    group = cgroups.function_cpu_dir(Names(server.instance),
                                     cgroups.function_group("us-east-1", "cpu-node"))
    envs = [d for d in group.iterdir() if d.is_dir()]
    assert len(envs) == 1
    pids = (envs[0] / "cgroup.procs").read_text().split()
    assert len(pids) >= 2, "PID 1 and node: both in the function's cpu group"
    assert int((envs[0] / "cpu.shares").read_text()) == cgroups.cpu_shares_for(1769)


@pytest.mark.skipif(not cgroups.has_cpu_controller(), reason="no v1 cpu cgroup")
def test_pool_boots_in_its_own_group_and_a_ready_node_leaves_it(server: LiveServer) -> None:
    _create(server, "first-boot")
    _invoke(server, "first-boot")
    boot = cgroups.function_cpu_dir(Names(server.instance), boot_cpu.group_for(RUNTIME))
    assert wait_until(lambda: _pool(server).get("runtime_ready", 0) >= 2, 60), _pool(server)
    assert int((boot / "cpu.shares").read_text()) == cgroups.functions_parent_shares()

    def in_boot_group() -> set[str]:
        return {pid for d in boot.iterdir() if d.is_dir()
                for pid in (d / "cgroup.procs").read_text().split()}

    assert len(in_boot_group()) >= 4, "PID 1 and node of each ready sandbox"
    _create(server, "boot-taken")
    _invoke(server, "boot-taken")
    group = cgroups.function_cpu_dir(Names(server.instance),
                                     cgroups.function_group("us-east-1", "boot-taken"))
    taken = {pid for d in group.iterdir() if d.is_dir()
             for pid in (d / "cgroup.procs").read_text().split()}
    assert len(taken) >= 2 and not taken & in_boot_group(), taken


def test_pool_grows_when_cold_starts_find_no_node_ready(server: LiveServer) -> None:
    from concurrent.futures import ThreadPoolExecutor

    _create(server, "first-burst")
    _invoke(server, "first-burst")
    assert wait_until(lambda: _pool(server).get("runtime_ready", 0) >= 2, 60), _pool(server)
    floor = _pool(server)["prewarmed_target"]
    for i in range(5):
        _create(server, f"burst-{i}")
    with ThreadPoolExecutor(5) as pool:  # more at once than are ready: the rest find none
        bodies = list(pool.map(lambda i: _invoke(server, f"burst-{i}")[1], range(5)))
    assert len({b["requestId"] for b in bodies}) == 5
    grown = _pool(server)
    # grown, within the ceiling (the rate × boot time sizing may already have passed the floor)
    assert floor < grown["prewarmed_target"] <= prestart_sizing.RUNTIME_CEILING, (floor, grown)
