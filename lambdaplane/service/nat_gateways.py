"""NAT gateways with AWS's rules: CreateNatGateway (public, with an Elastic IP's AllocationId,
or ConnectivityType private), DescribeNatGateways with filters, DeleteNatGateway; states
pending → available → deleting → deleted (a deleted one stays visible for an hour, as on AWS).
Each has a requester-managed interface in its subnet holding its private address; a public
one's Elastic IP is associated with that interface. A part of VpcService (service/vpc.py),
given its Ec2Core; writes store/nat_gateways.py (and the interface and address it owns); the
kernel effect — translation of every flow routed to it — is net/gateways.py's."""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from ..errors import ec2_error
from ..store.ec2 import Eni
from ..store.gateways import Address, GatewayStore
from ..store.nat_gateways import NatGateway, NatGatewayStore
from .ec2_core import Ec2Core
from .ec2_filters import check_names, matches
from .ec2_ids import IdKind, new_id
from .ec2_tags import specified_tags

log = logging.getLogger(__name__)

NAT_GATEWAY = IdKind("nat", "InvalidNatGatewayId.Malformed", "NatGatewayNotFound",
                     "The Nat Gateway {id} was not found",
                     missing="The request must contain the parameter NatGatewayId")
DELETED_VISIBLE_S = 3600.0
_FILTERS = ["nat-gateway-id", "state", "subnet-id", "vpc-id"]


class NatGateways:
    """The NAT gateway part of VpcService."""

    def __init__(self, core: Ec2Core, gateway_store: GatewayStore, nat_store: NatGatewayStore,
                 create_interface: Callable[..., Awaitable[Eni]],
                 address: Callable[[str, str | None], Address]) -> None:
        self.core = core
        self.db, self.store = core.db, core.store
        self.gateway_store = gateway_store
        self.nat_store = nat_store
        self.create_interface = create_interface  # service/interfaces.py
        self.address = address  # an Elastic IP by allocation id (service/gateways.py)

    def nat_taggable_ids(self, region: str) -> set[str]:
        return {n.id for n in self.nat_store.all(region)}

    def nat_target_ok(self, vpc_id: str, region: str, nat_id: str) -> bool:
        """Whether CreateRoute's NatGatewayId names a NAT gateway of the VPC."""
        n = self.nat_store.get(nat_id)
        if n is None or n.region != region or n.state in ("deleting", "deleted"):
            return False
        if n.vpc_id != vpc_id:
            raise ec2_error("InvalidParameterValue",
                            f"route table and NAT gateway {nat_id} belong to different networks")
        return True

    def live_nat_ids(self) -> set[str]:
        return {n.id for n in self.nat_store.all() if n.state in ("pending", "available")}

    def nat_gateway(self, region: str, nat_id: str | None) -> NatGateway:
        return NAT_GATEWAY.find(region, nat_id, self.nat_store.get)

    async def create_nat_gateway(self, region: str, params: dict[str, Any]) -> NatGateway:
        self.core.ensure_region(region)
        subnet_id = params.get("SubnetId")
        if not subnet_id:
            raise ec2_error("MissingParameter",
                            "The request must contain the parameter SubnetId")
        subnet = self.core.subnet(region, subnet_id)
        connectivity = params.get("ConnectivityType") or "public"
        if connectivity not in ("public", "private"):
            raise ec2_error("InvalidParameterValue",
                            f"Value ({connectivity}) for parameter connectivityType is invalid.")
        allocation_id = params.get("AllocationId")
        address: Address | None = None
        if connectivity == "public":
            if not allocation_id:
                raise ec2_error("MissingParameter",  # [?] AWS's wording
                                "The request must contain the parameter AllocationId for a "
                                "public NAT gateway")
            address = self.address(region, allocation_id)
            if address.eni_id and self.store.eni(address.eni_id) is not None:
                raise ec2_error("Resource.AlreadyAssociated",
                                f"Elastic IP address [{allocation_id}] is already associated")
            if not any(g.vpc_id == subnet.vpc_id for g in self.gateway_store.gateways()):
                raise ec2_error("Gateway.NotAttached",
                                f"Network {subnet.vpc_id} has no Internet gateway attached")
        elif allocation_id:
            raise ec2_error("InvalidParameterCombination",  # [?] wording
                            "A private NAT gateway cannot have an Elastic IP address")
        tags = specified_tags(params.get("TagSpecifications"), "natgateway")
        nat_id = new_id("nat")
        eni: Eni = await self.create_interface(
            region, subnet.id, [], ip=params.get("PrivateIpAddress"),
            description=f"Interface for NAT Gateway {nat_id}", interface_type="nat_gateway",
            requester_managed=True)
        nat = NatGateway(nat_id, region, subnet.vpc_id, subnet.id, connectivity, allocation_id,
                         eni.id, eni.ip, address.public_ip if address else None, "pending",
                         time.time())
        with self.db.transaction():
            self.nat_store.put(nat)
            self.store.set_tags(nat.id, tags)
            if address is not None:
                self.gateway_store.put_address(Address(
                    address.allocation_id, address.region, address.public_ip,
                    new_id("eipassoc"), eni.id, eni.ip))
        asyncio.get_running_loop().create_task(self._provision(nat.id))
        return nat

    async def _provision(self, nat_id: str) -> None:
        """pending → available once the kernel translates for it."""
        try:
            with self.db.transaction():
                n = self.nat_store.get(nat_id)
                if n is None or n.state != "pending":
                    return
                self.nat_store.put(_with_state(n, "available"))
            await self.core.reconcile()
        except Exception:
            log.exception("NAT gateway %s failed to come up", nat_id)

    async def delete_nat_gateway(self, region: str, nat_id: str | None) -> NatGateway:
        n = self.nat_gateway(region, nat_id)
        if n.state in ("deleting", "deleted"):
            return n
        with self.db.transaction():
            n = _with_state(n, "deleting")
            self.nat_store.put(n)
        asyncio.get_running_loop().create_task(self._remove(n.id))
        return n

    async def _remove(self, nat_id: str) -> None:
        """deleting → deleted: its address is released from it and its interface goes."""
        try:
            await self.core.reconcile()  # no more translation
            with self.db.transaction():
                n = self.nat_store.get(nat_id)
                if n is None:
                    return
                for a in self.gateway_store.addresses():
                    if a.eni_id == n.eni_id:
                        self.gateway_store.put_address(Address(a.allocation_id, a.region,
                                                               a.public_ip))
                self.store.delete_eni(n.eni_id)
                self.nat_store.put(replace(n, state="deleted", deleted=time.time()))
            await self.core.reconcile()
        except Exception:
            log.exception("NAT gateway %s failed to go", nat_id)

    async def settle_nat_gateways(self) -> None:
        """At start: finish what a stop interrupted (pending → available, deleting → gone)."""
        for n in self.nat_store.all():
            if n.state == "pending":
                await self._provision(n.id)
            elif n.state == "deleting":
                await self._remove(n.id)

    def describe_nat_gateways(self, region: str, params: dict[str, Any]) -> list[NatGateway]:
        self.core.ensure_region(region)
        filters = params.get("Filter") or params.get("Filters") or []
        check_names(filters, _FILTERS)
        ids = params.get("NatGatewayIds") or []
        for nid in ids:
            self.nat_gateway(region, nid)
        tags = self.store.tags()
        now = time.time()
        out = []
        for n in self.nat_store.all(region):
            if n.deleted is not None and now - n.deleted > DELETED_VISIBLE_S:
                continue
            attrs = {"nat-gateway-id": [n.id], "state": [n.state], "subnet-id": [n.subnet_id],
                     "vpc-id": [n.vpc_id]}
            if (not ids or n.id in ids) and matches(filters, attrs, tags.get(n.id, {})):
                out.append(n)
        return out


def _with_state(n: NatGateway, state: str) -> NatGateway:
    return replace(n, state=state)
