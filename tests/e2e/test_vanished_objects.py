"""A server whose kernel objects vanish under it (issue 12): its worker namespace's name, the
worker's isolation table, its cgroup trees (everything in them killed, as a stray `clean`
did), its pool's sandbox namespaces, a VPC's namespace — each removed by hand while it runs.
It notices within seconds (the kernel watch, service/kernel_watch.py), says so in `status`
and /metrics, and rebuilds them without a restart: invokes, cold and warm, VPC and not,
succeed again. The server runs with the default 30 s drift-repair period, so the VPC's
repair is the watch's doing, not the timer's."""
from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from lambdaplane.net import nft, ns
from lambdaplane.net.names import Names
from lambdaplane.sandbox import cgroups
from lambdaplane.sandbox.cgroup_tree import kill_cgroup_tree
from tests.conftest import live_server
from tests.e2e.test_hyperplane import (LABEL_PORT, WAIT, _invoke, _label_service, _lambda_enis,
                                       _python, _vpc_config, _vpc_with_a_service)
from tests.e2e.vpc_support import wait_until
from tests.harness import LiveServer, create_python_function

pytestmark = pytest.mark.root

HANDLER = "def handler(event, context):\n    return {'n': event['n']}\n"


@pytest.fixture
def watched(tmp_path: Path) -> Iterator[LiveServer]:
    yield from live_server(tmp_path, "--reconcile-interval", "30")


def healing(server: LiveServer) -> dict:
    return server.admin("status")["healing"]  # type: ignore[index]


def healed(server: LiveServer, kind: str) -> int:
    return int(healing(server)["healed"][kind])


def invoke(server: LiveServer, name: str, n: int) -> None:
    out = server.lambda_().invoke(FunctionName=name, Payload=json.dumps({"n": n}))
    assert "FunctionError" not in out
    assert json.loads(out["Payload"].read()) == {"n": n}


def metric(server: LiveServer, name: str, kind: str) -> float:
    text = urllib.request.urlopen(server.endpoint + "/metrics", timeout=10).read().decode()
    for line in text.splitlines():
        if line.startswith(f'{name}{{kind="{kind}"}}'):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name}{{kind={kind!r}}} not in /metrics")


def test_worker_namespace_and_its_table_are_given_back(watched: LiveServer) -> None:
    server, names = watched, Names(watched.instance)
    create_python_function(server.lambda_(), "warm", HANDLER)
    invoke(server, "warm", 1)

    assert wait_until(lambda: healing(server)["looks"] >= 1, timeout_s=30)
    ns.delete(names.worker_netns)  # the name only: the namespace is held by the server
    assert wait_until(lambda: healed(server, "worker_netns") == 1, timeout_s=15,
                      interval_s=0.2), server.log()[-3000:]
    assert ns.exists(names.worker_netns)
    # the same namespace: its Runtime API listener, sandbox links and tables are all there
    assert ("inet", names.nft_table) in nft.tables("", names.worker_netns)
    invoke(server, "warm", 2)
    create_python_function(server.lambda_(), "cold", HANDLER)
    invoke(server, "cold", 3)

    # the isolation table (sandboxes' firewall) deleted: applied again at the next look
    nft.delete_table("inet", names.nft_table, names.worker_netns)
    assert wait_until(lambda: ("inet", names.nft_table) in nft.tables("", names.worker_netns),
                      timeout_s=15, interval_s=0.2), server.log()[-3000:]
    assert healed(server, "worker_nft") == 1
    assert metric(server, "lambdaplane_kernel_objects_healed_total", "worker_netns") == 1
    assert metric(server, "lambdaplane_kernel_objects_healed_total", "worker_nft") == 1
    assert metric(server, "lambdaplane_kernel_objects_missing", "worker_nft") == 0
    recent = [h["kind"] for h in healing(server)["recent"]]
    assert recent == ["worker_netns", "worker_nft"]
    invoke(server, "warm", 4)
    invoke(server, "cold", 5)


def test_cgroup_trees_and_pool_sandboxes_wiped_are_rebuilt(watched: LiveServer) -> None:
    server, names = watched, Names(watched.instance)
    create_python_function(server.lambda_(), "warm", HANDLER)
    invoke(server, "warm", 1)
    assert wait_until(lambda: server.admin("status")["execution"]["pool_ready"] > 0,
                      timeout_s=30, interval_s=0.2)
    assert wait_until(lambda: healing(server)["looks"] >= 2, timeout_s=30)  # it knows them

    # every process in the instance's cgroups killed and the trees removed (what a second
    # server's clean did before the data-dir lock), and every sandbox namespace name removed
    for controller in (cgroups.MEMORY, cgroups.PIDS, cgroups.CPU):
        for _ in range(100):  # the server makes new cgroups in it meanwhile: until it is gone
            kill_cgroup_tree(cgroups.instance_dir(names, controller))
            if not cgroups.instance_dir(names, controller).is_dir():
                break
    for name in ns.list_named(names.sandbox_netns(0)[:-1]):
        ns.delete(name)

    assert wait_until(lambda: healed(server, "cgroup") >= 1
                      and healed(server, "sandbox_netns") >= 1, timeout_s=15,
                      interval_s=0.2), f"{healing(server)}\n{server.log()[-3000:]}"
    assert metric(server, "lambdaplane_kernel_objects_healed_total", "sandbox_netns") >= 1
    assert metric(server, "lambdaplane_kernel_objects_healed_total", "cgroup") >= 1
    assert wait_until(lambda: server.admin("status")["execution"]["zygote_restarts"] >= 1
                      and not server.admin("status")["execution"]["zygotes_down"],
                      timeout_s=30, interval_s=0.2)
    assert healing(server)["healed"]["zygote"] >= 1
    assert metric(server, "lambdaplane_kernel_objects_healed_total", "zygote") >= 1
    for controller in (cgroups.MEMORY, cgroups.PIDS):
        assert cgroups.instance_dir(names, controller).is_dir()
    invoke(server, "warm", 2)  # its environment was killed: started anew
    invoke(server, "warm", 3)
    create_python_function(server.lambda_(), "cold", HANDLER)
    invoke(server, "cold", 4)
    assert wait_until(lambda: not healing(server)["missing_now"], timeout_s=15)


def test_vpc_namespace_deleted_is_rebuilt_within_seconds(watched: LiveServer) -> None:
    server, names = watched, Names(watched.instance)
    lam, ec2 = server.lambda_(), server.ec2()
    vpc, subnet, group, svc = _vpc_with_a_service(ec2, "10.94")
    with _label_service(server, subnet, svc, "10.94.1.10"):
        _python(server, "hp-vanish", **_vpc_config([subnet], [group]))
        lam.get_waiter("function_active_v2").wait(FunctionName="hp-vanish", WaiterConfig=WAIT)
        probe = {"kind": "tcp", "host": "10.94.1.10", "port": LABEL_PORT}
        (eni,) = _lambda_enis(ec2, subnet_id=subnet)
        expected = f"svc {eni['PrivateIpAddress']}"
        assert _invoke(lam, "hp-vanish", probe) == expected

        # the VPC's namespace, and with it every port, route and table in it
        assert wait_until(lambda: healing(server)["looks"] >= 1, timeout_s=30)
        ns.delete(names.vpc_netns(vpc))
        assert wait_until(lambda: healed(server, "vpc_netns") == 1, timeout_s=20,
                          interval_s=0.2), f"{healing(server)}\n{server.log()[-3000:]}"
        assert ns.exists(names.vpc_netns(vpc))
        assert nft.tables(names.plane_table, names.vpc_netns(vpc)) != []
        # the service (a `lambdaplane run` resource: its own namespace, its port remade) and
        # the function reach each other through the same ENI again
        def reaches() -> bool:
            try:
                return _invoke(lam, "hp-vanish", probe) == expected
            except AssertionError:  # a FunctionError while the port is being made
                return False

        assert wait_until(reaches, timeout_s=20, interval_s=0.5), server.log()[-3000:]
        assert [e["NetworkInterfaceId"] for e in _lambda_enis(ec2, subnet_id=subnet)] \
            == [eni["NetworkInterfaceId"]]
        lam.delete_function(FunctionName="hp-vanish")
        assert wait_until(lambda: _lambda_enis(ec2, subnet_id=subnet) == [], timeout_s=20)
