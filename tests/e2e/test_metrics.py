"""`GET /metrics` on a live server, driven through boto3: invocations and errors by type,
duration histograms, cold starts and their phases, throttles, concurrency and pool levels, and
per-ENI counters of a VPC function's Hyperplane ENI (bytes, packets, tracked flows) after the
function talked to a program in its subnet. Counts are asserted, never timings."""
from __future__ import annotations

import json
import urllib.request

import pytest
from botocore.exceptions import ClientError
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.vpc_support import resource, wait_until
from tests.harness import LiveServer, create_python_function

pytestmark = pytest.mark.root

HELLO = "def handler(event, context):\n    return {'hello': event.get('n')}\n"
FAILING = "def handler(event, context):\n    raise KeyError('nope')\n"
CONNECT = """
import socket
def handler(event, context):
    with socket.create_connection((event['host'], event['port']), timeout=5) as s:
        return s.recv(100).decode()
"""


def scrape(server: LiveServer) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(server.endpoint + "/metrics", timeout=30) as r:
        assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = r.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_invocations_errors_cold_starts_and_levels(server: LiveServer) -> None:
    lam = server.lambda_()
    create_python_function(lam, "metered", HELLO)
    create_python_function(lam, "failing", FAILING)
    before = scrape(server)
    for n in range(3):
        resp = lam.invoke(FunctionName="metered", Payload=json.dumps({"n": n}))
        assert json.loads(resp["Payload"].read()) == {"hello": n}
    resp = lam.invoke(FunctionName="failing", Payload=b"{}")
    assert resp["FunctionError"] == "Unhandled"
    lam.put_function_concurrency(FunctionName="metered", ReservedConcurrentExecutions=0)
    with pytest.raises(ClientError) as err:
        lam.invoke(FunctionName="metered", Payload=b"{}")
    assert err.value.response["Error"]["Code"] == "TooManyRequestsException"
    attempts = err.value.response["ResponseMetadata"]["RetryAttempts"] + 1  # boto3 retries 429
    lam.delete_function_concurrency(FunctionName="metered")

    after = scrape(server)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("lambdaplane_invocations_total", function="metered", outcome="success") == 3
    assert grew("lambdaplane_invocations_total", function="failing",
                outcome="function_error") == 1
    assert grew("lambdaplane_invocation_errors_total", function="failing",
                error_type="KeyError") == 1
    assert grew("lambdaplane_invocation_errors_total", function="metered",
                error_type="TooManyRequestsException:"
                           "ReservedFunctionConcurrentInvocationLimitExceeded") == attempts
    assert grew("lambdaplane_invocation_duration_seconds_count", function="metered") == 3
    assert grew("lambdaplane_cold_starts_total", function="metered") == 1
    assert grew("lambdaplane_cold_starts_total", function="failing") == 1
    for phase in ("pool_take", "vpc_attach", "cgroup", "spawn", "runtime_ready"):
        assert grew("lambdaplane_cold_start_phase_seconds_count", phase=phase) == 2
    assert grew("lambdaplane_cold_start_seconds_count") == 2
    # levels: nothing runs now; both environments wait warm; the pool has its target
    assert value(after, "lambdaplane_concurrent_executions") == 0
    assert value(after, "lambdaplane_execution_environments", state="idle") >= 2
    assert value(after, "lambdaplane_pool_target") > 0
    assert value(after, "lambdaplane_sandbox_in_use") >= 2


def test_per_eni_counters_of_a_vpc_function(server: LiveServer) -> None:
    ec2, lam = server.ec2(), server.lambda_()
    vpc = ec2.create_vpc(CidrBlock="10.81.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.81.1.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName="metered", Description="m",
                                      VpcId=vpc)["GroupId"]
    ec2.authorize_security_group_ingress(GroupId=group, IpPermissions=[{
        "IpProtocol": "tcp", "FromPort": 8080, "ToPort": 8080,
        "IpRanges": [{"CidrIp": "10.81.0.0/16"}]}])
    create_python_function(lam, "metered-vpc", CONNECT, Timeout=30,
                           VpcConfig={"SubnetIds": [subnet], "SecurityGroupIds": [group]})
    eni = ec2.describe_network_interfaces(Filters=[
        {"Name": "interface-type", "Values": ["lambda"]},
        {"Name": "subnet-id", "Values": [subnet]}])["NetworkInterfaces"][0]
    labels = {"eni": eni["NetworkInterfaceId"], "subnet": subnet, "vpc": vpc}
    with resource(server, subnet, [group], ports=(8080,)) as target:
        for _ in range(3):
            resp = lam.invoke(FunctionName="metered-vpc",
                              Payload=json.dumps({"host": target.ip, "port": 8080}))
            assert json.loads(resp["Payload"].read()) == f"hello from {target.ip}"
        # tracked flows are sampled in the background (about once a second)
        assert wait_until(lambda: value(scrape(server), "lambdaplane_eni_active_connections",
                                        **labels) >= 1, timeout_s=10)
    samples = scrape(server)
    assert value(samples, "lambdaplane_eni_tx_packets_total", **labels) >= 3
    assert value(samples, "lambdaplane_eni_rx_packets_total", **labels) >= 3
    assert value(samples, "lambdaplane_eni_tx_bytes_total", **labels) > 0
    assert value(samples, "lambdaplane_eni_rx_bytes_total", **labels) > 0
    # three invokes, one connection each, all found a port, none idled out (350 s)
    assert value(samples, "lambdaplane_eni_new_connections_total", **labels) >= 3
    assert value(samples, "lambdaplane_eni_port_allocation_errors_total", **labels) == 0
    assert value(samples, "lambdaplane_eni_idle_timeouts_total", **labels) == 0
    lam.delete_function(FunctionName="metered-vpc")
