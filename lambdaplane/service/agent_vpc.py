"""An agent's VPCs (issue 20): the one reconciler (service/reconciler.py) over the shared store's
desired state, run by every agent in the EVPN fabric (`agent --underlay-address`) for every VPC
in the store — the VPC namespaces, subnet routers, security group and ACL tables, built the same
on every host from the same rows — and the kernel half of every Hyperplane ENI
(service/agent_hyperplane.py), then the fabric joined to those VPCs (HostFabric.set_vpcs) and
each VPC namespace's port-block reply steering (net/hyperplane/port_blocks.py).

Where an interface lives (`host_snapshot`): an interface's port is made on the host that holds
its far end. A Hyperplane ENI's far end is this agent's worker namespace (its transit
`lp<agent>t<n>`), on every agent that holds a port block of it: one address, several hosts, the
replies steered by port to the host that translated the flow. Any other interface is this
host's only when its far end's namespace carries this agent's prefix (`lambdaplane run --host`
naming this agent; the agent also releases it once its CLI here exited); the rest (the API
server's `lambdaplane run` resources, other agents' interfaces) get no port here and are one
ARP away through the fabric.

It runs at start, then every `INTERVAL_S` (the store read again: a changed function
configuration, a new interface, another host's port block; and drift repair), on its own
database connection (the lease's thread keeps its own). The agent's API-facing part is
nothing: the server made every row."""
from __future__ import annotations

import asyncio
import dataclasses
import logging

from ..config import Settings
from ..model.ec2 import FarEnd, Snapshot
from ..net.executor import NetThread
from ..net.host_sysctls import RECORD_NAME as HOST_SYSCTLS_RECORD
from ..net.hyperplane import port_blocks as net_port_blocks
from ..net.names import Names
from ..store.db import Database
from ..store.port_blocks import PortBlockError, PortBlockStore
from ..store.vnis import VniStore
from ..tasks import cancel_and_wait
from .agent_hyperplane import AgentHyperplane
from .desired_state import (
    DesiredState, HyperplaneSource, WorkerDesired, build_desired_state, far_ends_here)
from .host_fabric import HostFabric
from .port_block_leases import EniAddress, PortBlockLeases
from .vpc import VpcService

log = logging.getLogger("lambdaplane.agent_vpc")

INTERVAL_S = 3.0  # the store read again and the kernel compared with it


def host_snapshot(snap: Snapshot, names: Names, hyperplane: dict[str, int]) -> Snapshot:
    """The store's snapshot as this host builds it: Hyperplane ENIs (`hyperplane`: ENI id →
    n, those with a block here) with their far end in this host's worker namespace; other
    interfaces keep a far end only when it is this host's (`far_ends_here`)."""
    enis = [eni if eni.id not in hyperplane else dataclasses.replace(
        eni, far_end=FarEnd(names.worker_netns, names.transit_veth(hyperplane[eni.id]), False))
        for eni in snap.enis]
    return far_ends_here(dataclasses.replace(snap, enis=enis), names)


class AgentVpcService(VpcService):
    """VpcService whose desired state is this host's view of the store (`host_snapshot`)."""

    hyperplane: AgentHyperplane | None = None

    def desired_state(self, hyperplane: HyperplaneSource | None = None) -> DesiredState:
        built = self.hyperplane.built_enis() if self.hyperplane is not None else {}
        return build_desired_state(
            lambda: host_snapshot(self.store.snapshot(), self.names, built),
            self.gateway_desired, self.egress_only.desired,
            WorkerDesired(self.names.worker_netns, self.settings.uplink,
                          self.settings.runtime_api_port,
                          self.settings.data_dir / HOST_SYSCTLS_RECORD), hyperplane)


class AgentVpcs:
    """The agent's VPC part: start after the worker namespace exists (the environments'
    start) and the fabric; stop before both."""

    def __init__(self, settings: Settings, names: Names, net: NetThread, fabric: HostFabric,
                 host_id: str) -> None:
        self.names = names
        self.net = net
        self.fabric = fabric
        self.db = Database.open(settings.data_dir, settings.database or None)
        self.vpc = AgentVpcService(settings, names, self.db, net)
        self.leases = PortBlockLeases(PortBlockStore(self.db), host_id, settings.eni_flow_limit)
        self.hyperplane = AgentHyperplane(settings, names, self.db, net, self.vpc, self.leases)
        self.vpc.hyperplane = self.hyperplane
        self._loop: asyncio.Task[None] | None = None
        self._stopped = False

    async def start(self) -> None:
        await self.hyperplane.start()  # its first reconcile has the VPC pass too
        await self.join_fabric()
        self._loop = asyncio.create_task(self._forever(), name="lp-agent-vpcs")

    async def stop(self) -> None:
        """Idempotent: the ENIs' kernel half and this host's blocks, the VPC namespaces."""
        if self._stopped:
            return
        self._stopped = True
        await cancel_and_wait(self._loop)
        self._loop = None
        try:
            await self.hyperplane.stop()
            await self.vpc.stop()  # the VPC namespaces of this agent
        finally:
            self.db.close()

    async def run_once(self) -> list[str]:
        """The store read again, the kernel made to match, the fabric and steering after;
        first the `lambdaplane run` resources here whose CLI exited are released."""
        await self.vpc.interfaces.release_orphans()
        changes = await self.hyperplane.repair()
        changes += await self.join_fabric()
        self.hyperplane.sync_flows()
        return changes

    async def join_fabric(self) -> list[str]:
        """Join the fabric to every VPC namespace here; then each one's reply steering (the
        port blocks other hosts hold of the VPC's ENIs)."""
        snap = self.vpc.store.snapshot()
        changes = await self.fabric.set_vpcs(
            [(v.id, [s.cidr for s in snap.subnets if s.vpc_id == v.id and s.cidr])
             for v in snap.vpcs], VniStore(self.db).all())
        address = {e.id: e.ip for e in snap.enis}
        rows = self.hyperplane.rows()
        for vpc in snap.vpcs:
            enis = [EniAddress(r.eni_id, address[r.eni_id]) for r in rows
                    if r.vpc_id == vpc.id and address.get(r.eni_id)]
            try:
                spec = self.leases.steering(vpc.id, enis)
            except PortBlockError as e:  # no host row yet: the lease starts after the start
                log.info("no reply steering in %s yet: %s", vpc.id, e)
                continue
            changes += await self.net.run(net_port_blocks.ensure_reply_steering, self.names,
                                          spec)
        return changes

    async def _forever(self) -> None:
        while True:
            await asyncio.sleep(INTERVAL_S)
            try:
                changes = await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the database or a namespace away for a moment
                log.exception("the agent's VPC reconcile failed")
                continue
            if changes:
                log.info("VPC reconcile: %s", "; ".join(changes[:20]))
