"""The store half of Hyperplane ENIs, for `serve --no-data-plane` (issue 20): at
Create/UpdateFunctionConfiguration a VPC function gets its ENIs exactly as on a server with a
data plane — one per (region, subnet, sorted security groups), the EC2 interface (type
"lambda", requester-managed, an address from the subnet's IPAM) and the stored row with its
number `n` — but no kernel object: the interface has no far end here (the API server's own VPC
reconcile makes no port for it), and every agent that runs the function makes the kernel half
(its VPC namespace's port, the transit `lp<agent>t<n>` into its own worker namespace, the
plane and the data path) from the same row (service/agent_vpc.py).

An ENI no configuration in use needs is deleted (interface and row) when a function is
deleted or reconfigured; agents drop their kernel half at their next reconcile."""
from __future__ import annotations

import asyncio
import logging
import uuid

from ..errors import AwsError
from ..store.db import Database
from ..store.functions import FunctionRecord
from ..store.hyperplane import EniKey, HyperplaneEniRow, HyperplaneStore, group_key
from .functions import FunctionService
from .hyperplane_enis import _state_error
from .hyperplane_recovery import MAX_N
from .vpc import VpcService
from .vpc_config import validate_vpc_config

log = logging.getLogger("lambdaplane.hyperplane")


class HyperplaneRecords:
    """A NetworkPreparer (service/function_lifecycle.py) that writes the store only."""

    def __init__(self, db: Database, vpc: VpcService, functions: FunctionService) -> None:
        self.vpc = vpc
        self.functions = functions
        self.store = HyperplaneStore(db)
        self._lock = asyncio.Lock()  # ENIs are made and removed one at a time

    async def prepare(self, record: FunctionRecord) -> str:
        """Make (or reuse) an ENI for each of the function's subnets; returns the VPC id."""
        config = validate_vpc_config(self.vpc, record.region, record.vpc_config)
        if not config.attached:
            return ""
        groups = group_key(config.security_group_ids)
        async with self._lock:
            have = {r.key for r in self.store.all()}
            for subnet_id in config.subnet_ids:
                key = EniKey(record.region, subnet_id, groups)
                if key not in have:
                    await self._create(key, config.vpc_id, record.name)
        return config.vpc_id

    async def release(self, record: FunctionRecord) -> None:
        await self.collect()

    async def collect(self) -> list[int]:
        """Delete every ENI that no configuration in use needs; returns their numbers."""
        wanted: set[EniKey] = set()
        for region, _name, config in self.functions.vpc_configs_in_use():
            for subnet_id in config.subnet_ids:
                wanted.add(EniKey(region, subnet_id, group_key(config.security_group_ids)))
        async with self._lock:
            doomed = [r for r in self.store.all() if r.key not in wanted]
            for row in doomed:
                if self.vpc.store.eni(row.eni_id) is not None:
                    await self.vpc.delete_interface(row.key.region, row.eni_id, by_user=False)
                self.store.delete(row.n)
                log.info("deleted Hyperplane ENI %s (e%d): no function uses it", row.eni_id,
                         row.n)
        return [r.n for r in doomed]

    async def _create(self, key: EniKey, vpc_id: str, function_name: str) -> HyperplaneEniRow:
        n = self.store.free_number()
        if n > MAX_N:
            raise AwsError("ENILimitReachedException", "Hyperplane ENI numbers are exhausted",
                           502, "Service", extra={"ReasonCode": "EniLimitExceeded"})
        try:
            eni = await self.vpc.create_interface(
                key.region, key.subnet_id, key.group_ids,
                description=f"AWS Lambda VPC ENI-{function_name}-{uuid.uuid4()}",
                interface_type="lambda", requester_managed=True)
        except AwsError as e:
            raise _state_error(e) from None
        row = HyperplaneEniRow(n, key, vpc_id, eni.id, function_name)
        self.store.add(row)
        log.info("Hyperplane ENI %s (e%d, %s) for %s/%s, kernel half on the agents", eni.id, n,
                 eni.ip, key.subnet_id, key.groups)
        return row
