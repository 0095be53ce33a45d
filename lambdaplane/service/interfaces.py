"""Network interfaces (ENIs) with AWS's rules (subnet, groups and address checks, who may
delete one, error codes), and the life of `lambdaplane run` interfaces: each records the CLI's
pid, and an interface whose CLI died is released, so a killed CLI leaks nothing. A mixin of
VpcService (service/vpc.py), which gives it the store, subnet and group lookups, tags and
`reconcile`. Writes the store only; the kernel port follows through `reconcile`."""
from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from typing import TYPE_CHECKING

from ..config import Settings
from ..errors import ec2_error
from ..net.processes import process_alive, process_start
from ..net.names import Names
from ..store.db import Database
from ..store.ec2 import Ec2Store, Eni, FarEnd, SecurityGroup, Subnet
from . import ipam
from .ec2_filters import bool_text, check_names, matches
from .ec2_ids import check_id, new_id, new_mac

log = logging.getLogger("lambdaplane.vpc")

OWNER_CHECK_S = 0.5


class NetworkInterfaces:
    """The network interface part of VpcService."""

    settings: Settings
    names: Names
    db: Database
    store: Ec2Store

    if TYPE_CHECKING:  # what VpcService provides
        def ensure_region(self, region: str) -> bool: ...
        def subnet(self, region: str, subnet_id: str) -> Subnet: ...
        def group(self, region: str, group_id: str) -> SecurityGroup: ...
        def _tag_specs(self, specs: list[dict] | None, resource_type: str) -> dict[str, str]: ...
        def reserved_addresses(self, subnet: Subnet) -> set[str]: ...
        async def reconcile(self) -> list[str]: ...

    # interfaces of exited `lambdaplane run` programs ----------------------------------------
    async def _watch_owners(self) -> None:
        while True:
            await asyncio.sleep(OWNER_CHECK_S)
            try:
                await self._release_orphans()
            except Exception:
                log.exception("releasing interfaces of exited programs failed")

    async def _release_orphans(self) -> None:
        dead = [e for e in self.store.enis() if e.owner_pid is not None
                and not process_alive(e.owner_pid, e.owner_start)]
        if not dead:
            return
        with self.db.transaction():
            for eni in dead:
                log.info("releasing %s: its program's CLI (pid %s) exited", eni.id, eni.owner_pid)
                self.store.delete_eni(eni.id)
                self.forget_launch_public_ip(eni.id)  # type: ignore[attr-defined]
        await self.reconcile()

    # network interfaces ------------------------------------------------------------------
    def interface(self, region: str, eni_id: str) -> Eni:
        check_id(eni_id, "eni", "InvalidNetworkInterfaceID.Malformed")
        eni = self.store.eni(eni_id)
        if eni is None or eni.region != region:
            raise ec2_error("InvalidNetworkInterfaceID.NotFound",
                            f"The networkInterface ID '{eni_id}' does not exist")
        return eni

    async def create_interface(self, region: str, subnet_id: str | None, group_ids: list[str],
                               ip: str | None = None, description: str = "",
                               interface_type: str = "interface",
                               requester_managed: bool = False, far_end: FarEnd | None = None,
                               own_netns: bool = False, owner_pid: int | None = None,
                               name: str | None = None, argv: str | None = None,
                               tag_specs: list[dict] | None = None) -> Eni:
        """Create an ENI. Its kernel port exists when it has a far end: `far_end` names a
        namespace (and link name) of the caller's (e.g. a Hyperplane namespace), or
        `own_netns=True` gives it a namespace of its own (`lambdaplane run`). The returned
        Eni's `far_end` says where that end lives."""
        self.ensure_region(region)
        if not subnet_id:
            raise ec2_error("MissingParameter", "The request must contain the parameter subnetId")
        subnet = self.subnet(region, subnet_id)
        groups = [self.group(region, g) for g in group_ids] if group_ids else \
            [g for g in self.store.groups(region) if g.vpc_id == subnet.vpc_id and g.name == "default"]
        for g in groups:
            if g.vpc_id != subnet.vpc_id:
                raise ec2_error("InvalidParameterValue",
                                f"The security group '{g.id}' does not belong to VPC "
                                f"'{subnet.vpc_id}'")
        in_use = {e.ip for e in self.store.enis() if e.subnet_id == subnet.id}
        address = ipam.check_requested(ip, subnet.cidr, in_use) if ip \
            else ipam.pick_free(subnet.cidr, in_use | self.reserved_addresses(subnet))
        eni_id = new_id("eni")
        if own_netns:
            far_end = FarEnd(self.names.resource_netns(eni_id), "eth0", True)
        owner_start = process_start(owner_pid) if owner_pid else None
        if owner_pid and owner_start is None:
            raise ec2_error("InvalidParameterValue", f"no process {owner_pid}")
        eni = Eni(eni_id, region, subnet.id, subnet.vpc_id, address, new_mac(), interface_type,
                  requester_managed, description, "in-use" if far_end else "available",
                  tuple(dict.fromkeys(g.id for g in groups)), far_end, owner_pid, owner_start,
                  name=name, argv=argv)
        with self.db.transaction():
            self.store.add_eni(eni)
            self.store.set_tags(eni.id, self._tag_specs(tag_specs, "network-interface"))
            if own_netns:  # an instance-like launch: MapPublicIpOnLaunch applies
                self.give_launch_public_ip(eni)  # type: ignore[attr-defined]
        try:
            await self.reconcile()
        except Exception:
            log.exception("making the kernel port of %s failed; releasing it", eni.id)
            with self.db.transaction():
                self.store.delete_eni(eni.id)
                self.forget_launch_public_ip(eni.id)  # type: ignore[attr-defined]
            await self.reconcile()
            raise
        return eni

    def describe_interfaces(self, region: str, ids: list[str], filters: list[dict]) -> list[Eni]:
        self.ensure_region(region)
        check_names(filters, ["network-interface-id", "subnet-id", "vpc-id", "interface-type",
                              "availability-zone", "private-ip-address",
                              "addresses.private-ip-address", "group-id", "group-name", "status",
                              "requester-managed", "description", "mac-address", "owner-id"])
        for eid in ids:
            self.interface(region, eid)
        tags = self.store.tags()
        groups = {g.id: g for g in self.store.groups(region)}
        out = []
        for e in self.store.enis(region):
            subnet = self.store.subnet(e.subnet_id)
            attrs = {"network-interface-id": [e.id], "subnet-id": [e.subnet_id],
                     "vpc-id": [e.vpc_id], "interface-type": [e.interface_type],
                     "availability-zone": [subnet.az if subnet else ""],
                     "private-ip-address": [e.ip], "addresses.private-ip-address": [e.ip],
                     "group-id": list(e.group_ids),
                     "group-name": [groups[g].name for g in e.group_ids if g in groups],
                     "status": [e.status], "requester-managed": [bool_text(e.requester_managed)],
                     "description": [e.description], "mac-address": [e.mac],
                     "owner-id": [self.settings.account_id]}
            if (not ids or e.id in ids) and matches(filters, attrs, tags.get(e.id, {})):
                out.append(e)
        return out

    async def delete_interface(self, region: str, eni_id: str, by_user: bool = True) -> None:
        """Users may not delete interfaces in use or managed by the service (Lambda's)."""
        self.ensure_region(region)
        eni = self.interface(region, eni_id)
        if by_user and (eni.requester_managed or eni.status == "in-use"):
            raise ec2_error("InvalidNetworkInterface.InUse",
                            f"The network interface '{eni.id}' is currently in use.")
        with self.db.transaction():
            self.store.delete_eni(eni.id)
            self.attributes.delete(eni.id)  # type: ignore[attr-defined]
            self.forget_launch_public_ip(eni.id)  # type: ignore[attr-defined]
        await self.reconcile()

    # `lambdaplane run` ---------------------------------------------------------------------
    async def create_resource(self, region: str, subnet_id: str, group_ids: list[str],
                              ip: str | None, name: str | None, argv: list[str],
                              owner_pid: int) -> Eni:
        return await self.create_interface(
            region, subnet_id, group_ids, ip,
            description=f"lambdaplane run {name or ' '.join(argv)}"[:255],
            own_netns=True, owner_pid=owner_pid, name=name, argv=" ".join(argv))

    async def attach_process(self, eni_id: str, pid: int) -> Eni:
        eni = self.store.eni(eni_id)
        if eni is None:
            raise ec2_error("InvalidNetworkInterfaceID.NotFound",
                            f"The networkInterface ID '{eni_id}' does not exist")
        with self.db.transaction():
            self.store.set_eni_process(eni_id, pid, process_start(pid))
        return replace(eni, process_pid=pid)

    async def release_resource(self, eni_id: str) -> None:
        eni = self.store.eni(eni_id)
        if eni is None:
            return
        await self.delete_interface(eni.region, eni_id, by_user=False)

    def resources(self) -> list[Eni]:
        return [e for e in self.store.enis() if e.owner_pid is not None]

