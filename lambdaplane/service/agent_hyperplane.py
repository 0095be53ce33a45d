"""The kernel half of Hyperplane ENIs on an agent (issue 20): the agent's HyperplaneService. The
store half — the EC2 interface, its address and the row with its number `n` — is made by
`serve --no-data-plane` (service/hyperplane_records.py); this side never writes an ENI or a
row. It reads the stored ENIs (`refresh`), leases this host's port block of each
(service/port_block_leases.py: the SNAT range of the ENI's `snat<n>` chain here, so one ENI
address serves every host that runs the function), and builds from the same rows what the
server builds on one host: the VPC's plane, the ENI's port in this host's VPC namespace, the
transit `lp<agent>t<n>` into the agent's own worker namespace and the data path
(service/agent_vpc.py gives the ENI that far end in the agent's view of the store).

At a cold start it steers the sandbox to an ENI of the function's key as the server does; an ENI
the server made a moment ago is read and built first; none at all (the function is still
Pending, or every ENI of its key is full across hosts) is ResourceNotReadyException. The
65,000-flow rule counts across hosts: `sync_flows` (each agent VPC run) records this host's
sampled flows per ENI in its block's row and reads back whether the sum has room. An ENI is
never deleted here: rows gone from the store lose their kernel half and this host's block at
the next refresh."""
from __future__ import annotations

import dataclasses
import logging

from ..config import Settings
from ..errors import AwsError
from ..net.executor import NetThread
from ..net.hyperplane import port_guard as hp_port_guard
from ..net.hyperplane.steering import Steering
from ..net.names import Names
from ..sandbox.types import FunctionSpec
from ..store.db import Database
from ..store.ec2 import Snapshot
from ..store.hyperplane import EniKey, HyperplaneEniRow
from ..store.port_blocks import NoFreeBlock, PortBlockError
from .desired_state import HyperplaneDesired
from .hyperplane import HyperplaneService
from .port_block_leases import PortBlockLeases
from .reconciler import Applied
from .vpc import VpcService

log = logging.getLogger("lambdaplane.hyperplane")

NOT_READY = ("The function's network interface is not ready on this host yet (its VPC "
             "configuration is still being applied). Try again in a few seconds.")


class AgentHyperplane(HyperplaneService):
    def __init__(self, settings: Settings, names: Names, db: Database, net: NetThread,
                 vpc: VpcService, leases: PortBlockLeases) -> None:
        # no FunctionService here: the server decides which ENIs exist
        super().__init__(settings, names, db, net, vpc, None)  # type: ignore[arg-type]
        self.leases = leases
        self.ports: dict[int, str] = {}  # ENI n → this host's SNAT range (its leased block)
        self.room: dict[int, bool] = {}  # ENI n → room across hosts, as of the last sync

    async def start(self) -> None:
        self.refresh()
        changes = await self.reconcile()
        log.info("Hyperplane (agent) reconcile at start: %d changes", len(changes))
        self._steering = Steering(self.names)
        await self.sampler.start()
        # no repair timer of its own: service/agent_vpc.py's loop refreshes and repairs

    async def stop(self) -> None:
        await super().stop()
        for eni_id in sorted(self.leases.held()):
            self.leases.release(eni_id)  # the other hosts may take the blocks at once

    def built_enis(self) -> dict[str, int]:
        """ENI id → n of the ENIs whose kernel half this host builds (those with a block)."""
        return {r.eni_id: n for n, r in self._rows.items() if n in self.ports}

    def refresh(self) -> bool:
        """Read the stored ENIs again, lease this host's block of each new one and give back
        the blocks of the ENIs gone; True when anything changed."""
        rows = {r.n: r for r in self.store.all()}
        changed = rows != self._rows
        for n, row in sorted(self._rows.items()):
            if rows.get(n) != row:
                self.ports.pop(n, None)
                self.sampler.forget_eni(n)
                if row.eni_id not in {r.eni_id for r in rows.values()}:
                    self.leases.release(row.eni_id)
        self._rows.clear()
        self._rows.update(rows)
        for n, row in sorted(rows.items()):
            if n in self.ports:
                continue
            try:
                self.ports[n] = self.leases.ports_for(row.eni_id)
                changed = True
            except NoFreeBlock:  # full across hosts: not built here (a further ENI is wanted)
                log.warning("no free port block of %s (e%d) for this host", row.eni_id, n)
            except PortBlockError as e:  # no host row yet (the lease starts after the start)
                log.info("port block of %s (e%d) not leased yet: %s", row.eni_id, n, e)
        return changed

    async def repair(self) -> list[str]:
        """Refresh from the store, then the full reconcile (and steering again if needed)."""
        async with self._lock:
            self.refresh()
        return await super().repair()

    def _desired(self, snap: Snapshot,
                 attachments: tuple[tuple[str, int], ...] | None) -> HyperplaneDesired:
        desired = super()._desired(snap, attachments)
        return dataclasses.replace(
            desired, enis=tuple(e for e in desired.enis if e.n in self.ports),
            ports=tuple(sorted(self.ports.items())))

    async def _full_run(self, attachments: bool) -> Applied:
        applied = await super()._full_run(attachments)
        for n, ports in sorted(self.ports.items()):  # the guard of each block (idempotent)
            row = self._rows.get(n)
            if row is not None:
                await self.net.run(hp_port_guard.ensure_port_guard, self.names, row.vpc_id, n,
                                   ports)
        return applied

    async def _pick_or_create(self, key: EniKey, spec: FunctionSpec) -> int:
        """No ENI of the key with room here: the server may have made one since the last
        refresh — read the store, build it, and pick; never make one."""
        async with self._lock:
            if self.refresh():
                await super()._full_run(attachments=False)
            for row in self._enis_of(key):
                if self._usable(row.n):
                    return row.n
        raise AwsError("ResourceNotReadyException", NOT_READY, 502, "Service")

    def _pick(self, key: EniKey) -> int | None:
        for row in self._enis_of(key):
            if self._usable(row.n):
                return row.n
        return None

    def _usable(self, n: int) -> bool:
        """Built here, with room on this host (flows, ports) and across hosts (the last sync:
        no store read on a cold start)."""
        return n in self.ports and self.room.get(n, True) and self.sampler.has_room(n)

    def sync_flows(self) -> None:
        """The 65,000-flow rule across hosts: record this host's sampled flows of each ENI
        it holds a block of, and read back whether each has room counted over every host."""
        held = {n: r.eni_id for n, r in self._rows.items() if n in self.ports}
        self.leases.record_flows({eni_id: self.sampler.counts.get(n, 0)
                                  for n, eni_id in held.items()})
        self.room = {n: self.leases.has_room(eni_id) for n, eni_id in held.items()}

    def _wanted_keys(self) -> set[EniKey]:
        return {r.key for r in self._rows.values()}  # the server collects, not the agent

    async def collect(self) -> list[int]:
        return []

    def rows(self) -> list[HyperplaneEniRow]:
        return [self._rows[n] for n in sorted(self._rows)]
