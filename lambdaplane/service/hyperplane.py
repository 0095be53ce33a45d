"""The Hyperplane service: AWS's post-2019 VPC model for functions.

Owns the Hyperplane ENIs: exactly one per (region, subnet, sorted security groups) across all
functions — made when a function is created or reconfigured (`prepare`, never at a cold start),
kept while any configuration in use needs it (FunctionService.vpc_configs_in_use) or any
environment is still steered to it, then deleted. Each is an EC2 interface (type "lambda",
requester-managed, VpcService's rules and VPC-side port) whose far end is the transit
`lp<i>t<n>` in the worker, plus the data path of net/hyperplane/ (routes, SNAT, filter).
`n` is persisted (store/hyperplane.py) so a restart rebuilds the same kernel objects.

At a cold start `attach` picks the function's subnet round-robin, an ENI of that key with
fewer than `settings.eni_flow_limit` tracked flows (a further ENI is made when all are full),
and adds one steering element — nothing else per environment. Flow counts are sampled in the
background so the cold start reads a number, not conntrack.

Port exhaustion (AWS's ErrorPortAllocation): an ENI whose NAT ran out of ports for a
destination takes no new environments for a while; the sampler that counts flows and
port-allocation errors per ENI, and says which ENI has room, is service/hyperplane_sampler.py.
What is repaired in the store at start (old layouts, orphans) is service/hyperplane_recovery.py;
the IPv6 data path of ENIs with an IPv6 address, service/hyperplane_paths6.py; making and
removing an ENI (interface, row, plane, data path), service/hyperplane_enis.py; the drift
repair's timer, service/repair_timer.py.

Kernel work runs on the NetThread, except steering: the one long-lived `Steering` is used on
the event loop (a map element is cheaper than a thread hop)."""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from ..config import Settings
from ..errors import AwsError
from ..net.executor import NetThread
from ..net.hyperplane import reconciler as hp_reconcile
from ..net.hyperplane.model import HyperplaneEni
from ..net.hyperplane.steering import Steering
from ..net.names import Names, port_ifname
from ..sandbox.pool import Sandbox
from ..sandbox.types import FunctionSpec
from ..store.db import Database
from ..store.ec2 import Snapshot
from ..store.functions import FunctionRecord
from ..store.hyperplane import EniKey, HyperplaneEniRow, HyperplaneStore, group_key
from . import hyperplane_ipv6, ipam
from .desired_state import HyperplaneDesired
from .reconciler import Applied
from .functions import FunctionService
from .hyperplane_paths6 import Eni6Paths
from .hyperplane_enis import HyperplaneEnis
from .hyperplane_recovery import drop_orphans, upgrade_far_ends
from .hyperplane_sampler import FlowSampler, SampledEni
from .repair_timer import RepairTimer
from .vpc import VpcService
from .vpc_config import validate_vpc_config

log = logging.getLogger("lambdaplane.hyperplane")

__all__ = ["HyperplaneService", "SampledEni", "SteeredSandbox", "upgrade_far_ends"]


@dataclass(frozen=True)
class SteeredSandbox:
    """An environment's VPC handle: its sandbox address, steered to ENI n."""
    address: str
    n: int
    sandbox: Sandbox | None = None  # set when the sandbox has an IPv6 path too


class HyperplaneService:
    def __init__(self, settings: Settings, names: Names, db: Database, net: NetThread,
                 vpc: VpcService, functions: FunctionService) -> None:
        self.settings = settings
        self.names = names
        self.net = net
        self.vpc = vpc
        self.functions = functions
        self.store = HyperplaneStore(db)
        self._rows: dict[int, HyperplaneEniRow] = {}
        self._attached: dict[str, int] = {}  # sandbox address → ENI n
        self.sampler = FlowSampler(settings, names, net, vpc, lambda: self._rows,
                                   lambda: bool(self._attached))
        self._turn: dict[tuple[str, str], int] = {}  # round-robin position per function
        self._lock = asyncio.Lock()  # ENIs are made and removed one at a time
        self.paths6 = Eni6Paths(names, net, vpc)  # IPv6 paths of ENIs with an IPv6 address
        # Steering runs on the event loop itself: one map element is ~0.01 ms of CPU, while a
        # hop to any thread costs a GIL hand-over each way, which under a burst of cold starts
        # (the loop busy) waited tens of ms. Its netlink socket lives in the worker netns.
        self._steering: Steering | None = None
        self.eni_maker = HyperplaneEnis(settings, names, net, vpc, self.store,
                                        lambda: self._rows, self.sampler, self.paths6)
        self._timer = RepairTimer(settings.reconcile_interval_s, self.repair, log, "Hyperplane")

    # lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        await upgrade_far_ends(self.vpc, self.net, self.names)
        self._rows = {r.n: r for r in self.store.all()}
        await drop_orphans(self.vpc, self.store, self.names, self._rows)
        changes = await self.reconcile()
        log.info("Hyperplane reconcile at start: %d changes", len(changes))
        self._steering = Steering(self.names)
        await self.sampler.start()
        self._timer.start()
        await self.collect()  # functions deleted or idled while the server was down

    async def stop(self) -> None:
        await self.sampler.stop()
        await self._timer.stop()
        steering, self._steering = self._steering, None
        if steering is not None:
            steering.close()
        self._attached.clear()
        await self.paths6.remove_all(sorted({r.vpc_id for r in self._rows.values()}))
        await self.net.run(hp_reconcile.remove_all, self.names)

    async def repair(self) -> list[str]:
        """One full reconcile (the worker namespace, the VPCs, the data path) against the
        store, between ENI changes (the lock). Steering is live state of the event loop: the
        reconcile leaves it alone, and when it repaired anything (an ENI rebuilt drops its
        steering elements; a remade transit has a new ifindex for the fast path) every live
        attachment is steered again here, on the loop (idempotent, ~0.01 ms each)."""
        async with self._lock:
            applied = await self._full_run(attachments=False)
            await self.paths6.repair(self._rows)  # IPv6 paths: idempotent, rebuilt if lost
        done = applied.hyperplane
        if done and self._steering is not None:
            for addr, n in sorted(self._attached.items()):
                self._steering.attach(addr, n)
            done.append(f"steered {len(self._attached)} attachments again")
        return applied.worker + done  # the worker namespace's repairs too

    async def reconcile(self, attachments: bool = True) -> list[str]:
        """Make the kernel hold exactly the stored ENIs (and, with `attachments`, the live
        attachments): one full run of the one reconciler (service/reconciler.py) with this
        service's part — planes before the VPC pass, ENIs and port guards after it, every VPC
        read back. Returns what changed of the Hyperplane part."""
        return (await self._full_run(attachments)).hyperplane

    async def _full_run(self, attachments: bool) -> Applied:
        live = tuple(sorted(self._attached.items())) if attachments else None
        return await self.vpc.reconciler.reconcile(
            verify=True, hyperplane=lambda snap: self._desired(snap, live))

    def _desired(self, snap: Snapshot,
                 attachments: tuple[tuple[str, int], ...] | None) -> HyperplaneDesired:
        """This service's part of the desired state, from the run's one read of the store."""
        enis = {e.id: e for e in snap.enis}
        subnets = {s.id: s for s in snap.subnets}
        rows = list(self._rows.values())
        kernel = [HyperplaneEni(r.n, r.vpc_id, enis[r.eni_id].ip,
                                ipam.gateway(subnets[r.key.subnet_id].cidr),
                                port_ifname(r.eni_id))
                  for r in rows if r.eni_id in enis and r.key.subnet_id in subnets]
        return HyperplaneDesired(tuple(sorted({r.vpc_id for r in rows})), tuple(kernel),
                                 tuple((r.n, r.vpc_id) for r in rows), attachments,
                                 self.settings.flow_idle_timeout_s)

    # NetworkPreparer (service/function_lifecycle.py) -----------------------------------------
    async def prepare(self, record: FunctionRecord) -> str:
        """Make (or reuse) an ENI for each of the function's subnets; returns the VPC id."""
        config = validate_vpc_config(self.vpc, record.region, record.vpc_config)
        if not config.attached:
            return ""
        groups = group_key(config.security_group_ids)
        dual_stack = hyperplane_ipv6.allows_dual_stack(record.vpc_config)
        async with self._lock:
            for subnet_id in config.subnet_ids:
                key = EniKey(record.region, subnet_id, groups)
                ipv6 = dual_stack and self.eni_maker.subnet_has_ipv6(subnet_id)
                if not self._enis_of(key):
                    await self.eni_maker.create(key, config.vpc_id, record.name, ipv6)
                elif ipv6:  # ENIs of IPv4-only functions get their address now
                    for row in self._enis_of(key):
                        await hyperplane_ipv6.ensure_address(self.vpc, key.region, row.eni_id)
        return config.vpc_id

    async def release(self, record: FunctionRecord) -> None:
        await self.collect()

    async def collect(self) -> list[int]:
        """Delete every ENI that no configuration in use needs and no environment is steered
        to; returns their numbers."""
        async with self._lock:
            wanted = self._wanted_keys()
            busy = set(self._attached.values())
            doomed = [r for n, r in sorted(self._rows.items())
                      if r.key not in wanted and n not in busy]
            for row in doomed:
                await self.eni_maker.remove(row)
        return [r.n for r in doomed]

    # VpcAttacher (sandbox/environments.py) ---------------------------------------------------
    async def attach(self, spec: FunctionSpec, sandbox: Sandbox) -> SteeredSandbox:
        assert spec.vpc is not None
        key = self._next_key(spec)
        n = self._pick(key) or await self._pick_or_create(key, spec)
        steered = self._steer(sandbox, n)
        if not spec.vpc.ipv6:
            return steered
        try:
            if await self.paths6.ensure(self._rows.get(n)):
                await self.paths6.attach(sandbox, n)
                return SteeredSandbox(steered.address, n, sandbox)
        except BaseException:  # no half-attached sandbox is left behind
            await self.detach(SteeredSandbox(steered.address, n, sandbox))
            raise
        return steered

    def attach_at_once(self, spec: FunctionSpec, sandbox: Sandbox) -> SteeredSandbox | None:
        """attach without waiting, if an ENI of the next key has room; else None (and the
        subnet's turn is not taken)."""
        assert spec.vpc is not None
        if spec.vpc.ipv6:  # the IPv6 path is kernel work for the NetThread: `attach`
            return None
        turn = self._turn.get(spec.key, 0)
        key = self._next_key(spec)
        n = self._pick(key)
        if n is None:
            self._turn[spec.key] = turn
            return None
        return self._steer(sandbox, n)

    def _steer(self, sandbox: Sandbox, n: int) -> SteeredSandbox:
        if self._steering is None:
            raise AwsError("ServiceException", "Hyperplane is not running", 500, "Service")
        # at once, on the loop (one nfnetlink batch, ~0.01 ms): batching a burst's elements
        # into one transaction made each VPC cold start wait two turns of a busy loop for its
        # element, 40-50 ms at 100 (bench burst)
        self._steering.attach(sandbox.address, n)
        self._attached[sandbox.address] = n
        return SteeredSandbox(sandbox.address, n)

    async def detach(self, handle: object) -> None:
        assert isinstance(handle, SteeredSandbox)
        if self._attached.get(handle.address) != handle.n:
            return  # stopped meanwhile (everything was removed) or already detached
        del self._attached[handle.address]
        if self._steering is not None:
            self._steering.detach(handle.address)
        if handle.sandbox is not None:
            await self.paths6.detach(handle.sandbox)
        row = self._rows.get(handle.n)
        # cheap test first: the wanted keys read every function record
        if row is not None and handle.n not in self._attached.values() \
                and row.key not in self._wanted_keys():
            await self.collect()  # its last environment went: the ENI goes too

    # choosing an ENI ---------------------------------------------------------------------
    def _next_key(self, spec: FunctionSpec) -> EniKey:
        """The (subnet, groups) key of the function's subnet whose turn it is: environments
        are spread over the subnets round-robin."""
        assert spec.vpc is not None
        subnets = sorted(spec.vpc.subnet_ids)
        turn = self._turn.get(spec.key, 0)
        self._turn[spec.key] = turn + 1
        return EniKey(spec.region, subnets[turn % len(subnets)],
                      group_key(spec.vpc.security_group_ids))

    def _pick(self, key: EniKey) -> int | None:
        """The fast path: an ENI of that key with room (flows, ports)."""
        for row in self._enis_of(key):
            if self.sampler.has_room(row.n):
                return row.n
        return None

    async def _pick_or_create(self, key: EniKey, spec: FunctionSpec) -> int:
        """Every ENI of that key is full (or missing): make a further one, as AWS does past
        65,000 flows."""
        assert spec.vpc is not None
        async with self._lock:
            for row in self._enis_of(key):
                if self.sampler.has_room(row.n):
                    return row.n
            log.info("ENIs of %s are full (flows or ports) or missing: making a further one",
                     key)
            ipv6 = hyperplane_ipv6.wants_ipv6(self.vpc, self.functions, key)
            return (await self.eni_maker.create(key, spec.vpc.vpc_id, spec.name, ipv6)).n

    def _enis_of(self, key: EniKey) -> list[HyperplaneEniRow]:
        return [r for _n, r in sorted(self._rows.items()) if r.key == key]

    def _wanted_keys(self) -> set[EniKey]:
        wanted: set[EniKey] = set()
        for region, _name, config in self.functions.vpc_configs_in_use():
            groups = group_key(config.security_group_ids)
            for subnet_id in config.subnet_ids:
                wanted.add(EniKey(region, subnet_id, groups))
        return wanted

    # flows (service/hyperplane_sampler.py) -------------------------------------------------
    async def sample_flows(self) -> dict[int, int]:
        """Sample now: tracked flows per ENI (and port-allocation errors on the way)."""
        return await self.sampler.sample_flows()

    def enis(self) -> list[HyperplaneEniRow]:
        """The Hyperplane ENIs this server keeps, in creation order."""
        return [self._rows[n] for n in sorted(self._rows)]

    def attachments(self) -> dict[str, int]:
        """Sandbox address → the ENI n it is steered to, now."""
        return dict(self._attached)

    def flows(self) -> dict[int, int]:
        """Tracked flows per ENI n, as of the last sample."""
        return dict(self.sampler.counts)

    def sampled_enis(self) -> list[SampledEni]:
        """Every ENI with its tracked flows as of the last sample (the metrics' read)."""
        return [SampledEni(row, self.sampler.counts.get(n, 0))
                for n, row in sorted(self._rows.items())]

    def port_errors(self) -> dict[int, int]:
        """Port-allocation errors counted per ENI n (as of the last sample)."""
        return {n: e.count for n, e in self.sampler.errors.items()}

