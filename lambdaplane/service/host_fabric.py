"""One agent's place in the EVPN fabric (docs/fabric.md, docs/agents.md): the underlay it was
given (`lambdaplane agent --underlay-address ADDR[/PREFIX] --underlay-peer ADDR …`) and the
peers it found (the other live agents' underlay addresses, store/host_underlays.py), and the
host's fabric namespace with its FRR daemons (net/fabric.py, net/frr.py) kept matching it —
made at start, repaired by a timer (a killed daemon, a deleted VXLAN device), joined to the VPC
namespaces this host holds as they come and go (set_vpcs), and removed at stop. Its kernel work
(a dozen `ip` commands per run, FRR started and stopped) runs on a thread of its own, so the
timer's runs never delay a cold start queued on the agent's net thread."""
from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from ..net import fabric
from ..net.executor import NetThread
from ..net.names import Names
from ..tasks import cancel_and_wait

log = logging.getLogger("lambdaplane.fabric")

REPAIR_INTERVAL_S = 15.0  # the fabric read back and repaired this often
# the host namespace's sysctls the fabric changed (its ip_forward), put back at stop or clean;
# apart from the worker's record (`host-sysctls`), which a start without uplink puts back whole
HOST_RECORD_NAME = "fabric-host-sysctls"


@dataclass(frozen=True)
class Underlay:
    """The address this host's VTEP uses (a /32 in the fabric namespace, routed to it by the
    host) and the other hosts' underlay addresses, its BGP peers. `network`, when given as
    ADDR/PREFIX, is the underlay network: every peer must be in it."""
    address: str
    peers: tuple[str, ...]
    network: str = ""


def parse_underlay(address: str, peers: Iterable[str]) -> Underlay:
    """The agent's flags, checked: ValueError with a one-line reason when they are wrong."""
    try:
        iface = ipaddress.IPv4Interface(address)
    except ValueError:
        raise ValueError(f"--underlay-address {address!r} is not an IPv4 address[/prefix]"
                         ) from None
    own = iface.ip
    if own.is_loopback or own.is_multicast or own.is_unspecified or own.is_link_local:
        raise ValueError(f"--underlay-address {own} cannot be a VTEP address")
    network = iface.network if "/" in address else None
    found: set[str] = set()
    for peer in peers:
        try:
            addr = ipaddress.IPv4Address(peer)
        except ValueError:
            raise ValueError(f"--underlay-peer {peer!r} is not an IPv4 address") from None
        if network is not None and addr not in network:
            raise ValueError(f"--underlay-peer {addr} is outside the underlay network "
                             f"{network}")
        if addr != own:  # every host may be given the same list, its own address in it
            found.add(str(addr))
    return Underlay(str(own), tuple(sorted(found, key=ipaddress.IPv4Address)),
                    str(network) if network is not None else "")


class HostFabric:
    """The fabric namespace of one agent's host, kept as desired."""

    def __init__(self, names: Names, data_dir: Path, underlay: Underlay,
                 repair_interval_s: float = REPAIR_INTERVAL_S) -> None:
        self.names = names
        self.data_dir = data_dir
        self.underlay = underlay
        self.discovered: frozenset[str] = frozenset()  # peers from the hosts' rows
        self.net = NetThread("lp-fabric")
        self.repair_interval_s = repair_interval_s
        self._vpcs: tuple[tuple[str, tuple[str, ...]], ...] = ()
        self._vnis: dict[str, int] = {}  # the store's VNI per VPC (store/vnis.py)
        self._repair: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._stopped = False

    def spec(self) -> fabric.FabricSpec:
        # host_netns None: the agent's own namespace (it entered --host-netns before all)
        return fabric.with_store_vnis(
            fabric.desired_fabric(self.names, self.data_dir, self.underlay.address,
                                  self.peers(), self._vpcs,
                                  host_record=self.data_dir / HOST_RECORD_NAME),
            self._vnis)

    def peers(self) -> tuple[str, ...]:
        """Listed and found, in the underlay network when one was given, ourselves dropped."""
        network = ipaddress.IPv4Network(self.underlay.network) if self.underlay.network \
            else None
        found = {p for p in self.discovered
                 if network is None or ipaddress.IPv4Address(p) in network}
        return tuple(sorted((set(self.underlay.peers) | found) - {self.underlay.address},
                            key=ipaddress.IPv4Address))

    async def set_discovered(self, peers: Iterable[str]) -> list[str]:
        """The other live hosts' underlay addresses; bgpd is told when they changed (live,
        without a restart: net/frr.py)."""
        found = frozenset(peers)
        if found == self.discovered:
            return []
        before = self.peers()
        self.discovered = found
        return await self.ensure() if self.peers() != before else []

    async def ensure(self) -> list[str]:
        async with self._lock:
            changes = await self.net.run(fabric.ensure, self.spec())
        for line in changes:
            log.info("fabric: %s", line)
        return changes

    async def set_vpcs(self, vpcs: Iterable[tuple[str, Iterable[str]]],
                       vnis: Mapping[str, int] | None = None) -> list[str]:
        """Join these VPCs (id, the prefixes that lead to other hosts) and no others, each on
        the VNI the store allocated it (`vnis`, store/vnis.py: unique per VPC; the id's hash
        for a VPC without one); their namespaces exist (a VPC whose namespace is missing is
        joined by a later run)."""
        self._vpcs = tuple(sorted((vpc_id, tuple(sorted(set(cidrs)))) for vpc_id, cidrs in vpcs))
        self._vnis = dict(vnis or {})
        return await self.ensure()

    async def start(self) -> None:
        await self.ensure()
        self._repair = asyncio.create_task(self._repair_forever(), name="lp-fabric-repair")

    async def stop(self) -> None:
        """Stop FRR, remove the fabric namespace and the underlay link (once)."""
        if self._stopped:
            return
        self._stopped = True
        await cancel_and_wait(self._repair)
        self._repair = None
        try:
            async with self._lock:
                changes = await self.net.run(fabric.remove, self.spec())
        finally:
            self.net.close()
        for line in changes:
            log.info("fabric: %s", line)

    async def _repair_forever(self) -> None:
        while True:
            await asyncio.sleep(self.repair_interval_s)
            try:
                await self.ensure()
            except Exception:  # noqa: BLE001 - tried again on the next tick
                log.exception("repairing the fabric failed")
