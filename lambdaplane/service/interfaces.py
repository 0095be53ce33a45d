"""Network interfaces (ENIs) with AWS's rules (subnet, groups and address checks, who may
delete one, error codes), and the life of `lambdaplane run` interfaces: each records the CLI's
pid, and an interface whose CLI died is released (its exit watched with a pidfd), so a killed
CLI leaks nothing. `run --host NAME` places the interface's namespace on an agent's host
(issue 20): that agent builds it and releases it when the CLI there dies (its VPC pass calls
`release_orphans`); the API server releases it when the host's lease is gone
(`release_on_gone_hosts`, called by its host sweep). A part of VpcService (service/vpc.py),
given its Ec2Core (the store, subnet and group lookups, `reconcile`). Writes the store only;
the kernel port follows through `reconcile`."""
from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ..errors import ec2_error
from ..net.names import Names
from ..net.processes import process_alive, process_start
from ..store.ec2 import Eni, FarEnd, Subnet
from ..store.ec2_attributes import AttributeStore
from ..store.gateways import GatewayStore
from ..store.hosts import HostStore
from . import ipam, ipv6_only
from .ec2_core import Ec2Core
from .ec2_filters import check_names, matches
from .ec2_ids import IdKind, new_id, new_mac
from .ec2_tags import specified_tags
from .eni_attributes import source_dest_check
from .eni_filters import FILTERS, interface_filter_values
from .zones import zone_of

if TYPE_CHECKING:
    from .ipv6 import Ipv6Addressing
    from .private_ips import PrivateIps

NETWORK_INTERFACE = IdKind("eni", "InvalidNetworkInterfaceID.Malformed",
                           "InvalidNetworkInterfaceID.NotFound",
                           "The networkInterface ID '{id}' does not exist")
log = logging.getLogger("lambdaplane.vpc")


class NetworkInterfaces:
    """The network interface part of VpcService."""

    def __init__(self, core: Ec2Core, names: Names, attributes: AttributeStore,
                 gateway_store: GatewayStore, private_ips: PrivateIps, ipv6: Ipv6Addressing,
                 reserved_addresses: Callable[[Subnet], set[str]],
                 give_launch_public_ip: Callable[[Eni], str | None],
                 forget_launch_public_ip: Callable[[str], None]) -> None:
        self.core = core
        self.settings, self.db, self.store = core.settings, core.db, core.store
        self.names = names
        self.attributes = attributes
        self.gateway_store = gateway_store
        self.private_ips = private_ips  # service/private_ips.py
        self.ipv6 = ipv6  # service/ipv6.py
        self.reserved_addresses = reserved_addresses  # service/subnet_reservations.py
        # MapPublicIpOnLaunch (service/gateways.py)
        self.give_launch_public_ip = give_launch_public_ip
        self.forget_launch_public_ip = forget_launch_public_ip

    # interfaces of exited `lambdaplane run` programs ----------------------------------------
    # Each owner's exit is watched with a pidfd (readable once the process has exited) on the
    # event loop: nothing is polled. pid → pidfd; None while the service does not watch.
    _owner_fds: dict[int, int] | None = None
    _owner_tasks: set[asyncio.Task[None]]

    async def watch_owners(self) -> None:
        """Watch the owners of every stored interface until cancelled (at stop)."""
        self._owner_fds, self._owner_tasks = {}, set()
        try:
            for eni in self.store.enis():
                self._watch_owner(eni)
            await asyncio.Event().wait()
        finally:
            loop = asyncio.get_running_loop()
            for fd in self._owner_fds.values():
                loop.remove_reader(fd)
                os.close(fd)
            self._owner_fds = None

    def _here(self, eni: Eni) -> bool:
        """Whether the interface's far end is on this host (not on an agent's: `run --host`)."""
        return eni.far_end is not None and self.names.owns(eni.far_end.netns)

    def _watch_owner(self, eni: Eni) -> None:
        pid = eni.owner_pid
        if pid is None or self._owner_fds is None or pid in self._owner_fds or \
                not self._here(eni):
            return
        loop = asyncio.get_running_loop()
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            loop.call_soon(self._owner_exited, pid)
            return
        self._owner_fds[pid] = fd
        loop.add_reader(fd, self._owner_exited, pid)
        if not process_alive(pid, eni.owner_start):  # exited, or the pid was reused, before
            self._owner_exited(pid)

    def _owner_exited(self, pid: int) -> None:
        fd = self._owner_fds.pop(pid, None) if self._owner_fds is not None else None
        if fd is not None:
            asyncio.get_running_loop().remove_reader(fd)
            os.close(fd)
        # its pidfd is readable once it exited, before its parent reaps it: /proc still
        # shows it then, so its pid is named rather than looked up again
        task = asyncio.get_running_loop().create_task(self._release_orphans_logged(pid))
        self._owner_tasks.add(task)
        task.add_done_callback(self._owner_tasks.discard)

    async def _release_orphans_logged(self, exited_pid: int) -> None:
        try:
            await self.release_orphans(exited_pid)
        except Exception:
            log.exception("releasing interfaces of exited programs failed")

    async def release_orphans(self, exited_pid: int | None = None) -> None:
        """Release the interfaces of `lambdaplane run` programs whose CLI on this host exited."""
        await self._release({e.id: f"its program's CLI (pid {e.owner_pid}) exited"
                             for e in self.store.enis() if e.owner_pid is not None
                             and self._here(e) and (e.owner_pid == exited_pid or
                                                    not process_alive(e.owner_pid, e.owner_start))})

    async def release_on_gone_hosts(self, live_hosts: set[str]) -> None:
        """Release the `lambdaplane run --host` interfaces of hosts that hold no lease any more
        (`live_hosts`: the instance prefixes of those that do)."""
        live = [Names(h) for h in live_hosts]
        await self._release({e.id: f"its host's agent ({e.far_end.netns.split('-')[0]}) is gone"
                             for e in self.store.enis() if e.owner_pid is not None
                             and e.far_end is not None and not self._here(e)
                             and all(n.eni_of_resource_netns(e.far_end.netns) is None
                                     for n in live)})

    async def _release(self, dead: dict[str, str]) -> None:
        """Delete these interfaces (id → why), then the kernel follows."""
        if not dead:
            return
        with self.db.transaction():
            for eni_id, why in dead.items():
                log.info("releasing %s: %s", eni_id, why)
                self.store.delete_eni(eni_id)
                self.forget_launch_public_ip(eni_id)
        await self.core.reconcile()

    # network interfaces ------------------------------------------------------------------
    def interface(self, region: str, eni_id: str) -> Eni:
        return NETWORK_INTERFACE.find(region, eni_id, self.store.eni)

    async def create_interface(self, region: str, subnet_id: str | None, group_ids: list[str],
                               ip: str | None = None, description: str = "",
                               interface_type: str = "interface",
                               requester_managed: bool = False, far_end: FarEnd | None = None,
                               own_netns: bool = False, owner_pid: int | None = None,
                               owner_host: Names | None = None,
                               owner_start: int | None = None, name: str | None = None,
                               argv: str | None = None,
                               tag_specs: list[dict[str, Any]] | None = None,
                               ipv6_count: int | None = None,
                               ipv6_addresses: list[str] | None = None,
                               secondary_count: int | None = None,
                               secondary_addresses: list[str] | None = None) -> Eni:
        """Create an ENI. Its kernel port exists when it has a far end: `far_end` names a
        namespace (and link name) of the caller's (e.g. a Hyperplane namespace), or
        `own_netns=True` gives it a namespace of its own (`lambdaplane run`): on this host, or
        on the agent's host `owner_host` names, where `owner_pid` (started at `owner_start`)
        runs. The returned Eni's `far_end` says where that end lives."""
        self.core.ensure_region(region)
        if not subnet_id:
            raise ec2_error("MissingParameter", "The request must contain the parameter subnetId")
        subnet = self.core.subnet(region, subnet_id)
        groups = [self.core.group(region, g) for g in group_ids] if group_ids else \
            [g for g in self.store.groups(region)
             if g.vpc_id == subnet.vpc_id and g.name == "default"]
        for g in groups:
            if g.vpc_id != subnet.vpc_id:
                raise ec2_error("InvalidParameterValue",
                                f"The security group '{g.id}' does not belong to VPC "
                                f"'{subnet.vpc_id}'")
        ipv6_only.check_interface(subnet, interface_type, ip, secondary_count,
                                  secondary_addresses)
        private_ips = self.private_ips
        in_use = private_ips.taken_in(subnet)
        address = "" if subnet.ipv6_native else \
            ipam.check_requested(ip, subnet.cidr, in_use) if ip \
            else ipam.pick_free(subnet.cidr, in_use | self.reserved_addresses(subnet))
        secondaries: list[str] = []
        if secondary_count is not None or secondary_addresses:
            secondaries, _ = private_ips.plan(subnet, secondary_count, secondary_addresses or [],
                                              1, also_taken=frozenset({address}))
        ipv6 = self.ipv6
        wanted_v6 = [str(a) for a in ipv6_addresses or []]
        addresses_v6 = ipv6.plan_addresses(
            subnet, ipv6.on_create_count(subnet, ipv6_count, wanted_v6, own_netns), wanted_v6)
        eni_id = new_id("eni")
        if own_netns:
            far_end = FarEnd((owner_host or self.names).resource_netns(eni_id), "eth0", True)
        if owner_host is None:  # a process of this host: looked up here
            owner_start = process_start(owner_pid) if owner_pid else None
            if owner_pid and owner_start is None:
                raise ec2_error("InvalidParameterValue", f"no process {owner_pid}")
        eni = Eni(eni_id, region, subnet.id, subnet.vpc_id, address, new_mac(), interface_type,
                  requester_managed, description, "in-use" if far_end else "available",
                  tuple(dict.fromkeys(g.id for g in groups)), far_end, owner_pid, owner_start,
                  name=name, argv=argv)
        with self.db.transaction():
            self.store.add_eni(eni)
            ipv6.record(eni.id, addresses_v6)
            private_ips.record(eni, secondaries)
            self.store.set_tags(eni.id, specified_tags(tag_specs, "network-interface"))
            if own_netns:  # an instance-like launch: MapPublicIpOnLaunch applies
                self.give_launch_public_ip(eni)
        self._watch_owner(eni)
        try:
            await self.core.reconcile()
        except Exception:
            log.exception("making the kernel port of %s failed; releasing it", eni.id)
            with self.db.transaction():
                self.store.delete_eni(eni.id)
                self.forget_launch_public_ip(eni.id)
            await self.core.reconcile()
            raise
        return eni

    def describe_interfaces(self, region: str, ids: list[str],
                            filters: list[dict[str, Any]]) -> list[Eni]:
        self.core.ensure_region(region)
        check_names(filters, list(FILTERS))  # service/eni_filters.py: all AWS documents
        for eid in ids:
            self.interface(region, eid)
        tags = self.store.tags()
        groups = {g.id: g for g in self.store.groups(region)}
        secondary = self.private_ips.store.all()
        ipv6 = self.ipv6.store.addresses()
        elastic = self.gateway_store.addresses(region)
        out = []
        for e in self.store.enis(region):
            subnet = self.store.subnet(e.subnet_id)
            zone_id = zone_of(subnet).zone_id if subnet else ""
            attrs = interface_filter_values(
                e, subnet, zone_id, groups, secondary.get(e.id, []), ipv6.get(e.id, []),
                elastic, self.settings.account_id,
                source_dest_check(self.attributes, e))
            if (not ids or e.id in ids) and matches(filters, attrs, tags.get(e.id, {})):
                out.append(e)
        return out

    async def delete_interface(self, region: str, eni_id: str, by_user: bool = True) -> None:
        """Users may not delete interfaces in use or managed by the service (Lambda's)."""
        self.core.ensure_region(region)
        eni = self.interface(region, eni_id)
        if by_user and (eni.requester_managed or eni.status == "in-use"):
            raise ec2_error("InvalidNetworkInterface.InUse",
                            f"The network interface '{eni.id}' is currently in use.")
        with self.db.transaction():
            self.store.delete_eni(eni.id)
            self.attributes.delete(eni.id)
            self.forget_launch_public_ip(eni.id)
        await self.core.reconcile()

    # `lambdaplane run` ---------------------------------------------------------------------
    async def create_resource(self, region: str, subnet_id: str, group_ids: list[str],
                              ip: str | None, name: str | None, argv: list[str],
                              owner_pid: int, host: str | None = None,
                              owner_start: int | None = None) -> Eni:
        """`host`: the name of the agent (`lambdaplane agent --name`) on whose host the CLI
        runs, with its pid's start time there; None: this host."""
        return await self.create_interface(
            region, subnet_id, group_ids, ip,
            description=f"lambdaplane run {name or ' '.join(argv)}"[:255],
            own_netns=True, owner_pid=owner_pid,
            owner_host=self._live_host(host) if host else None, owner_start=owner_start,
            name=name, argv=" ".join(argv))

    def _live_host(self, name: str) -> Names:
        host = HostStore(self.db).by_name(name)
        if host is None or host.lease_expires <= time.time():
            raise ec2_error("InvalidParameterValue",
                            f"There is no live host named '{name}': start `lambdaplane agent "
                            f"--name {name}` with this server's database on it")
        return Names(host.instance)

    async def attach_process(self, eni_id: str, pid: int, start: int | None = None) -> Eni:
        """The program the CLI started; `start`: its start time, given when it runs on an
        agent's host."""
        eni = self.store.eni(eni_id)
        if eni is None:
            raise ec2_error("InvalidNetworkInterfaceID.NotFound",
                            f"The networkInterface ID '{eni_id}' does not exist")
        with self.db.transaction():
            self.store.set_eni_process(eni_id, pid,
                                       process_start(pid) if self._here(eni) else start)
        return replace(eni, process_pid=pid)

    async def release_resource(self, eni_id: str) -> None:
        eni = self.store.eni(eni_id)
        if eni is None:
            return
        await self.delete_interface(eni.region, eni_id, by_user=False)

    def resources(self) -> list[Eni]:
        return [e for e in self.store.enis() if e.owner_pid is not None]

