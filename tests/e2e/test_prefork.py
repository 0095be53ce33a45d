"""Pre-forked sandboxes (`serve --prefork N`, sandbox/prewarm.py) through boto3: a cold start
that takes one runs the function as a forked one would — its own code at /var/task and nothing
else of the code store, its memory limit and /tmp size, no privileges, its environment — for
python and provided runtimes alike; the server keeps N ready and leaves nothing behind."""
from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import live_server
from tests.e2e.vpc_support import resource
from tests.harness import LiveServer, make_zip

pytestmark = pytest.mark.root

PREFORK = 2
APP = """
import os

def handler(event, context):
    status = dict(line.split(":", 1) for line in open("/proc/self/status") if ":" in line)
    tmp = os.statvfs("/tmp")
    return {"task": sorted(os.listdir("/var/task")), "root": sorted(os.listdir("/")),
            "stash": os.path.exists("/.lp-code"), "uid": os.getuid(),
            "cap_eff": status["CapEff"].strip(), "cap_bnd": status["CapBnd"].strip(),
            "tmp_mb": tmp.f_blocks * tmp.f_frsize // 2**20,
            "stage": os.environ.get("STAGE"),
            "memory": os.environ["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"],
            "root_writable": os.access("/", os.W_OK)}
"""
BOOTSTRAP = """#!/bin/sh
set -e
api="http://$AWS_LAMBDA_RUNTIME_API/2018-06-01/runtime/invocation"
while true; do
  headers=$(mktemp)
  curl -sS -D "$headers" -o /dev/null "$api/next"
  rid=$(grep -i '^lambda-runtime-aws-request-id:' "$headers" | cut -d' ' -f2 | tr -d '\\r')
  task=$(ls /var/task | tr '\\n' ' ')
  curl -sS -X POST -d "{\\"task\\": \\"$task\\"}" "$api/$rid/response" >/dev/null
done
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    yield from live_server(tmp_path_factory.mktemp("lp"), "--prefork", str(PREFORK))


def _execution(server: LiveServer) -> dict:
    return server.admin("status")["execution"]  # type: ignore[index]


def _wait_prewarmed(server: LiveServer) -> dict:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        ex = _execution(server)
        if ex["prewarmed_ready"] >= PREFORK:  # adaptive capacity may keep more
            return ex
        time.sleep(0.05)
    raise AssertionError(f"pre-forked sandboxes not refilled: {_execution(server)}")


def _invoke(lam, name: str) -> tuple[dict, str]:
    resp = lam.invoke(FunctionName=name, Payload=b"{}", LogType="Tail")
    assert "FunctionError" not in resp, resp["Payload"].read()
    return json.loads(resp["Payload"].read()), base64.b64decode(resp["LogResult"]).decode()


def _create(lam, name: str, runtime: str, files: dict, handler: str, **kwargs) -> None:
    lam.create_function(FunctionName=name, Runtime=runtime, Handler=handler,
                        Role="arn:aws:iam::000000000000:role/lambda",
                        Code={"ZipFile": make_zip(files, {"bootstrap": 0o755})}, **kwargs)
    lam.get_waiter("function_active_v2").wait(FunctionName=name,
                                              WaiterConfig={"Delay": 0.2, "MaxAttempts": 100})


def test_python_function_in_a_preforked_sandbox(server: LiveServer) -> None:
    lam = server.lambda_()
    _create(lam, "pf-py", "python3.11", {"app.py": APP, "other.txt": "x"}, "app.handler",
            MemorySize=256, Environment={"Variables": {"STAGE": "pre"}})
    _create(lam, "pf-other", "python3.11", {"secret.py": "S = 1\n", "app.py": APP},
            "app.handler")
    _wait_prewarmed(server)
    answer, log = _invoke(lam, "pf-py")
    assert "Init Duration" in log  # a cold start, served by a pre-forked sandbox
    assert answer["task"] == ["app.py", "other.txt"]
    assert answer["stash"] is False and ".lp-code" not in answer["root"]
    assert answer["uid"] == 993 and answer["cap_eff"] == "0000000000000000"
    assert answer["cap_bnd"] == "0000000000000000"
    assert answer["tmp_mb"] == 128 and answer["memory"] == "256" and answer["stage"] == "pre"
    assert answer["root_writable"] is False
    ex = _wait_prewarmed(server)  # the one taken is made again
    assert ex["prewarmed_target"] >= PREFORK
    other, _ = _invoke(lam, "pf-other")
    assert other["task"] == ["app.py", "secret.py"]  # its own code, not the previous one's


def test_memory_limit_is_the_functions(server: LiveServer) -> None:
    lam = server.lambda_()
    _create(lam, "pf-oom", "python3.11", {"app.py": (
        "def handler(event, context):\n"
        "    blocks = [bytearray(16 * 2**20) for _ in range(event['mb'] // 16)]\n"
        "    for b in blocks:\n"
        "        b[::4096] = b'x' * len(b[::4096])\n"
        "    return len(blocks)\n")}, "app.handler", MemorySize=128)
    _wait_prewarmed(server)
    resp = lam.invoke(FunctionName="pf-oom", Payload=json.dumps({"mb": 64}).encode())
    assert "FunctionError" not in resp and json.loads(resp["Payload"].read()) == 4
    resp = lam.invoke(FunctionName="pf-oom", Payload=json.dumps({"mb": 256}).encode())
    assert resp.get("FunctionError") == "Unhandled"
    assert json.loads(resp["Payload"].read())["errorType"] == "Runtime.OutOfMemory"


def test_provided_runtime_in_a_preforked_sandbox(server: LiveServer) -> None:
    lam = server.lambda_()
    _create(lam, "pf-sh", "provided.al2023", {"bootstrap": BOOTSTRAP}, "h")
    _wait_prewarmed(server)
    answer, log = _invoke(lam, "pf-sh")
    assert "Init Duration" in log
    assert answer == {"task": "bootstrap "}


def test_unused_preforked_sandboxes_go_with_the_server(tmp_path: Path) -> None:
    """Started and stopped without a single invoke: the fixture's leftover check covers it."""
    for server in live_server(tmp_path, "--prefork", "3"):
        _wait_prewarmed_n(server, 3)


def _wait_prewarmed_n(server: LiveServer, n: int) -> None:
    deadline = time.monotonic() + 30
    while _execution(server)["prewarmed_ready"] < n:
        assert time.monotonic() < deadline, _execution(server)
        time.sleep(0.05)


VPC_APP = """
import socket, time

began = time.monotonic()
try:  # at import: the network must be there before any of the function's code runs
    with socket.create_connection(("{ip}", 7000), timeout=0.5) as s:
        AT_IMPORT = s.recv(100).decode()
except OSError as e:
    AT_IMPORT = f"failed: {{e!r}}"

def handler(event, context):
    return {{"at_import": AT_IMPORT}}
"""


def test_vpc_function_reaches_its_vpc_from_its_first_line(server: LiveServer) -> None:
    """A pre-forked sandbox of a VPC function is steered while it sets itself up, and runs no
    function code before that: a connection made at import time goes through at once (a SYN
    sent before the steering would be lost and retried only after a second)."""
    ec2, lam = server.ec2(), server.lambda_()
    vpc = ec2.create_vpc(CidrBlock="10.93.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.93.1.0/24")["Subnet"]["SubnetId"]
    fn_group = ec2.create_security_group(GroupName="fn", Description="fn", VpcId=vpc)["GroupId"]
    db_group = ec2.create_security_group(GroupName="db", Description="db", VpcId=vpc)["GroupId"]
    ec2.authorize_security_group_ingress(GroupId=db_group, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 7000, "ToPort": 7000,
         "UserIdGroupPairs": [{"GroupId": fn_group}]}])
    try:
        with resource(server, subnet, [db_group], ports=(7000,), ip="10.93.1.40"):
            _create(lam, "pf-vpc", "python3.11", {"app.py": VPC_APP.format(ip="10.93.1.40")},
                    "app.handler",
                    VpcConfig={"SubnetIds": [subnet], "SecurityGroupIds": [fn_group]})
            for _ in range(3):
                _wait_prewarmed(server)
                answer, log = _invoke(lam, "pf-vpc")
                assert "Init Duration" in log
                assert answer["at_import"].startswith("hello from 10.93.1.40"), answer
                lam.update_function_configuration(FunctionName="pf-vpc",
                                                  Description=f"again {time.monotonic()}")
                lam.get_waiter("function_updated_v2").wait(
                    FunctionName="pf-vpc", WaiterConfig={"Delay": 0.2, "MaxAttempts": 100})
    finally:
        lam.delete_function(FunctionName="pf-vpc")
        wait = time.monotonic() + 30
        while time.monotonic() < wait:  # its ENI goes with it; then the VPC can go
            try:
                ec2.delete_security_group(GroupId=db_group)
                ec2.delete_security_group(GroupId=fn_group)
                ec2.delete_subnet(SubnetId=subnet)
                ec2.delete_vpc(VpcId=vpc)
                break
            except Exception:  # noqa: BLE001 - DependencyViolation until the ENI is gone
                time.sleep(0.2)
