"""The Hyperplane service: AWS's post-2019 VPC model for functions.

Owns the Hyperplane ENIs: exactly one per (region, subnet, sorted security groups) across all
functions — made when a function is created or reconfigured (`prepare`, never at a cold start),
kept while any configuration in use needs it (FunctionService.vpc_configs_in_use) or any
environment is still steered to it, then deleted. Each is an EC2 interface (type "lambda",
requester-managed, VpcService's rules and VPC-side port) whose far end `e<n>` lives in the
VPC's hyperplane namespace, plus the data path of net/hyperplane.py (transit, SNAT, filter).
`n` is persisted (store/hyperplane.py) so a restart rebuilds the same kernel objects.

At a cold start `attach` picks the function's subnet round-robin, an ENI of that key with
fewer than `settings.eni_flow_limit` tracked flows (a further ENI is made when all are full),
and adds one steering element — nothing else per environment. Flow counts are sampled in the
background so the cold start reads a number, not conntrack.

Kernel work runs on the NetThread; the one long-lived `hp.Steering` belongs to that thread."""
from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import uuid
from dataclasses import dataclass

from ..config import Settings
from ..errors import AwsError
from ..net import hyperplane as hp
from ..net.executor import NetThread
from ..net.names import Names
from ..sandbox.pool import Sandbox
from ..sandbox.types import FunctionSpec
from ..store.db import Database
from ..store.ec2 import FarEnd
from ..store.functions import FunctionRecord
from ..store.hyperplane import EniKey, HyperplaneEniRow, HyperplaneStore, group_key
from . import ipam
from .functions import FunctionService
from .vpc import VpcService
from .vpc_config import validate_vpc_config

log = logging.getLogger("lambdaplane.hyperplane")

FLOW_SAMPLE_S = 1.0
MAX_N = 50_000  # legacy mode's per-environment ENIs use e<n> above this (service/legacy.py)
NO_ADDRESS = ("Lambda was not able to create an ENI in the VPC of the Lambda function because "
              "one or more configured subnets has no available IP addresses.")


@dataclass(frozen=True)
class SteeredSandbox:
    """An environment's VPC handle: its sandbox address, steered to ENI n."""
    address: str
    n: int


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
        self._turn: dict[tuple[str, str], int] = {}  # round-robin position per function
        self._lock = asyncio.Lock()  # ENIs are made and removed one at a time
        self._steering: hp.Steering | None = None
        # Steering has a thread of its own: a cold start's one map element must not queue
        # behind pool builds, VPC reconciles or flow sampling on the shared net thread.
        self._steer_thread: NetThread | None = None
        self._sampler: asyncio.Task[None] | None = None

    # lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        self._rows = {r.n: r for r in self.store.all()}
        await self._drop_orphans()
        changes = await self.reconcile()
        log.info("Hyperplane reconcile at start: %d changes", len(changes))
        self._steer_thread = NetThread(name="lp-steer")
        self._steering = await self._steer_thread.run(hp.Steering, self.names)
        self._sampler = asyncio.get_running_loop().create_task(self._sample_flows())
        await self.collect()  # functions deleted or idled while the server was down

    async def stop(self) -> None:
        if self._sampler is not None:
            self._sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sampler
            self._sampler = None
        steering, self._steering = self._steering, None
        thread, self._steer_thread = self._steer_thread, None
        if steering is not None and thread is not None:
            await thread.run(steering.close)
        if thread is not None:
            thread.close()
        self._attached.clear()
        await self.net.run(hp.remove_all, self.names)

    async def reconcile(self) -> list[str]:
        """Make the kernel hold exactly the stored ENIs (and the live attachments)."""
        vpc_ids = sorted({r.vpc_id for r in self._rows.values()})
        idle = self.settings.flow_idle_timeout_s
        for vpc_id in vpc_ids:  # the VPC code makes e<n> inside these namespaces
            await self.net.run(hp.ensure_vpc_plane, self.names, vpc_id, idle)
        await self.vpc.reconcile()
        enis = [e for e in map(self._kernel_eni, self._rows.values()) if e is not None]
        return await self.net.run(hp.reconcile, self.names, enis, dict(self._attached), vpc_ids,
                                  idle)

    # NetworkPreparer (service/functions.py) --------------------------------------------------
    async def prepare(self, record: FunctionRecord) -> str:
        """Make (or reuse) an ENI for each of the function's subnets; returns the VPC id."""
        config = validate_vpc_config(self.vpc, record.region, record.vpc_config)
        if not config.attached:
            return ""
        groups = group_key(config.security_group_ids)
        async with self._lock:
            for subnet_id in config.subnet_ids:
                key = EniKey(record.region, subnet_id, groups)
                if not self._enis_of(key):
                    await self._create(key, config.vpc_id, record.name)
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
        if self._steering is None or self._steer_thread is None:
            raise AwsError("ServiceException", "Hyperplane is not running", 500, "Service")
        await self._steer_thread.run(self._steering.attach, sandbox.address, n)
        self._attached[sandbox.address] = n
        return SteeredSandbox(sandbox.address, n)

    async def detach(self, handle: object) -> None:
        assert isinstance(handle, SteeredSandbox)
        if self._attached.get(handle.address) != handle.n:
            return  # stopped meanwhile (everything was removed) or already detached
        del self._attached[handle.address]
        if self._steering is not None and self._steer_thread is not None:
            await self._steer_thread.run(self._steering.detach, handle.address)
        row = self._rows.get(handle.n)
        if row is not None and row.key not in self._wanted_keys() \
                and handle.n not in self._attached.values():
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
        """The fast path: an ENI of that key under the flow limit."""
        for row in self._enis_of(key):
            if self._flows.get(row.n, 0) < self.settings.eni_flow_limit:
                return row.n
        return None

    async def _pick_or_create(self, key: EniKey, spec: FunctionSpec) -> int:
        """Every ENI of that key is full (or missing): make a further one, as AWS does past
        65,000 flows."""
        assert spec.vpc is not None
        async with self._lock:
            for row in self._enis_of(key):
                if self._flows.get(row.n, 0) < self.settings.eni_flow_limit:
                    return row.n
            log.info("ENIs of %s are full or missing: making a further one", key)
            return (await self._create(key, spec.vpc.vpc_id, spec.name)).n

    def _enis_of(self, key: EniKey) -> list[HyperplaneEniRow]:
        return [r for _n, r in sorted(self._rows.items()) if r.key == key]

    def _wanted_keys(self) -> set[EniKey]:
        wanted: set[EniKey] = set()
        for region, _name, config in self.functions.vpc_configs_in_use():
            groups = group_key(list(config.get("SecurityGroupIds") or []))  # type: ignore[arg-type]
            for subnet_id in config.get("SubnetIds") or []:  # type: ignore[union-attr]
                wanted.add(EniKey(region, str(subnet_id), groups))
        return wanted

    # making and removing ENIs (under self._lock) --------------------------------------------
    async def _create(self, key: EniKey, vpc_id: str, function_name: str) -> HyperplaneEniRow:
        n = self.store.free_number()
        if n > MAX_N:
            raise AwsError("ENILimitReachedException", "Hyperplane ENI numbers are exhausted",
                           502, "Service", extra={"ReasonCode": "EniLimitExceeded"})
        await self.net.run(hp.ensure_vpc_plane, self.names, vpc_id,
                           self.settings.flow_idle_timeout_s)
        far = FarEnd(self.names.hyperplane_netns(vpc_id), self.names.hyperplane_eni_link(n), False)
        try:
            eni = await self.vpc.create_interface(
                key.region, key.subnet_id, key.group_ids,
                description=f"AWS Lambda VPC ENI-{function_name}-{uuid.uuid4()}",
                interface_type="lambda", requester_managed=True, far_end=far)
        except AwsError as e:
            await self._drop_plane_if_unused(vpc_id)
            raise _state_error(e) from None
        row = HyperplaneEniRow(n, key, vpc_id, eni.id, function_name)
        self.store.add(row)
        self._rows[n] = row
        try:
            kernel = self._kernel_eni(row)
            assert kernel is not None
            await self.net.run(hp.ensure_eni, self.names, kernel)
        except BaseException:
            log.exception("the data path of %s (e%d) failed; removing it", eni.id, n)
            await self._remove(row)
            raise
        log.info("Hyperplane ENI %s (e%d, %s) for %s/%s", eni.id, n, eni.ip, key.subnet_id,
                 key.groups)
        return row

    async def _remove(self, row: HyperplaneEniRow) -> None:
        await self.net.run(hp.remove_eni, self.names, row.vpc_id, row.n)
        if self.vpc.store.eni(row.eni_id) is not None:
            await self.vpc.delete_interface(row.key.region, row.eni_id, by_user=False)
        self.store.delete(row.n)
        self._rows.pop(row.n, None)
        self._flows.pop(row.n, None)
        log.info("deleted Hyperplane ENI %s (e%d): no function uses it", row.eni_id, row.n)
        await self._drop_plane_if_unused(row.vpc_id)

    async def _drop_plane_if_unused(self, vpc_id: str) -> None:
        if not any(r.vpc_id == vpc_id for r in self._rows.values()):
            await self.net.run(hp.remove_vpc_plane, self.names, vpc_id)

    async def _drop_orphans(self) -> None:
        """Repair a crash between the EC2 interface and our row (either way round)."""
        for n, row in list(self._rows.items()):
            if self.vpc.store.eni(row.eni_id) is None:
                self.store.delete(n)
                del self._rows[n]
        ours = {r.eni_id for r in self._rows.values()}
        for eni in self.vpc.store.enis():
            far = eni.far_end
            if (eni.interface_type == "lambda" and far is not None and eni.id not in ours
                    and far.netns.startswith(self.names.hyperplane_netns(""))
                    and far.ifname[1:].isdigit() and int(far.ifname[1:]) <= MAX_N):
                log.info("removing %s: a Hyperplane ENI the store lost", eni.id)
                await self.vpc.delete_interface(eni.region, eni.id, by_user=False)

    def _kernel_eni(self, row: HyperplaneEniRow) -> hp.HyperplaneEni | None:
        eni = self.vpc.store.eni(row.eni_id)
        subnet = self.vpc.store.subnet(row.key.subnet_id)
        if eni is None or subnet is None:
            return None
        return hp.HyperplaneEni(row.n, row.vpc_id, eni.ip, ipam.gateway(subnet.cidr),
                                ipaddress.IPv4Network(subnet.cidr).prefixlen)

    # flows ----------------------------------------------------------------------------------
    async def _sample_flows(self) -> None:
        while True:
            await asyncio.sleep(FLOW_SAMPLE_S)
            try:
                await self.sample_flows()
            except Exception:  # noqa: BLE001 - logged; the next sample tries again
                log.exception("sampling Hyperplane flows failed")

    async def sample_flows(self) -> dict[int, int]:
        """Tracked flows per ENI, as the 65,000 rule reads them."""
        if not self._attached:
            self._flows = {}
            return {}
        counts: dict[int, int] = {}
        for vpc_id in sorted({r.vpc_id for r in self._rows.values()}):
            by_address = await self.net.run(hp.flow_counts, self.names, vpc_id)
            for row in [r for r in self._rows.values() if r.vpc_id == vpc_id]:
                eni = self.vpc.store.eni(row.eni_id)
                if eni is not None:
                    counts[row.n] = by_address.get(eni.ip, 0)
        self._flows = counts
        return counts


def _state_error(e: AwsError) -> AwsError:
    """EC2's failure as the function's StateReasonCode / LastUpdateStatusReasonCode."""
    if e.code == "InsufficientFreeAddressesInSubnet":
        return AwsError("SubnetIPAddressLimitReachedException", NO_ADDRESS, 502, "Service",
                        extra={"ReasonCode": "SubnetOutOfIPAddresses"})
    code = {"InvalidSubnetID.NotFound": "InvalidSubnet",
            "InvalidGroup.NotFound": "InvalidSecurityGroup"}.get(e.code, "InternalError")
    return AwsError(e.code, e.message, e.status, "Service", extra={"ReasonCode": code})
