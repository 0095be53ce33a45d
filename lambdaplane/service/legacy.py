"""The pre-2019 VPC model (`serve --vpc-mode legacy`), kept to show what Hyperplane saves.

Owns the life of *legacy ENIs*: one per execution environment, created during its cold start in
one of the function's subnets (taking an address there), and deleted with the environment. When
every subnet of the function is out of addresses the cold start fails with a 502
SubnetIPAddressLimitReachedException, as AWS did then. Creating or updating a function makes no
ENI (AWS validated the VpcConfig only).

Plugs into the same two places as service/hyperplane.py: `prepare`/`release` (NetworkPreparer,
service/function_lifecycle.py) and `attach`/`detach` (VpcAttacher, sandbox/environments.py).
The ENI row and its VPC port belong to VpcService (its reconcile makes the port, whose peer is
the transit `lp<i>t<n>` in the worker); the per-ENI data path (routes, SNAT, one steering
element) is net/legacy.py's on the NetThread.

A legacy ENI is recognised by its port's far end: the transit `lp<i>t<n>` with n ≥ LEGACY_BASE,
a range Hyperplane ENIs never use, so leftovers of a crash are found from the store alone.

Drift repair as in Hyperplane mode: `reconcile` is a full run of the one reconciler
(service/reconciler.py: the worker step, the uplink with it, and every VPC read back), on the
`--reconcile-interval` timer (service/repair_timer.py), from the platform's reconcile and from
service/kernel_watch.py.
The legacy per-ENI data path is made and removed with each environment, not reconciled."""
from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

from ..config import Settings
from ..errors import AwsError, SubnetIPAddressLimitReached
from ..net import hyperplane as hp
from ..net import legacy as net_legacy
from ..net.executor import NetThread
from ..net.names import ENI_LAST, LEGACY_ENI_FIRST, Names
from ..net.names import port_ifname
from ..sandbox.pool import Sandbox
from ..sandbox.types import FunctionSpec
from ..store.ec2 import Eni, FarEnd
from ..store.functions import FunctionRecord
from . import ipam
from .hyperplane_recovery import upgrade_far_ends
from .repair_timer import RepairTimer
from .vpc import VpcService

log = logging.getLogger("lambdaplane.legacy")

LEGACY_BASE = LEGACY_ENI_FIRST  # legacy ENI ids: LEGACY_BASE..ENI_LAST (net/names.py)
DESCRIPTION = "AWS Lambda VPC ENI: {}"  # pre-2019 Lambda's description (a uuid follows)
NO_ADDRESS_MESSAGE = ("Lambda was not able to set up VPC access for the Lambda function because "
                      "one or more configured subnets has no available IP addresses.")


@dataclass(frozen=True)
class LegacyHandle:
    """What an environment holds while it lives: its ENI (store row + data path)."""
    eni_id: str
    region: str
    dedicated: net_legacy.DedicatedEni


def legacy_n(eni: Eni, names: Names) -> int | None:
    """The data-path id of a legacy ENI, None for any other interface."""
    far = eni.far_end
    n = names.eni_of_far_end(far.netns, far.ifname) if far else None
    return n if n is not None and n >= LEGACY_BASE else None


class LegacyVpc:
    """NetworkPreparer + VpcAttacher for legacy mode."""

    def __init__(self, settings: Settings, names: Names, net: NetThread, vpc: VpcService,
                 functions: object) -> None:
        self.settings = settings
        self.names = names
        self.net = net
        self.vpc = vpc
        self.functions = functions
        self._used: set[int] = set()
        self._steering: hp.Steering | None = None
        self._live: dict[str, LegacyHandle] = {}  # eni id → handle, for stop()
        self._timer = RepairTimer(settings.reconcile_interval_s, self.reconcile, log, "legacy")

    # lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        """Environments do not survive a restart, so every legacy ENI in the store is a
        leftover of a crash: delete it, and every data-path object of this instance."""
        await upgrade_far_ends(self.vpc, self.net, self.names)
        leftovers = [e for e in self.vpc.store.enis() if legacy_n(e, self.names) is not None]
        if leftovers:
            log.info("removing %d legacy ENIs of environments that are gone", len(leftovers))
            with self.vpc.db.transaction():
                for eni in leftovers:
                    self.vpc.store.delete_eni(eni.id)
        await self.net.run(hp.remove_all, self.names)
        if leftovers:
            await self.vpc.reconcile()
        self._timer.start()

    async def stop(self) -> None:
        """Remove what every live environment still holds (rows and kernel objects); the
        environments' own detach, if it comes later, finds nothing left to do."""
        await self._timer.stop()
        doomed = list(self._live)
        self._live.clear()
        if doomed:
            with self.vpc.db.transaction():
                for eni_id in doomed:
                    self.vpc.store.delete_eni(eni_id)
        steering, self._steering = self._steering, None
        if steering is not None:
            await self.net.run(steering.close)
        await self.net.run(hp.remove_all, self.names)
        self._used.clear()

    async def reconcile(self) -> list[str]:
        """A full run of the one reconciler (its worker step included); what it changed."""
        return await self.vpc.reconcile(verify=True)

    # NetworkPreparer ---------------------------------------------------------------------
    async def prepare(self, record: FunctionRecord) -> str:
        """Pre-2019 Lambda checked the VpcConfig at create/update time and made no ENI."""
        from .vpc_config import validate_vpc_config

        checked = validate_vpc_config(self.vpc, record.region, record.vpc_config)
        return checked.vpc_id

    async def release(self, record: FunctionRecord) -> None:
        """Nothing is held per function: each environment's ENI goes with the environment."""

    # VpcAttacher -------------------------------------------------------------------------
    def attach_at_once(self, spec: FunctionSpec, sandbox: Sandbox) -> None:
        """Never: an environment's own ENI is made during its cold start."""
        return None

    async def attach(self, spec: FunctionSpec, sandbox: Sandbox) -> LegacyHandle:
        """During the cold start: an ENI of this environment's own, in the function's subnet
        with the most free addresses, and the sandbox steered into it."""
        assert spec.vpc is not None
        vpc_id = spec.vpc.vpc_id
        await self.net.run(hp.ensure_vpc_plane, self.names, vpc_id)
        n = self._allocate()
        try:
            eni = await self._create_eni(spec, n)
        except BaseException:
            self._used.discard(n)
            raise
        subnet = self.vpc.store.subnet(eni.subnet_id)
        assert subnet is not None
        want = hp.HyperplaneEni(n, vpc_id, eni.ip, ipam.gateway(subnet.cidr),
                                port_ifname(eni.id))
        try:
            dedicated = await self.net.run(self._attach_on_net_thread, want, sandbox.address)
        except BaseException:
            await self._delete_eni(eni.region, eni.id, n)
            raise
        handle = LegacyHandle(eni.id, eni.region, dedicated)
        self._live[eni.id] = handle
        return handle

    async def detach(self, handle: object) -> None:
        """With the environment: unsteer, take the data path down, delete the ENI (its
        address is free again)."""
        assert isinstance(handle, LegacyHandle)
        if self._live.pop(handle.eni_id, None) is None:
            return  # already removed by stop()
        try:
            await self.net.run(self._detach_on_net_thread, handle.dedicated)
        finally:
            await self._delete_eni(handle.region, handle.eni_id, handle.dedicated.eni.n)

    # internals ---------------------------------------------------------------------------
    def _allocate(self) -> int:
        n = LEGACY_BASE
        while n in self._used:
            n += 1
        if n > ENI_LAST:
            raise AwsError("ENILimitReachedException",
                           "Lambda was not able to create an ENI in the VPC of the Lambda "
                           "function because the limit for Network Interfaces has been reached.",
                           502, "Service")
        self._used.add(n)
        return n

    async def _create_eni(self, spec: FunctionSpec, n: int) -> Eni:
        assert spec.vpc is not None
        subnets = [s for s in (self.vpc.store.subnet(sid) for sid in spec.vpc.subnet_ids) if s]
        # Most free addresses first, like Lambda spreading environments over subnets.
        ranked = sorted(subnets, key=lambda s: -self.vpc.available_ips(s))
        far_end = FarEnd(self.names.worker_netns, self.names.transit_veth(n), False)
        for subnet in ranked:
            if self.vpc.available_ips(subnet) <= 0:
                break
            try:
                return await self.vpc.create_interface(
                    spec.region, subnet.id, list(spec.vpc.security_group_ids),
                    description=DESCRIPTION.format(uuid.uuid4()), interface_type="lambda",
                    requester_managed=True, far_end=far_end)
            except AwsError as e:
                if e.code != "InsufficientFreeAddressesInSubnet":
                    raise
        log.info("cold start of %s: no free address in %s", spec.arn,
                 ", ".join(spec.vpc.subnet_ids))
        raise SubnetIPAddressLimitReached(NO_ADDRESS_MESSAGE)

    async def _delete_eni(self, region: str, eni_id: str, n: int) -> None:
        try:
            if self.vpc.store.eni(eni_id) is not None:
                await self.vpc.delete_interface(region, eni_id, by_user=False)
        finally:
            self._used.discard(n)

    def _steer(self) -> hp.Steering:
        """The worker's steering table and a netlink socket on it, made on first use (the worker
        namespace exists by then). NetThread only."""
        if self._steering is None:
            hp.ensure_steering(self.names)
            self._steering = hp.Steering(self.names)
        return self._steering

    def _attach_on_net_thread(self, eni: hp.HyperplaneEni,
                              sandbox_addr: str) -> net_legacy.DedicatedEni:
        # The VPC port and its transit were made by VpcService's reconcile already.
        return net_legacy.attach_dedicated(self.names, self._steer(), eni, sandbox_addr)

    def _detach_on_net_thread(self, dedicated: net_legacy.DedicatedEni) -> None:
        net_legacy.release_dedicated(self.names, self._steer(), dedicated)
