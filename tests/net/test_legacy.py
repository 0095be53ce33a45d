"""Legacy (pre-2019) mode on real namespaces: an ENI per environment, built at cold start and
removed with it; the resource sees one address per environment. Run with -s for the cost."""
from __future__ import annotations

import statistics
import time
from collections.abc import Iterator

import pytest

from lambdaplane.net import hyperplane as hp
from lambdaplane.net import legacy, ns
from lambdaplane.net.netlink import Netlink
from tests.net.test_hyperplane import GW, RESOURCE, Env, ask, cannot_connect, environment

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    with environment(sandboxes=2) as e:
        yield e


def port_hooks(env: Env, vpc_id: str) -> tuple:
    """Stand-ins for the VPC reconcile (net/vpc.py): a routed VPC port whose peer is the
    ENI's transit, made before the ENI and removed after it."""
    vpc_netns = env.vpcs[vpc_id].netns

    def make_port(eni: hp.HyperplaneEni) -> None:
        with Netlink(vpc_netns) as v:
            v.add_veth(eni.port, env.names.transit_veth(eni.n), peer_netns=env.names.worker_netns)
            with ns.entered(vpc_netns):
                ns.set_sysctl(f"net.ipv4.conf.{eni.port}.proxy_arp", "1")
            v.add_address(eni.port, GW, 32)
            v.set_up(eni.port)
            v.add_route(f"{eni.address}/32", eni.port, scope_link=True)

    def drop_port(eni: hp.HyperplaneEni) -> None:
        with Netlink(vpc_netns) as v:
            v.delete_link(eni.port)

    return make_port, drop_port


def test_each_environment_gets_its_own_eni_and_address(env: Env) -> None:
    make_port, drop_port = port_hooks(env, "vpc-a")
    steering = hp.Steering(env.names)
    made: list[legacy.DedicatedEni] = []
    try:
        for k, box in enumerate(env.boxes):
            eni = hp.HyperplaneEni(100 + k, "vpc-a", f"10.0.1.{100 + k}", GW, f"p{100 + k}")
            make_port(eni)
            made.append(legacy.attach_dedicated(env.names, steering, eni, box.address))
        answers = [ask(box.netns) for box in env.boxes]
        assert answers == ["A 10.0.1.100", "A 10.0.1.101"]
        for dedicated in made:
            legacy.release_dedicated(env.names, steering, dedicated)
            drop_port(dedicated.eni)
        made.clear()
        assert all(cannot_connect(box.netns, RESOURCE) for box in env.boxes)
        assert set(hp.list_enis(env.names)) == {1, 2}  # only the stand-in's shared ENIs left
    finally:
        for dedicated in made:
            legacy.release_dedicated(env.names, steering, dedicated)
            drop_port(dedicated.eni)
        steering.close()


def test_measure_legacy_cold_start_cost(env: Env) -> None:
    make_port, drop_port = port_hooks(env, "vpc-a")
    steering = hp.Steering(env.names)
    box = env.boxes[0]
    build, release = [], []
    try:
        for i in range(40):
            eni = hp.HyperplaneEni(200 + i, "vpc-a", f"10.0.1.{150 + i}", GW, f"p{200 + i}")
            make_port(eni)
            dedicated = legacy.attach_dedicated(env.names, steering, eni, box.address)
            build.append(dedicated.build_ms)
            t0 = time.perf_counter()
            legacy.release_dedicated(env.names, steering, dedicated)
            drop_port(dedicated.eni)
            release.append((time.perf_counter() - t0) * 1e3)
    finally:
        steering.close()
    assert len(build) == 40 and hp.list_attachments(env.names) == {}
    print(f"\nlegacy ENI per cold start: build median {statistics.median(build):.2f} ms "
          f"(max {max(build):.2f}), release median {statistics.median(release):.2f} ms")
