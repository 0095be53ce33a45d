"""The one reconciler (service/reconciler.py) without a kernel: the fixed order of its steps,
the worker namespace only in full runs, the Hyperplane steps only when a run carries their
part, gateway state read back per changed VPC unless `verify`, and calls that queue up while a
run is going sharing the next run."""
from __future__ import annotations

import asyncio
from typing import Any

from lambdaplane.model.ec2 import Snapshot
from lambdaplane.net.hyperplane.model import HyperplaneEni
from lambdaplane.net.names import Names
from lambdaplane.service.desired_state import (
    DesiredState, HyperplaneDesired, HyperplaneSource, WorkerDesired, build_desired_state)
from lambdaplane.service.reconciler import Reconciler

NAMES = Names("u01")
EMPTY = Snapshot([], [], [], [], [])


class FakeNet:
    """Records each step the reconciler runs on the net thread."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.gate: asyncio.Event | None = None

    async def run(self, fn: Any, *args: Any) -> Any:
        self.calls.append((f"{fn.__module__.rsplit('.', 1)[-1]}.{fn.__name__}", args))
        if self.gate is not None:
            await self.gate.wait()
        if fn.__name__ == "port_guards":
            return [3, 7]  # 7 belongs to no stored ENI
        if fn.__name__ == "ensure_vpc_plane":
            return False
        return []


def _hyperplane(snap: Snapshot) -> HyperplaneDesired:
    assert snap is EMPTY  # derived from the run's one read
    return HyperplaneDesired(("vpc-a",), (HyperplaneEni(3, "vpc-a", "10.0.0.9", "10.0.0.1",
                                                        "lpu01p1"),),
                             ((3, "vpc-a"),), None, 120)


def _reconciler(net: FakeNet, dns: list[str]) -> Reconciler:
    worker = WorkerDesired(NAMES.worker_netns, False, 9001)

    def desired(hyperplane: HyperplaneSource | None) -> DesiredState:
        return build_desired_state(lambda: EMPTY, lambda s: [], lambda s: [], worker,
                                   hyperplane)

    async def sync_dns() -> None:
        dns.append("dns")
        net.calls.append(("vpc_dns.sync_dns", ()))

    return Reconciler(NAMES, net, desired, sync_dns)  # type: ignore[arg-type]


async def test_a_full_run_applies_every_part_in_the_fixed_order() -> None:
    net, dns = FakeNet(), []
    applied = await _reconciler(net, dns).reconcile(verify=True, hyperplane=_hyperplane)
    assert [name for name, _ in net.calls] == [
        "worker.reconcile_worker", "plane.ensure_vpc_plane", "reconciler._vpc_pass",
        "gateways.reconcile", "gateways6.reconcile", "vpc_dns.sync_dns",
        "reconciler.reconcile", "port_guard.port_guards", "port_guard.remove_port_guard"]
    gateways_recheck = net.calls[3][1][1]
    assert gateways_recheck is None  # verify: every VPC's gateway state read back
    assert applied.hyperplane == ["removed port guard 7"] and applied.worker == []


async def test_a_run_after_a_change_leaves_the_worker_and_hyperplane_alone() -> None:
    net, dns = FakeNet(), []
    await _reconciler(net, dns).reconcile()
    assert [name for name, _ in net.calls] == [
        "reconciler._vpc_pass", "gateways.reconcile", "gateways6.reconcile",
        "vpc_dns.sync_dns"]
    assert net.calls[1][1][1] == set()  # only VPCs the VPC pass changed are read back


async def test_calls_queued_during_a_run_share_the_next_run() -> None:
    net, dns = FakeNet(), []
    rec = _reconciler(net, dns)
    net.gate = asyncio.Event()
    first = asyncio.create_task(rec.reconcile())
    await asyncio.sleep(0)  # the first run is under way, held in its VPC pass
    queued = [asyncio.create_task(rec.reconcile()) for _ in range(10)]
    await asyncio.sleep(0)
    net.gate.set()
    await asyncio.gather(first, *queued)
    assert len(dns) == 2  # 11 calls, 2 runs
    await rec.reconcile(verify=True)  # a verify run always runs
    assert len(dns) == 3


async def test_the_worker_step_alone_waits_for_a_running_run_and_runs_nothing_else() -> None:
    """kernel_watch's ask when a worker table vanished: step 1 only, with the desired worker
    (uplink, Runtime API port), after the run holding the lock."""
    net, dns = FakeNet(), []
    reconciler = _reconciler(net, dns)
    net.gate = asyncio.Event()
    running = asyncio.create_task(reconciler.reconcile())
    await asyncio.sleep(0)
    worker_step = asyncio.create_task(reconciler.reconcile_worker())
    await asyncio.sleep(0)
    assert [name for name, _ in net.calls] == ["reconciler._vpc_pass"]  # waits for the lock
    net.gate.set()
    await running
    assert await worker_step == []
    assert net.calls[-1] == ("worker.reconcile_worker", (NAMES, False, 9001, None))
    assert [name for name, _ in net.calls].count("worker.reconcile_worker") == 1
