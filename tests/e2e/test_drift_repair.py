"""Drift repair on a timer (issue 11): kernel state removed by hand behind a running server's
back — a Hyperplane ENI's transit link (and with it the ENI's port), the VPC's plane table —
is put back by the periodic reconcile (`--reconcile-interval`), without a restart, and the
function reaches its VPC through the same ENI again. The worker namespace's drift is repaired on
the timer in Hyperplane and in legacy mode."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from lambdaplane.net import nft, ns
from lambdaplane.net.names import Names
from lambdaplane.net.netlink import Netlink
from tests.conftest import live_server
from tests.e2e.test_hyperplane import (LABEL_PORT, WAIT, _invoke, _label_service, _lambda_enis,
                                       _python, _vpc_config, _vpc_with_a_service)
from tests.e2e.vpc_support import wait_until
from tests.harness import LiveServer

pytestmark = pytest.mark.root


@pytest.fixture
def drift_server(tmp_path: Path) -> Iterator[LiveServer]:
    yield from live_server(tmp_path, "--reconcile-interval", "1")


def _transits(names: Names) -> list[str]:
    with Netlink(names.worker_netns) as wl:
        return sorted(link.name for link in wl.links(names.prefix)
                      if names.transit_number(link.name) is not None)


def test_drift_injected_by_hand_is_repaired_without_a_restart(drift_server: LiveServer) -> None:
    server = drift_server
    names = Names(server.instance)
    lam, ec2 = server.lambda_(), server.ec2()
    vpc, subnet, group, svc = _vpc_with_a_service(ec2, "10.92")
    with _label_service(server, subnet, svc, "10.92.1.10"):
        _python(server, "hp-drift", **_vpc_config([subnet], [group]))
        lam.get_waiter("function_active_v2").wait(FunctionName="hp-drift", WaiterConfig=WAIT)
        probe = {"kind": "tcp", "host": "10.92.1.10", "port": LABEL_PORT}
        (eni,) = _lambda_enis(ec2, subnet_id=subnet)
        expected = f"svc {eni['PrivateIpAddress']}"
        assert _invoke(lam, "hp-drift", probe) == expected
        (transit,) = _transits(names)
        vpc_netns = names.vpc_netns(vpc)

        assert "repaired drift" not in server.log()

        # drift: the transit goes (its peer, the ENI's port, with it), then the plane table
        with Netlink(names.worker_netns) as wl:
            wl.delete_link(transit)
        nft.delete_table("ip", names.plane_table, vpc_netns)

        # the next period(s) put both back, and the same ENI carries the function's flows
        assert wait_until(lambda: "repaired drift" in server.log(), timeout_s=30, interval_s=0.5)
        assert wait_until(lambda: _transits(names) == [transit]
                          and nft.tables(names.plane_table, vpc_netns) != [], timeout_s=30,
                          interval_s=0.5)
        # (the link and table come back before the rest of that run's ENI path: its routes)
        assert wait_until(lambda: _invoke(lam, "hp-drift", probe) == expected, timeout_s=30,
                          interval_s=0.5)
        assert [e["NetworkInterfaceId"] for e in _lambda_enis(ec2, subnet_id=subnet)] \
            == [eni["NetworkInterfaceId"]]
        assert ns.exists(vpc_netns)
        lam.delete_function(FunctionName="hp-drift")
        assert wait_until(lambda: _lambda_enis(ec2, subnet_id=subnet) == [], timeout_s=20)


def test_worker_namespace_drift_is_repaired_on_the_timer(drift_server: LiveServer) -> None:
    """The worker namespace is reconciled like the VPC namespaces: a sysctl flipped and a
    chain of its isolation table deleted by hand (the table stays, so the kernel watch sees
    nothing missing) are put back by the next period's reconcile."""
    _worker_drift_is_repaired(drift_server, "Hyperplane: repaired drift")


@pytest.fixture
def legacy_drift_server(tmp_path: Path) -> Iterator[LiveServer]:
    yield from live_server(tmp_path, "--vpc-mode", "legacy", "--reconcile-interval", "1")


def test_legacy_mode_repairs_worker_drift_on_the_timer(legacy_drift_server: LiveServer) -> None:
    """Legacy mode has the same timer and the same full run, worker step included."""
    _worker_drift_is_repaired(legacy_drift_server, "legacy: repaired drift")


def _worker_drift_is_repaired(server: LiveServer, logged: str) -> None:
    names = Names(server.instance)
    netns, table = names.worker_netns, f"table inet {names.nft_table}"
    rp_filter = Path("/proc/sys/net/ipv4/conf/default/rp_filter")

    def rp_filter_in_worker() -> str:
        with ns.entered(netns):
            return rp_filter.read_text().strip()

    assert rp_filter_in_worker() == "1"
    with ns.entered(netns):
        rp_filter.write_text("0")
    nft.apply(f"delete chain inet {names.nft_table} output_raw", netns)
    assert "chain output_raw" not in (nft.list_text(table, netns) or "")

    assert wait_until(lambda: rp_filter_in_worker() == "1"
                      and "chain output_raw" in (nft.list_text(table, netns) or ""),
                      timeout_s=30, interval_s=0.5)
    assert wait_until(lambda: f"applied the isolation table in {netns}" in server.log(),
                      timeout_s=10, interval_s=0.5)
    assert logged in server.log()
