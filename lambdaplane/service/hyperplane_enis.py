"""Making and removing Hyperplane ENIs, for the Hyperplane service (service/hyperplane.py),
always under its lock: the EC2 interface (type "lambda", requester-managed, its far end the
transit `lp<i>t<n>` in the worker), the stored row with its number `n`, the VPC's plane it
needs, and its data path (net/hyperplane/eni.py and the port guard); removing takes all of it
away again and the plane with its last ENI. What fails half-way is taken back, and EC2's
failures come out as the function's StateReasonCode (`_state_error`)."""
from __future__ import annotations

import logging
import uuid
from collections.abc import Callable

from ..config import Settings
from ..errors import AwsError
from ..net.executor import NetThread
from ..net.hyperplane import plane as hp_plane
from ..net.hyperplane import port_guard as hp_port_guard
from ..net.hyperplane.eni import ensure_eni, remove_eni
from ..net.hyperplane.model import SNAT_PORTS, HyperplaneEni
from ..net.names import Names, port_ifname
from ..store.ec2 import FarEnd
from ..store.hyperplane import EniKey, HyperplaneEniRow, HyperplaneStore
from . import ipam
from .hyperplane_paths6 import Eni6Paths
from .hyperplane_recovery import MAX_N
from .hyperplane_sampler import FlowSampler
from .vpc import VpcService

log = logging.getLogger("lambdaplane.hyperplane")

NO_ADDRESS = ("Lambda was not able to create an ENI in the VPC of the Lambda function because "
              "one or more configured subnets has no available IP addresses.")


class HyperplaneEnis:
    """The ENIs' making and removing; `rows` is the service's live view of the stored ENIs
    (n → row), changed here as ENIs come and go."""

    def __init__(self, settings: Settings, names: Names, net: NetThread, vpc: VpcService,
                 store: HyperplaneStore, rows: Callable[[], dict[int, HyperplaneEniRow]],
                 sampler: FlowSampler, paths6: Eni6Paths) -> None:
        self.settings = settings
        self.names = names
        self.net = net
        self.vpc = vpc
        self.store = store
        self._rows = rows
        self.sampler = sampler
        self.paths6 = paths6

    def subnet_has_ipv6(self, subnet_id: str) -> bool:
        subnet = self.vpc.store.subnet(subnet_id)
        return subnet is not None and bool(self.vpc.ipv6.subnet_cidrs(subnet))

    async def create(self, key: EniKey, vpc_id: str, function_name: str,
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
            await self.drop_plane_if_unused(vpc_id)
            raise _state_error(e) from None
        row = HyperplaneEniRow(n, key, vpc_id, eni.id, function_name)
        self.store.add(row)
        self._rows()[n] = row
        try:
            kernel = self.kernel_eni(row)
            assert kernel is not None
            ports = self.settings.eni_snat_ports or SNAT_PORTS
            await self.net.run(ensure_eni, self.names, kernel, ports)
            await self.net.run(hp_port_guard.ensure_port_guard, self.names, vpc_id, n, ports)
        except BaseException:
            log.exception("the data path of %s (e%d) failed; removing it", eni.id, n)
            await self.remove(row)
            raise
        log.info("Hyperplane ENI %s (e%d, %s) for %s/%s", eni.id, n, eni.ip, key.subnet_id,
                 key.groups)
        return row

    async def remove(self, row: HyperplaneEniRow) -> None:
        await self.net.run(hp_port_guard.remove_port_guard, self.names, row.vpc_id, row.n)
        await self.paths6.remove_eni(row)
        await self.net.run(remove_eni, self.names, row.vpc_id, row.n)
        if self.vpc.store.eni(row.eni_id) is not None:
            await self.vpc.delete_interface(row.key.region, row.eni_id, by_user=False)
        self.store.delete(row.n)
        self._rows().pop(row.n, None)
        self.sampler.forget_eni(row.n)
        log.info("deleted Hyperplane ENI %s (e%d): no function uses it", row.eni_id, row.n)
        await self.drop_plane_if_unused(row.vpc_id)

    async def drop_plane_if_unused(self, vpc_id: str) -> None:
        if not any(r.vpc_id == vpc_id for r in self._rows().values()):
            await self.paths6.remove_plane(vpc_id)
            await self.net.run(hp_plane.remove_vpc_plane, self.names, vpc_id)
            self.sampler.forget_plane(vpc_id)  # a new plane's counters start at zero

    def kernel_eni(self, row: HyperplaneEniRow) -> HyperplaneEni | None:
        eni = self.vpc.store.eni(row.eni_id)
        subnet = self.vpc.store.subnet(row.key.subnet_id)
        if eni is None or subnet is None:
            return None
        return HyperplaneEni(row.n, row.vpc_id, eni.ip, ipam.gateway(subnet.cidr),
                             port_ifname(eni.id))


def _state_error(e: AwsError) -> AwsError:
    """EC2's failure as the function's StateReasonCode / LastUpdateStatusReasonCode."""
    if e.code == "InsufficientFreeAddressesInSubnet":
        return AwsError("SubnetIPAddressLimitReachedException", NO_ADDRESS, 502, "Service",
                        extra={"ReasonCode": "SubnetOutOfIPAddresses"})
    code = {"InvalidSubnetID.NotFound": "InvalidSubnet",
            "InvalidGroup.NotFound": "InvalidSecurityGroup"}.get(e.code, "InternalError")
    return AwsError(e.code, e.message, e.status, "Service", extra={"ReasonCode": code})
