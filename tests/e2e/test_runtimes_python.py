"""Runtime names as AWS accepts them, and every python3.X of the host, through boto3 against a
live server: each python3.X function runs on its own interpreter (its own zygote) with boto3
importable without bundling it; `serve --runtime` maps a runtime to an interpreter; a runtime
AWS accepts but not installed here makes the function Failed/InvalidRuntime (and invoking it
gets AWS's answer); deprecated runtimes are refused with AWS's message; `lambdaplane runtimes`
lists what runs here."""
from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from lambdaplane.sandbox.runtimes import registry
from tests.conftest import live_server
from tests.harness import LiveServer, make_zip

pytestmark = pytest.mark.root

ROLE = "arn:aws:iam::000000000000:role/lambda"
WAIT = {"Delay": 0.2, "MaxAttempts": 150}
APP = """
import os, sys
def handler(event, context):
    import boto3, botocore
    return {"version": "%d.%d" % sys.version_info[:2], "executable": sys.executable,
            "env": os.environ["AWS_EXECUTION_ENV"], "boto3": boto3.__version__,
            "boto3_from": boto3.__file__, "request_id": context.aws_request_id}
"""
PYTHONS = [f"python3.{minor}" for minor in range(9, 16)]


def _create(lam, name: str, runtime: str, wait: bool = True, **kwargs: object) -> dict:
    resp = lam.create_function(FunctionName=name, Runtime=runtime, Handler="app.handler",
                               Role=ROLE, Code={"ZipFile": make_zip({"app.py": APP})}, **kwargs)
    if wait:
        lam.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig=WAIT)
    return resp


def _error(call) -> dict:
    with pytest.raises(ClientError) as err:
        call()
    return err.value.response["Error"]


def _missing_python() -> str:
    """A python3.X AWS accepts that this host does not have (python3.14 on most)."""
    for runtime in ("python3.14", "python3.15", "python3.13"):
        if registry.get(runtime) is None:
            return runtime
    pytest.skip("every python3.X AWS accepts is installed here")


@pytest.mark.parametrize("runtime", PYTHONS)
def test_each_python_runs_on_its_own_interpreter(server: LiveServer, runtime: str) -> None:
    install = registry.get(runtime)
    if install is None:
        pytest.skip(f"{runtime} is not installed on this host")
    lam = server.lambda_()
    name = "py-" + runtime.replace(".", "")
    _create(lam, name, runtime, Timeout=30)
    resp = lam.invoke(FunctionName=name, Payload=b"{}")
    body = json.loads(resp["Payload"].read())
    assert "FunctionError" not in resp, body
    assert body["version"] == runtime[len("python"):]
    # an interpreter outside /usr shows as AWS's /var/lang/bin/python3.X, not its host path
    assert body["executable"] == registry.shown_executable(install.executable)
    assert body["env"] == f"AWS_Lambda_{runtime}"
    assert body["boto3_from"].startswith("/var/runtime/boto3/")  # not bundled: the runtime's
    assert body["boto3"]
    zygotes = server.admin("status")
    assert install.interpreter in json.dumps(zygotes)


def test_refused_runtimes_get_aws_messages(server: LiveServer) -> None:
    lam = server.lambda_()
    err = _error(lambda: _create(lam, "old-py", "python3.7", wait=False))
    assert err["Code"] == "InvalidParameterValueException"
    assert err["Message"] == (
        "The runtime parameter of python3.7 is no longer supported for creating or updating "
        "AWS Lambda functions. We recommend you use the new runtime (python3.14) while "
        "creating or updating functions.")
    err = _error(lambda: _create(lam, "old-node", "nodejs16.x", wait=False))
    assert "We recommend you use the new runtime (nodejs24.x)" in err["Message"]
    err = _error(lambda: _create(lam, "no-such", "cobol85", wait=False))
    assert err["Code"] == "ValidationException"
    assert "Value 'cobol85' at 'runtime' failed to satisfy constraint" in err["Message"]
    _create(lam, "upd-old", "python3.11")
    err = _error(lambda: lam.update_function_configuration(FunctionName="upd-old",
                                                           Runtime="python3.8"))
    assert err["Code"] == "InvalidParameterValueException"
    assert err["Message"].startswith("The runtime parameter of python3.8 is no longer supported")
    assert lam.get_function(FunctionName="upd-old")["Configuration"]["Runtime"] == "python3.11"


def test_runtime_not_installed_is_failed_invalid_runtime(server: LiveServer) -> None:
    lam = server.lambda_()
    missing = _missing_python()
    for name, runtime in (("missing-py", missing), ("missing-java", "java21")):
        created = _create(lam, name, runtime, wait=False)
        assert created["State"] == "Failed" and created["StateReasonCode"] == "InvalidRuntime"
        config = lam.get_function_configuration(FunctionName=name)
        assert config["State"] == "Failed" and config["StateReasonCode"] == "InvalidRuntime"
        assert runtime in config["StateReason"]
        err = _error(lambda n=name: lam.invoke(FunctionName=n, Payload=b"{}"))
        assert err["Code"] == "ResourceConflictException"
        assert err["Message"] == ("The operation cannot be performed at this time. The "
                                  "function is currently in the following state: Failed")
    reason = lam.get_function_configuration(FunctionName="missing-py")["StateReason"]
    assert f"--runtime {missing}=" in reason  # says which flag maps it
    # moving it to a runtime that is here makes it Active and invocable
    lam.update_function_configuration(FunctionName="missing-py", Runtime="python3.11")
    lam.get_waiter("function_updated_v2").wait(FunctionName="missing-py", WaiterConfig=WAIT)
    config = lam.get_function_configuration(FunctionName="missing-py")
    assert config["State"] == "Active" and "StateReasonCode" not in config
    body = json.loads(lam.invoke(FunctionName="missing-py", Payload=b"{}")["Payload"].read())
    assert body["version"] == "3.11"


@pytest.fixture
def mapped_server(tmp_path: Path) -> Iterator[LiveServer]:
    yield from live_server(tmp_path, "--runtime", f"{_missing_python()}=/usr/bin/python3.11")


def test_runtime_flag_maps_a_runtime_to_an_interpreter(mapped_server: LiveServer) -> None:
    lam, runtime = mapped_server.lambda_(), _missing_python()
    created = _create(lam, "mapped", runtime, wait=False)
    assert created["State"] in ("Active", "Pending")
    resp = lam.invoke(FunctionName="mapped", Payload=b"{}")
    body = json.loads(resp["Payload"].read())
    assert "FunctionError" not in resp, body
    assert body["version"] == "3.11" and body["env"] == f"AWS_Lambda_{runtime}"
    # a function created Failed before the flag existed becomes Active on the next start
    mapped_server.stop()
    mapped_server.extra_args = []
    mapped_server.start()
    config = lam.get_function_configuration(FunctionName="mapped")
    assert config["State"] == "Failed" and config["StateReasonCode"] == "InvalidRuntime"
    mapped_server.stop()
    mapped_server.extra_args = ["--runtime", f"{runtime}=/usr/bin/python3.11"]
    mapped_server.start()
    assert lam.get_function_configuration(FunctionName="mapped")["State"] == "Active"


def test_runtimes_command_lists_what_runs_here() -> None:
    out = subprocess.run([sys.executable, "-m", "lambdaplane.cli", "runtimes", "--all",
                          "--runtime", "python3.15=/usr/bin/python3.11"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    rows = {line.split()[0]: line for line in out.stdout.splitlines() if line.strip()}
    assert "runs here" in rows["python3.11"] and "/usr/bin/python3.11" in rows["python3.11"]
    assert "--runtime /usr/bin/python3.11" in rows["python3.15"]
    assert "runs here" in rows["provided.al2023"]
    for runtime in ("nodejs20.x", "nodejs22.x", "nodejs24.x"):
        assert runtime in rows
    bad = subprocess.run([sys.executable, "-m", "lambdaplane.cli", "runtimes",
                          "--runtime", "python3.7=/usr/bin/python3.11"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "no longer supported" in bad.stderr


VPC_CLIENT = """
import socket
def handler(event, context):
    with socket.create_connection((event["host"], event["port"]), timeout=5) as s:
        return s.recv(100).decode()
"""


@pytest.mark.parametrize("runtime", ["python3.12", "python3.13"])
def test_vpc_function_on_another_python_reaches_a_service(server: LiveServer,
                                                          runtime: str) -> None:
    from tests.e2e.vpc_support import resource, wait_until

    if registry.get(runtime) is None:
        pytest.skip(f"{runtime} is not installed on this host")
    lam, ec2 = server.lambda_(), server.ec2()
    octet = 70 + int(runtime.split(".")[1])
    vpc = ec2.create_vpc(CidrBlock=f"10.{octet}.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.{octet}.1.0/24")["Subnet"]["SubnetId"]
    group = ec2.describe_security_groups(Filters=[
        {"Name": "vpc-id", "Values": [vpc]}, {"Name": "group-name", "Values": ["default"]}
    ])["SecurityGroups"][0]["GroupId"]
    name = "vpc-" + runtime.replace(".", "")
    try:
        with resource(server, subnet, [group], ports=(8080,), ip=f"10.{octet}.1.50"):
            lam.create_function(FunctionName=name, Runtime=runtime, Handler="app.handler",
                                Role=ROLE, Code={"ZipFile": make_zip({"app.py": VPC_CLIENT})},
                                VpcConfig={"SubnetIds": [subnet], "SecurityGroupIds": [group]})
            lam.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig=WAIT)
            resp = lam.invoke(FunctionName=name,
                              Payload=json.dumps({"host": f"10.{octet}.1.50", "port": 8080}))
            body = json.loads(resp["Payload"].read())
            assert "FunctionError" not in resp, body
            assert body.startswith("hello from "), body
    finally:
        try:
            lam.delete_function(FunctionName=name)
        except ClientError:
            pass
        wait_until(lambda: not ec2.describe_network_interfaces(Filters=[
            {"Name": "subnet-id", "Values": [subnet]}])["NetworkInterfaces"], timeout_s=30)
        ec2.delete_subnet(SubnetId=subnet)
        ec2.delete_vpc(VpcId=vpc)
