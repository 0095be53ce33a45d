"""The IPv6 data path of Hyperplane ENIs (the IPv6 address itself: service/hyperplane_ipv6.py).

An ENI with an IPv6 address gets its path in the VPC plane once per run, at the first attach of
a dual-stack function's sandbox to it (a repair makes it again if it was lost); each such sandbox
gets its own IPv6 attachment to the ENI. Kernel work of net/hyperplane/ipv6.py, on the
NetThread; service/hyperplane.py decides when."""
from __future__ import annotations

from ..net.executor import NetThread
from ..net.hyperplane import ipv6 as hp_ipv6
from ..net.names import Names, port_ifname
from ..sandbox.pool import Sandbox
from ..store.hyperplane import HyperplaneEniRow
from .vpc import VpcService


class Eni6Paths:
    """Which ENIs have their IPv6 path in place, and the kernel work to make and remove them."""

    def __init__(self, names: Names, net: NetThread, vpc: VpcService) -> None:
        self.names = names
        self.net = net
        self.vpc = vpc
        self.ready: set[int] = set()  # ENIs whose IPv6 path is in place

    def eni6(self, row: HyperplaneEniRow) -> hp_ipv6.Eni6 | None:
        """The IPv6 side of an ENI that has an IPv6 address (service/hyperplane_ipv6.py)."""
        addresses = self.vpc.ipv6.addresses_of(row.eni_id)
        return hp_ipv6.Eni6(row.n, row.vpc_id, addresses[0], port_ifname(row.eni_id)) \
            if addresses else None

    async def ensure(self, row: HyperplaneEniRow | None) -> bool:
        """The ENI's IPv6 path, made once per run (a repair makes it again); False when the
        ENI (None: gone) has no IPv6 address."""
        eni6 = self.eni6(row) if row is not None else None
        if eni6 is None:
            return False
        if eni6.n not in self.ready:
            await self.net.run(hp_ipv6.ensure_eni6, self.names, eni6)
            self.ready.add(eni6.n)
        return True

    async def repair(self, rows: dict[int, HyperplaneEniRow]) -> None:
        """Every IPv6 path made this run, again (idempotent: rebuilt if lost)."""
        for n in sorted(self.ready):
            eni6 = self.eni6(rows[n]) if n in rows else None
            if eni6 is not None:
                await self.net.run(hp_ipv6.ensure_eni6, self.names, eni6)

    async def attach(self, sandbox: Sandbox, n: int) -> None:
        await self.net.run(hp_ipv6.attach6, self.names, sandbox.slot, sandbox.netns,
                           sandbox.veth, n)

    async def detach(self, sandbox: Sandbox) -> None:
        await self.net.run(hp_ipv6.detach6, self.names, sandbox.slot, sandbox.netns,
                           sandbox.veth)

    async def remove_eni(self, row: HyperplaneEniRow) -> None:
        await self.net.run(hp_ipv6.remove_eni6, self.names, row.vpc_id, row.n)
        self.ready.discard(row.n)

    async def remove_plane(self, vpc_id: str) -> None:
        await self.net.run(hp_ipv6.remove_plane6, self.names, vpc_id)

    async def remove_all(self, vpc_ids: list[str]) -> None:
        """At stop: the IPv6 side of every plane, and the IPv6 steering."""
        for vpc_id in vpc_ids:
            await self.remove_plane(vpc_id)
        await self.net.run(hp_ipv6.remove_steering6, self.names)
        self.ready.clear()
