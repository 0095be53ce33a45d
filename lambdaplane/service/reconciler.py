"""The one reconciler: makes the kernel match the one desired state (service/desired_state.py),
applying it in a fixed order, each step on the net thread:

1. the worker namespace — sysctls, `lo`, the isolation table, and with the uplink its veth,
   the root namespace's table and the host's `ip_forward` (net/worker.py `reconcile_worker`); in full runs (`verify`) only: nothing a store change makes is there;
   also alone (`reconcile_worker`) when service/kernel_watch.py sees a worker table vanish;
2. the Hyperplane planes of VPCs with ENIs (net/hyperplane/plane.py), when a run carries the
   Hyperplane part: the planes' chains exist before the VPC pass applies the ports' tables;
3. the VPC namespaces, their ports and far ends, addresses and routes, and the security group
   tables by fingerprint (net/reconcile.py), reporting which VPCs it changed;
   then, in full runs, the server's own internet namespace (service/host_internet.py, when
   the gateways lead out of the host's uplink), before the gateways link into it;
4. the IPv4 gateway state per VPC (net/gateways.py): read back only for VPCs whose spec
   changed or that step 3 touched, unless `verify`;
5. the IPv6 routing and egress-only gateways per VPC (net/gateways6.py), likewise;
6. the VPC DNS resolvers and endpoint listeners (service/vpc_dns.py: sockets, not kernel
   objects, but they live in the namespaces steps 3–5 made);
7. the Hyperplane ENIs, their steering and fast path, then port guards of ENIs that are gone
   (net/hyperplane/reconciler.py), when a run carries the Hyperplane part.

It runs at start (VpcService.start, then HyperplaneService.start with its part), after every
store change (the services write the store, then ask: `reconcile()`), and as drift repair
(`verify`: every VPC read back) on the `--reconcile-interval` timer, when service/
kernel_watch.py sees a kernel object vanish, and from the admin reconcile.

Calls that queue up while a run is going share the next run: it reads the whole store after
they made their changes, so it serves every one of them (a burst of N interface changes costs
~2 runs instead of N). A `verify` or Hyperplane run always runs."""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from ..model.ec2 import Snapshot
from ..net import gateways as net_gateways
from ..net import gateways6 as net_gateways6
from ..net import reconcile as net_reconcile
from ..net import worker as net_worker
from ..net.executor import NetThread
from ..net.hyperplane import plane as hp_plane
from ..net.hyperplane import port_guard as hp_port_guard
from ..net.hyperplane import reconciler as hp_reconcile
from ..net.names import Names
from .desired_state import DesiredState, HyperplaneDesired, HyperplaneSource, WorkerDesired


@dataclass
class Applied:
    """What one run changed: the worker step (1), the VPC steps (2–6) and the Hyperplane step
    (7) apart. The Hyperplane service steers again only after its own part changed, and
    reports worker and Hyperplane changes of its timer runs as drift repaired; VPC changes of
    such a run may be a store change that run happened to apply first."""
    worker: list[str] = field(default_factory=list)
    vpcs: list[str] = field(default_factory=list)
    hyperplane: list[str] = field(default_factory=list)

    @property
    def all(self) -> list[str]:
        return self.worker + self.vpcs + self.hyperplane


class Reconciler:
    def __init__(self, names: Names, net: NetThread,
                 desired: Callable[[HyperplaneSource | None], DesiredState],
                 sync_dns: Callable[[], Awaitable[None]]) -> None:
        self.names = names
        self.net = net
        self._desired = desired  # one read of the store (VpcService.desired_state)
        self._sync_dns = sync_dns
        self.lock = asyncio.Lock()  # one run at a time (stop takes it too)
        # runs asked for / served: one run serves every call made before it began
        self._asked = 0
        self._served = 0
        self._verify_asked = False  # a verify run is waiting for the lock
        # the server's own internet namespace, rebuilt in full runs before the VPCs link into
        # it (service/host_internet.py; None with --internet-netns or no uplink)
        self.internet_repair: Callable[[], Awaitable[list[str]]] | None = None

    async def reconcile(self, verify: bool = False,
                        hyperplane: HyperplaneSource | None = None) -> Applied:
        """Make the kernel match the store (and `hyperplane`'s part, when given)."""
        self._asked += 1
        ticket = self._asked
        self._verify_asked = self._verify_asked or verify
        async with self.lock:
            if self._served >= ticket and not verify and hyperplane is None:
                return Applied()  # a run that began after this call's change has made it
            upto = self._asked
            verify_now, self._verify_asked = self._verify_asked, False
            applied = await self._apply(self._desired(hyperplane), verify_now)
            self._served = upto
            return applied

    async def reconcile_worker(self) -> list[str]:
        """Step 1 alone, now (service/kernel_watch.py: a worker table vanished); the full run
        it then asks for puts back what hangs on the worker's objects."""
        async with self.lock:
            worker = self._desired(None).worker
            return await self._apply_worker(worker) if worker is not None else []

    async def _apply_worker(self, worker: WorkerDesired) -> list[str]:
        changes: list[str] = await self.net.run(net_worker.reconcile_worker, self.names,
                                                worker.uplink, worker.runtime_api_port,
                                                worker.host_record)
        return changes

    async def _apply(self, desired: DesiredState, verify: bool) -> Applied:
        run, names = self.net.run, self.names
        out = Applied()
        if verify and desired.worker is not None:  # 1
            out.worker = await self._apply_worker(desired.worker)
        hp = desired.hyperplane
        if hp is not None:  # 2
            for vpc_id in hp.vpc_ids:
                await run(hp_plane.ensure_vpc_plane, names, vpc_id, hp.idle_timeout_s)
        changed: set[str] = set()
        out.vpcs += await run(_vpc_pass, names, desired.vpcs, changed)  # 3
        if verify and self.internet_repair is not None:
            out.vpcs += await self.internet_repair()
        recheck = None if verify else changed
        out.vpcs += await run(net_gateways.reconcile, list(desired.gateways), recheck)  # 4
        out.vpcs += await run(net_gateways6.reconcile, list(desired.gateways6), recheck)  # 5
        await self._sync_dns()  # 6
        if hp is not None:  # 7
            out.hyperplane = await self._apply_hyperplane(hp)
        return out

    async def _apply_hyperplane(self, hp: HyperplaneDesired) -> list[str]:
        run, names = self.net.run, self.names
        attachments = dict(hp.attachments) if hp.attachments is not None else None
        done: list[str] = await run(hp_reconcile.reconcile, names, list(hp.enis), attachments,
                                    list(hp.vpc_ids), hp.idle_timeout_s, dict(hp.ports))
        stored = dict(hp.stored)
        for vpc_id in hp.vpc_ids:  # port guards of ENIs that are gone
            for n in await run(hp_port_guard.port_guards, names, vpc_id):
                if stored.get(n) != vpc_id:
                    await run(hp_port_guard.remove_port_guard, names, vpc_id, n)
                    done.append(f"removed port guard {n}")
        return done


def _vpc_pass(names: Names, snapshot: Snapshot, changed: set[str]) -> list[str]:
    return net_reconcile.reconcile_snapshot(names, snapshot, changed)
