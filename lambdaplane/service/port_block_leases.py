"""One host's side of Hyperplane port blocks (issue 20, deliverable 4): what an agent calls so
that a function's ENI stays one address across hosts. It leases the host's block of an ENI
(store/port_blocks.py) when the host first needs the ENI — the block's range is ensure_eni's
`ports` — gives it back when the host's last environment of the ENI goes, computes every VPC
namespace's reply steering (net/hyperplane/port_blocks.py's ReplySteering: the blocks the other
hosts hold of the VPC's ENIs), and keeps the 65,000-flow rule across hosts: the host records its
flow counts per ENI, and an ENI has room while the sum over hosts stays under the limit.

Synchronous store calls (an agent runs them off the event loop, asyncio.to_thread); the kernel
work (ensure_eni, ensure_reply_steering) stays the caller's, on its net thread."""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ..net.hyperplane.port_blocks import ReplySteering, desired_steering
from ..store.port_blocks import NoFreeBlock, PortBlock, PortBlockStore

log = logging.getLogger("lambdaplane.port_blocks")

DEFAULT_FLOW_LIMIT = 65000  # config.eni_flow_limit's default: AWS's flows per Hyperplane ENI


@dataclass(frozen=True)
class EniAddress:
    """A Hyperplane ENI as the steering needs it: its id (the store's key) and its address."""
    eni_id: str
    address: str


class PortBlockLeases:
    def __init__(self, store: PortBlockStore, host_id: str,
                 flow_limit: int = DEFAULT_FLOW_LIMIT,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.host_id = host_id
        self.flow_limit = flow_limit
        self._clock = clock

    def ports_for(self, eni_id: str) -> str:
        """The SNAT range "lo-hi" of this host for the ENI, leased on first ask. Raises
        store.port_blocks.NoFreeBlock when the other hosts hold every block: the ENI is full
        across hosts, a further ENI is wanted (as past 65,000 flows)."""
        return self.block_for(eni_id).ports

    def block_for(self, eni_id: str) -> PortBlock:
        held = self.store.block_of(eni_id, self.host_id)
        if held is not None:
            return held
        self.store.hop(self.host_id)  # first: a block's owner must be reachable by its hop
        block = self.store.lease(eni_id, self.host_id, self._clock())
        log.info("leased port block %s (%s) of %s", block.block, block.ports, eni_id)
        return block

    def release(self, eni_id: str) -> bool:
        """This host's last environment of the ENI went: its block goes back."""
        return self.store.release(eni_id, self.host_id)

    def held(self) -> dict[str, str]:
        """ENI id → this host's SNAT range, of every ENI it holds a block of."""
        return {b.eni_id: b.ports for b in self.store.of_host(self.host_id)}

    def steering(self, vpc_id: str, enis: list[EniAddress]) -> ReplySteering:
        """The reply steering of this host's namespace of `vpc_id`, whose Hyperplane ENIs are
        `enis` (every one of the VPC, whether or not this host runs it: a reply from a resource
        here must find the host that translated its flow)."""
        address = {e.eni_id: e.address for e in enis}
        blocks = self.store.of_enis(sorted(address))
        rows = [(address[eni_id], b.host_id, b.first_port, b.last_port)
                for eni_id, held in sorted(blocks.items()) for b in held]
        hops = self.store.hops()
        if self.host_id not in hops:
            hops[self.host_id] = self.store.hop(self.host_id)
        return desired_steering(vpc_id, self.host_id, hops, rows)

    # the 65,000-flow rule across hosts ----------------------------------------------------
    def record_flows(self, flows: Mapping[str, int]) -> None:
        """This host's tracked flows per ENI id (its sampler's count), for the other hosts."""
        for eni_id, count in sorted(flows.items()):
            self.store.record_flows(eni_id, self.host_id, count)

    def has_room(self, eni_id: str) -> bool:
        """Whether the ENI takes more flows, counted across hosts; False too when every port
        block is held by other hosts (this host could not translate for it)."""
        if not self.store.has_room(eni_id, self.flow_limit):
            return False
        if self.store.block_of(eni_id, self.host_id) is not None:
            return True
        return len(self.store.of_eni(eni_id)) < self.store.blocks_per_eni


__all__ = ["EniAddress", "NoFreeBlock", "PortBlockLeases"]
