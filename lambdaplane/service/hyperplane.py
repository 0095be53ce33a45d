"""The Hyperplane service: AWS's post-2019 VPC model for functions.

Owns the Hyperplane ENIs: exactly one per (region, subnet, sorted security groups) across all
functions — made when a function is created or reconfigured (`prepare`, never at a cold start),
kept while any configuration in use needs it (FunctionService.vpc_configs_in_use) or any
environment is still steered to it, then deleted. Each is an EC2 interface (type "lambda",
requester-managed, VpcService's rules and VPC-side port) whose far end is the transit
`lp<i>t<n>` in the worker, plus the data path of net/hyperplane.py (routes, SNAT, filter).
`n` is persisted (store/hyperplane.py) so a restart rebuilds the same kernel objects.

At a cold start `attach` picks the function's subnet round-robin, an ENI of that key with
fewer than `settings.eni_flow_limit` tracked flows (a further ENI is made when all are full),
and adds one steering element — nothing else per environment. Flow counts are sampled in the
background so the cold start reads a number, not conntrack.

Port exhaustion (AWS's ErrorPortAllocation). An ENI has one source port per flow to a given
destination (protocol, address, port); `settings.eni_snat_ports` narrows the SNAT range of ENIs
made from then on (a testing knob: `serve --eni-snat-ports LO-HI`; a data path rebuilt by a
reconcile gets the full range back). What the function sees when its ENI has no port left for a
destination: with a range of at most PORT_GUARD_MAX_PORTS ports, an immediate "connection
refused" (TCP reset; ICMP port unreachable for UDP) from the ENI's port guard; with a wider range
(the default 64,512) its SYN is dropped and it waits for its connect timeout, because the guard's
per-destination count costs too much at that size (net/hyperplane/port_guard.py says what was measured).
The sampler (every FLOW_SAMPLE_S, never on the cold-start path) counts port-allocation errors
per ENI (`port_errors`, exported as lambdaplane_eni_port_allocation_errors_total):
  - flows the ENI's port guard refused: exact, per ENI;
  - plus the plane's conntrack `insert_failed` (SYNs dropped because NAT found no free port,
    including a TIME_WAIT binding that could not be reused or a retried SYN) since the last
    sample. Conntrack keeps it per VPC plane, not per ENI: with one ENI in the plane it is that
    ENI's; otherwise the whole increase goes to the ENI whose busiest destination uses the
    largest share of its port range (each of several equally full ones gets it) — the only ENI
    whose NAT can have failed when the others have ports to spare.
An ENI with a new port-allocation error takes no new environments: they go to another ENI of
the same (subnet, groups) key, made if none has room — the same path as the 65,000-flow rule.
Environments already on it stay. It takes new environments again once it has had no new error
for PORT_QUIET_S seconds and is under the flow limit.

Kernel work runs on the NetThread, except steering: the one long-lived `Steering` is used on
the event loop (a map element is cheaper than a thread hop)."""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from dataclasses import dataclass

from ..config import Settings
from ..errors import AwsError
from ..net.hyperplane import counters as hp_counters
from ..net.hyperplane import ipv6 as hp_ipv6
from ..net.hyperplane import migration as hp_migration
from ..net.hyperplane import plane as hp_plane
from ..net.hyperplane import port_guard as hp_port_guard
from ..net.hyperplane import reconciler as hp_reconcile
from ..net.hyperplane.eni import ensure_eni, remove_eni
from ..net.hyperplane.model import SNAT_PORTS, HyperplaneEni, port_range_size
from ..net.hyperplane.steering import Steering
from ..net.conntrack import ConntrackUnavailable
from ..net.executor import NetThread
from ..net.names import LEGACY_ENI_FIRST, Names, port_ifname
from ..sandbox.pool import Sandbox
from ..sandbox.types import FunctionSpec
from ..store.db import Database
from ..store.ec2 import FarEnd
from ..store.functions import FunctionRecord
from ..store.hyperplane import EniKey, HyperplaneEniRow, HyperplaneStore, group_key
from . import hyperplane_ipv6, ipam
from .functions import FunctionService
from .vpc import VpcService
from .vpc_config import validate_vpc_config

log = logging.getLogger("lambdaplane.hyperplane")

FLOW_SAMPLE_S = 1.0
PORT_QUIET_S = 60.0  # an ENI without port-allocation errors this long takes environments again
MAX_N = LEGACY_ENI_FIRST - 1  # legacy mode's per-environment ENIs use n above this
NO_ADDRESS = ("Lambda was not able to create an ENI in the VPC of the Lambda function because "
              "one or more configured subnets has no available IP addresses.")


@dataclass
class PortErrors:
    """Port-allocation errors counted for one ENI (see the module docstring)."""
    count: int = 0
    last_at: float | None = None  # monotonic time of the sample that saw the last new ones


@dataclass(frozen=True)
class SteeredSandbox:
    """An environment's VPC handle: its sandbox address, steered to ENI n."""
    address: str
    n: int
    sandbox: Sandbox | None = None  # set when the sandbox has an IPv6 path too


async def upgrade_far_ends(vpc: VpcService, net: NetThread, names: Names) -> None:
    """Interfaces stored before the plane moved into the VPC namespace (2026-12-06) lead to
    `e<n>` in a namespace of their own: point them at their transit instead, and remove those
    namespaces (reconcile then makes the ports anew)."""
    moved = []
    for eni in vpc.store.enis():
        far = eni.far_end
        n = hp_migration.old_layout_number(names, far.netns, far.ifname) if far else None
        if n is not None:
            moved.append((eni.id, FarEnd(names.worker_netns, names.transit_veth(n), False)))
    if moved:
        with vpc.db.transaction():
            for eni_id, far in moved:
                vpc.store.set_eni_far_end(eni_id, far)
        log.info("moved %d interfaces to the plane in the VPC namespace", len(moved))
    await net.run(hp_migration.remove_old_planes, names)


@dataclass(frozen=True)
class SampledEni:
    """One Hyperplane ENI as the sampler last saw it."""
    row: HyperplaneEniRow
    active_connections: int  # tracked flows through it at the last sample


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
        self._flows: dict[int, int] = {}  # sampled tracked flows per ENI
        self._port_errors: dict[int, PortErrors] = {}  # per ENI, fed by the sampler
        self._seen: dict[str, tuple[int, dict[int, int]]] = {}  # per VPC plane: the last
        # sample's insert_failed and guard refusals per ENI (the increase is what is counted)
        self._turn: dict[tuple[str, str], int] = {}  # round-robin position per function
        self._lock = asyncio.Lock()  # ENIs are made and removed one at a time
        self._v6_ready: set[int] = set()  # ENIs whose IPv6 path is in place
        # Steering runs on the event loop itself: one map element is ~0.01 ms of CPU, while a
        # hop to any thread costs a GIL hand-over each way, which under a burst of cold starts
        # (the loop busy) waited tens of ms. Its netlink socket lives in the worker netns.
        self._steering: Steering | None = None
        self._sampler: asyncio.Task[None] | None = None
        self._reconciler: asyncio.Task[None] | None = None

    # lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        await upgrade_far_ends(self.vpc, self.net, self.names)
        self._rows = {r.n: r for r in self.store.all()}
        await self._drop_orphans()
        changes = await self.reconcile()
        log.info("Hyperplane reconcile at start: %d changes", len(changes))
        self._steering = Steering(self.names)
        for vpc_id in sorted({r.vpc_id for r in self._rows.values()}):
            # planes that survived a crash: errors from before are not this run's to count
            try:
                ports = await self._read_plane(vpc_id)
            except ConntrackUnavailable as e:  # flows and port errors cannot be counted
                log.error("Hyperplane: %s", e)
                continue
            self._seen[vpc_id] = (ports.insert_failed, ports.refused)
        self._sampler = asyncio.get_running_loop().create_task(self._sample_flows())
        self._reconciler = asyncio.get_running_loop().create_task(self._reconcile_on_timer())
        await self.collect()  # functions deleted or idled while the server was down

    async def stop(self) -> None:
        for task in (self._sampler, self._reconciler):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._sampler = self._reconciler = None
        steering, self._steering = self._steering, None
        if steering is not None:
            steering.close()
        self._attached.clear()
        for vpc_id in sorted({r.vpc_id for r in self._rows.values()}):
            await self.net.run(hp_ipv6.remove_plane6, self.names, vpc_id)
        await self.net.run(hp_ipv6.remove_steering6, self.names)
        self._v6_ready.clear()
        await self.net.run(hp_reconcile.remove_all, self.names)

    async def _reconcile_on_timer(self) -> None:
        """Every settings.reconcile_interval_s: repair what drifted from the store (a link, a
        table, a route removed by hand) without a restart."""
        while True:
            await asyncio.sleep(self.settings.reconcile_interval_s)
            try:
                done = await self.repair()
            except Exception:  # noqa: BLE001 - logged; the next period tries again
                log.exception("Hyperplane reconcile on timer failed")
                continue
            if done:
                log.warning("Hyperplane: repaired drift from the store: %s", "; ".join(done))

    async def repair(self) -> list[str]:
        """One reconcile of the VPCs' and the data path's kernel state against the store,
        between ENI changes (the lock). Steering is live state of the event loop: the
        reconcile leaves it alone, and when it repaired anything (an ENI rebuilt drops its
        steering elements; a remade transit has a new ifindex for the fast path) every live
        attachment is steered again here, on the loop (idempotent, ~0.01 ms each)."""
        async with self._lock:
            done = await self.reconcile(attachments=False)
            for n in sorted(self._v6_ready):  # IPv6 paths: idempotent, rebuilt if lost
                eni6 = self._eni6(self._rows[n]) if n in self._rows else None
                if eni6 is not None:
                    await self.net.run(hp_ipv6.ensure_eni6, self.names, eni6)
        if done and self._steering is not None:
            for addr, n in sorted(self._attached.items()):
                self._steering.attach(addr, n)
            done.append(f"steered {len(self._attached)} attachments again")
        return done

    async def reconcile(self, attachments: bool = True) -> list[str]:
        """Make the kernel hold exactly the stored ENIs (and, with `attachments`, the live
        attachments)."""
        vpc_ids = sorted({r.vpc_id for r in self._rows.values()})
        idle = self.settings.flow_idle_timeout_s
        for vpc_id in vpc_ids:  # planes first: their ENIs are set up after the ports exist
            await self.net.run(hp_plane.ensure_vpc_plane, self.names, vpc_id, idle)
        await self.vpc.reconcile(verify=True)  # start and drift repair: read everything back
        enis = [e for e in map(self._kernel_eni, self._rows.values()) if e is not None]
        done = await self.net.run(hp_reconcile.reconcile, self.names, enis,
                                  dict(self._attached) if attachments else None, vpc_ids, idle)
        for vpc_id in vpc_ids:  # port guards of ENIs that are gone
            for n in await self.net.run(hp_port_guard.port_guards, self.names, vpc_id):
                if n not in self._rows or self._rows[n].vpc_id != vpc_id:
                    await self.net.run(hp_port_guard.remove_port_guard, self.names, vpc_id, n)
                    done.append(f"removed port guard {n}")
        return done

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
                ipv6 = dual_stack and self._subnet_has_ipv6(subnet_id)
                if not self._enis_of(key):
                    await self._create(key, config.vpc_id, record.name, ipv6)
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
                await self._remove(row)
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
            if await self._ensure_eni6(n):
                await self.net.run(hp_ipv6.attach6, self.names, sandbox.slot, sandbox.netns,
                                   sandbox.veth, n)
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
            box = handle.sandbox
            await self.net.run(hp_ipv6.detach6, self.names, box.slot, box.netns, box.veth)
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
            if self._has_room(row.n):
                return row.n
        return None

    def _has_room(self, n: int) -> bool:
        """Under the flow limit and no port-allocation error in the last PORT_QUIET_S."""
        if self._flows.get(n, 0) >= self.settings.eni_flow_limit:
            return False
        errors = self._port_errors.get(n)
        return errors is None or errors.last_at is None \
            or time.monotonic() - errors.last_at >= PORT_QUIET_S

    async def _pick_or_create(self, key: EniKey, spec: FunctionSpec) -> int:
        """Every ENI of that key is full (or missing): make a further one, as AWS does past
        65,000 flows."""
        assert spec.vpc is not None
        async with self._lock:
            for row in self._enis_of(key):
                if self._has_room(row.n):
                    return row.n
            log.info("ENIs of %s are full (flows or ports) or missing: making a further one",
                     key)
            ipv6 = hyperplane_ipv6.wants_ipv6(self.vpc, self.functions, key)
            return (await self._create(key, spec.vpc.vpc_id, spec.name, ipv6)).n

    def _enis_of(self, key: EniKey) -> list[HyperplaneEniRow]:
        return [r for _n, r in sorted(self._rows.items()) if r.key == key]

    def _wanted_keys(self) -> set[EniKey]:
        wanted: set[EniKey] = set()
        for region, _name, config in self.functions.vpc_configs_in_use():
            groups = group_key(config.security_group_ids)
            for subnet_id in config.subnet_ids:
                wanted.add(EniKey(region, subnet_id, groups))
        return wanted

    # making and removing ENIs (under self._lock) --------------------------------------------
    def _subnet_has_ipv6(self, subnet_id: str) -> bool:
        subnet = self.vpc.store.subnet(subnet_id)
        return subnet is not None and bool(self.vpc.ipv6.subnet_cidrs(subnet))

    async def _create(self, key: EniKey, vpc_id: str, function_name: str,
                      ipv6: bool = False) -> HyperplaneEniRow:
        """A further ENI of `key`; with `ipv6`, one IPv6 address of its subnet's /64
        (service/hyperplane_ipv6.py)."""
        n = self.store.free_number()
        if n > MAX_N:
            raise AwsError("ENILimitReachedException", "Hyperplane ENI numbers are exhausted",
                           502, "Service", extra={"ReasonCode": "EniLimitExceeded"})
        await self.net.run(hp_plane.ensure_vpc_plane, self.names, vpc_id,
                           self.settings.flow_idle_timeout_s)
        far = FarEnd(self.names.worker_netns, self.names.transit_veth(n), False)
        try:
            eni = await self.vpc.create_interface(
                key.region, key.subnet_id, key.group_ids,
                description=f"AWS Lambda VPC ENI-{function_name}-{uuid.uuid4()}",
                interface_type="lambda", requester_managed=True, far_end=far,
                ipv6_count=1 if ipv6 else None)
        except AwsError as e:
            await self._drop_plane_if_unused(vpc_id)
            raise _state_error(e) from None
        row = HyperplaneEniRow(n, key, vpc_id, eni.id, function_name)
        self.store.add(row)
        self._rows[n] = row
        try:
            kernel = self._kernel_eni(row)
            assert kernel is not None
            ports = self.settings.eni_snat_ports or SNAT_PORTS
            await self.net.run(ensure_eni, self.names, kernel, ports)
            await self.net.run(hp_port_guard.ensure_port_guard, self.names, vpc_id, n, ports)
        except BaseException:
            log.exception("the data path of %s (e%d) failed; removing it", eni.id, n)
            await self._remove(row)
            raise
        log.info("Hyperplane ENI %s (e%d, %s) for %s/%s", eni.id, n, eni.ip, key.subnet_id,
                 key.groups)
        return row

    async def _remove(self, row: HyperplaneEniRow) -> None:
        await self.net.run(hp_port_guard.remove_port_guard, self.names, row.vpc_id, row.n)
        await self.net.run(hp_ipv6.remove_eni6, self.names, row.vpc_id, row.n)
        self._v6_ready.discard(row.n)
        await self.net.run(remove_eni, self.names, row.vpc_id, row.n)
        if self.vpc.store.eni(row.eni_id) is not None:
            await self.vpc.delete_interface(row.key.region, row.eni_id, by_user=False)
        self.store.delete(row.n)
        self._rows.pop(row.n, None)
        self._flows.pop(row.n, None)
        self._port_errors.pop(row.n, None)
        log.info("deleted Hyperplane ENI %s (e%d): no function uses it", row.eni_id, row.n)
        await self._drop_plane_if_unused(row.vpc_id)

    async def _drop_plane_if_unused(self, vpc_id: str) -> None:
        if not any(r.vpc_id == vpc_id for r in self._rows.values()):
            await self.net.run(hp_ipv6.remove_plane6, self.names, vpc_id)
            await self.net.run(hp_plane.remove_vpc_plane, self.names, vpc_id)
            self._seen.pop(vpc_id, None)  # a new plane's counters start at zero

    async def _drop_orphans(self) -> None:
        """Repair a crash between the EC2 interface and our row (either way round)."""
        for n, row in list(self._rows.items()):
            if self.vpc.store.eni(row.eni_id) is None:
                self.store.delete(n)
                del self._rows[n]
        ours = {r.eni_id for r in self._rows.values()}
        for eni in self.vpc.store.enis():
            far = eni.far_end
            number = self.names.eni_of_far_end(far.netns, far.ifname) if far else None
            if (eni.interface_type == "lambda" and number is not None and eni.id not in ours
                    and number <= MAX_N):
                log.info("removing %s: a Hyperplane ENI the store lost", eni.id)
                await self.vpc.delete_interface(eni.region, eni.id, by_user=False)

    def _eni6(self, row: HyperplaneEniRow) -> hp_ipv6.Eni6 | None:
        """The IPv6 side of an ENI that has an IPv6 address (service/hyperplane_ipv6.py)."""
        addresses = self.vpc.ipv6.addresses_of(row.eni_id)
        return hp_ipv6.Eni6(row.n, row.vpc_id, addresses[0], port_ifname(row.eni_id)) \
            if addresses else None

    async def _ensure_eni6(self, n: int) -> bool:
        """ENI n's IPv6 path, made once per run (a repair makes it again); False when the
        ENI has no IPv6 address."""
        row = self._rows.get(n)
        eni6 = self._eni6(row) if row is not None else None
        if eni6 is None:
            return False
        if n not in self._v6_ready:
            await self.net.run(hp_ipv6.ensure_eni6, self.names, eni6)
            self._v6_ready.add(n)
        return True

    def _kernel_eni(self, row: HyperplaneEniRow) -> HyperplaneEni | None:
        eni = self.vpc.store.eni(row.eni_id)
        subnet = self.vpc.store.subnet(row.key.subnet_id)
        if eni is None or subnet is None:
            return None
        return HyperplaneEni(row.n, row.vpc_id, eni.ip, ipam.gateway(subnet.cidr),
                                port_ifname(eni.id))

    # flows ----------------------------------------------------------------------------------
    async def _read_plane(self, vpc_id: str) -> hp_counters.PlanePorts:
        """One read of a plane for the port rule; its conntrack dump (a walk of the kernel's
        whole table) runs on a thread of its own, not the NetThread."""
        reading = await asyncio.to_thread(hp_counters.read_conntrack, self.names, vpc_id)
        return await self.net.run(hp_counters.plane_ports, self.names, vpc_id, False, reading)

    async def _sample_flows(self) -> None:
        while True:
            await asyncio.sleep(FLOW_SAMPLE_S)
            try:
                await self.sample_flows()
            except Exception:  # noqa: BLE001 - logged; the next sample tries again
                log.exception("sampling Hyperplane flows failed")

    async def sample_flows(self) -> dict[int, int]:
        """Tracked flows per ENI, as the 65,000 rule reads them; counts port-allocation
        errors on the way (one conntrack read per plane serves both)."""
        if not self._attached:
            self._flows = {}
            return {}
        counts: dict[int, int] = {}
        for vpc_id in sorted({r.vpc_id for r in self._rows.values()}):
            reading = await asyncio.to_thread(hp_counters.read_conntrack, self.names, vpc_id)
            ports = await self.net.run(hp_counters.plane_ports, self.names, vpc_id, False,
                                       reading)
            addresses: dict[int, str] = {}
            for row in [r for r in self._rows.values() if r.vpc_id == vpc_id]:
                eni = self.vpc.store.eni(row.eni_id)
                if eni is not None:
                    counts[row.n] = ports.flows.get(eni.ip, 0)
                    addresses[row.n] = eni.ip
            failed_before = self._seen.get(vpc_id, (0, {}))[0]
            destinations = None
            if ports.insert_failed > failed_before and len(addresses) > 1:
                # several ENIs share the plane's count: who is out of ports (rare, so the
                # reading is parsed again, per destination)
                destinations = await self.net.run(hp_counters.plane_ports, self.names,
                                                  vpc_id, True, reading)
            self._count_port_errors(vpc_id, ports, addresses, destinations)
        self._flows = counts
        return counts

    def _count_port_errors(self, vpc_id: str, ports: hp_counters.PlanePorts,
                           addresses: dict[int, str],
                           destinations: hp_counters.PlanePorts | None = None) -> None:
        """Attribute a plane's new port-allocation errors to its ENIs (module docstring);
        `destinations`: a read with each ENI's busiest destination, when several ENIs may
        share the plane's conntrack count."""
        failed_before, refused_before = self._seen.get(vpc_id, (0, {}))
        self._seen[vpc_id] = (ports.insert_failed, dict(ports.refused))
        new = {n: max(0, ports.refused.get(n, 0) - refused_before.get(n, 0)) for n in addresses}
        failed = max(0, ports.insert_failed - failed_before)
        if failed and addresses:
            def share(n: int) -> float:
                if destinations is None:
                    return 0.0  # one ENI (or no read): every candidate shares the top rank
                used = destinations.busiest.get(addresses[n], 0)
                full = destinations.ranges.get(n, port_range_size(SNAT_PORTS))
                return used / max(1, full)
            fullest = max(share(n) for n in addresses)
            for n in addresses:
                if share(n) == fullest:
                    new[n] += failed
        now = time.monotonic()
        for n, count in new.items():
            if count:
                errors = self._port_errors.setdefault(n, PortErrors())
                if errors.last_at is None or now - errors.last_at >= PORT_QUIET_S:
                    log.info("Hyperplane ENI e%d: port-allocation errors; it takes no new "
                             "environments until %.0f s without any", n, PORT_QUIET_S)
                errors.count += count
                errors.last_at = now

    def enis(self) -> list[HyperplaneEniRow]:
        """The Hyperplane ENIs this server keeps, in creation order."""
        return [self._rows[n] for n in sorted(self._rows)]

    def attachments(self) -> dict[str, int]:
        """Sandbox address → the ENI n it is steered to, now."""
        return dict(self._attached)

    def flows(self) -> dict[int, int]:
        """Tracked flows per ENI n, as of the last sample."""
        return dict(self._flows)

    def sampled_enis(self) -> list[SampledEni]:
        """Every ENI with its tracked flows as of the last sample (the metrics' read)."""
        return [SampledEni(row, self._flows.get(n, 0)) for n, row in sorted(self._rows.items())]

    def port_errors(self) -> dict[int, int]:
        """Port-allocation errors counted per ENI n (as of the last sample)."""
        return {n: e.count for n, e in self._port_errors.items()}


def _state_error(e: AwsError) -> AwsError:
    """EC2's failure as the function's StateReasonCode / LastUpdateStatusReasonCode."""
    if e.code == "InsufficientFreeAddressesInSubnet":
        return AwsError("SubnetIPAddressLimitReachedException", NO_ADDRESS, 502, "Service",
                        extra={"ReasonCode": "SubnetOutOfIPAddresses"})
    code = {"InvalidSubnetID.NotFound": "InvalidSubnet",
            "InvalidGroup.NotFound": "InvalidSecurityGroup"}.get(e.code, "InternalError")
    return AwsError(e.code, e.message, e.status, "Service", extra={"ReasonCode": code})
