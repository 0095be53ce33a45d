"""The Hyperplane service's flow sampler: tracked flows and port-allocation errors per ENI.

Every FLOW_SAMPLE_S, in the background (never on the cold-start path), one conntrack read per
VPC plane gives each ENI's tracked flows — IPv4 and IPv6 (the NAT66 of dual-stack functions),
the number the 65,000-flow rule of service/hyperplane.py reads at a cold start — and its
port-allocation errors (IPv4: the port guard and the SNAT range are IPv4's).

Port exhaustion (AWS's ErrorPortAllocation). An ENI has one source port per flow to a given
destination (protocol, address, port); `settings.eni_snat_ports` narrows the SNAT range of ENIs
made from then on (a testing knob: `serve --eni-snat-ports LO-HI`; a data path rebuilt by a
reconcile gets the full range back). What the function sees when its ENI has no port left for a
destination: with a range of at most PORT_GUARD_MAX_PORTS ports, an immediate "connection
refused" (TCP reset; ICMP port unreachable for UDP) from the ENI's port guard; with a wider range
(the default 64,512) its SYN is dropped and it waits for its connect timeout, because the guard's
per-destination count costs too much at that size (net/hyperplane/port_guard.py says what was
measured). The sampler counts port-allocation errors per ENI (`port_errors`, exported as
lambdaplane_eni_port_allocation_errors_total):
  - flows the ENI's port guard refused: exact, per ENI;
  - plus the plane's conntrack `insert_failed` (SYNs dropped because NAT found no free port,
    including a TIME_WAIT binding that could not be reused or a retried SYN) since the last
    sample. Conntrack keeps it per VPC plane, not per ENI: with one ENI in the plane it is that
    ENI's; otherwise the whole increase goes to the ENI whose busiest destination uses the
    largest share of its port range (each of several equally full ones gets it) — the only ENI
    whose NAT can have failed when the others have ports to spare.
An ENI with a new port-allocation error has no room (`has_room`): new environments go to another
ENI of the same (subnet, groups) key, made if none has room — the same path as the 65,000-flow
rule. Environments already on it stay. It has room again once it has had no new error for
PORT_QUIET_S seconds and is under the flow limit."""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..tasks import cancel_and_wait
from ..config import Settings
from ..net.conntrack import ConntrackUnavailable
from ..net.executor import NetThread
from ..net.hyperplane import counters as hp_counters
from ..net.hyperplane.model import SNAT_PORTS, port_range_size
from ..net.names import Names
from ..store.hyperplane import HyperplaneEniRow
from .vpc import VpcService

log = logging.getLogger("lambdaplane.hyperplane")

FLOW_SAMPLE_S = 1.0
PORT_QUIET_S = 60.0  # an ENI without port-allocation errors this long takes environments again


@dataclass
class PortErrors:
    """Port-allocation errors counted for one ENI (see the module docstring)."""
    count: int = 0
    last_at: float | None = None  # monotonic time of the sample that saw the last new ones


@dataclass(frozen=True)
class SampledEni:
    """One Hyperplane ENI as the sampler last saw it."""
    row: HyperplaneEniRow
    active_connections: int  # tracked flows through it at the last sample


class FlowSampler:
    """Samples the planes of the ENIs `rows()` returns while `busy()` (any environment is
    attached); the service reads `counts`, `errors` and `has_room`."""

    def __init__(self, settings: Settings, names: Names, net: NetThread, vpc: VpcService,
                 rows: Callable[[], dict[int, HyperplaneEniRow]],
                 busy: Callable[[], bool]) -> None:
        self.settings = settings
        self.names = names
        self.net = net
        self.vpc = vpc
        self._rows = rows
        self._busy = busy
        self.counts: dict[int, int] = {}  # sampled tracked flows per ENI
        self.errors: dict[int, PortErrors] = {}  # port-allocation errors per ENI
        self._seen: dict[str, tuple[int, dict[int, int]]] = {}  # per VPC plane: the last
        # sample's insert_failed and guard refusals per ENI (the increase is what is counted)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Take the planes' current counts as the baseline, then sample in the background."""
        for vpc_id in sorted({r.vpc_id for r in self._rows().values()}):
            # planes that survived a crash: errors from before are not this run's to count
            try:
                ports = await self._read_plane(vpc_id)
            except ConntrackUnavailable as e:  # flows and port errors cannot be counted
                log.error("Hyperplane: %s", e)
                continue
            self._seen[vpc_id] = (ports.insert_failed, ports.refused)
        self._task = asyncio.get_running_loop().create_task(self._sample_flows())

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)

    def forget_eni(self, n: int) -> None:
        self.counts.pop(n, None)
        self.errors.pop(n, None)

    def forget_plane(self, vpc_id: str) -> None:
        self._seen.pop(vpc_id, None)  # a new plane's counters start at zero

    def has_room(self, n: int) -> bool:
        """Under the flow limit and no port-allocation error in the last PORT_QUIET_S."""
        if self.counts.get(n, 0) >= self.settings.eni_flow_limit:
            return False
        errors = self.errors.get(n)
        return errors is None or errors.last_at is None \
            or time.monotonic() - errors.last_at >= PORT_QUIET_S

    async def _read_plane(self, vpc_id: str) -> hp_counters.PlanePorts:
        """One read of a plane for the port rule; its conntrack dump (a walk of the kernel's
        whole table) runs on a thread of its own, not the NetThread."""
        reading = await asyncio.to_thread(hp_counters.read_conntrack, self.names, vpc_id)
        return await self.net.run(hp_counters.plane_ports, self.names, vpc_id, False, reading)

    async def _sample_flows(self) -> None:
        while True:
            await asyncio.sleep(FLOW_SAMPLE_S)
            try:
                await self.sample_flows()
            except Exception:  # noqa: BLE001 - logged; the next sample tries again
                log.exception("sampling Hyperplane flows failed")

    async def sample_flows(self) -> dict[int, int]:
        """Tracked flows per ENI, as the 65,000 rule reads them; counts port-allocation
        errors on the way (one conntrack read per plane serves both)."""
        if not self._busy():
            self.counts = {}
            return {}
        counts: dict[int, int] = {}
        rows = self._rows()
        for vpc_id in sorted({r.vpc_id for r in rows.values()}):
            reading = await asyncio.to_thread(hp_counters.read_conntrack, self.names, vpc_id)
            ports = await self.net.run(hp_counters.plane_ports, self.names, vpc_id, False,
                                       reading)
            addresses: dict[int, str] = {}
            for row in [r for r in rows.values() if r.vpc_id == vpc_id]:
                eni = self.vpc.store.eni(row.eni_id)
                if eni is not None:
                    # its IPv4 flows and its IPv6 (NAT66) ones: AWS's limit is per ENI
                    counts[row.n] = ports.flows.get(eni.ip, 0) + sum(
                        ports.flows.get(a, 0) for a in self.vpc.ipv6.addresses_of(eni.id))
                    addresses[row.n] = eni.ip
            failed_before = self._seen.get(vpc_id, (0, {}))[0]
            destinations = None
            if ports.insert_failed > failed_before and len(addresses) > 1:
                # several ENIs share the plane's count: who is out of ports (rare, so the
                # reading is parsed again, per destination)
                destinations = await self.net.run(hp_counters.plane_ports, self.names,
                                                  vpc_id, True, reading)
            self.count_port_errors(vpc_id, ports, addresses, destinations)
        self.counts = counts
        return counts

    def count_port_errors(self, vpc_id: str, ports: hp_counters.PlanePorts,
                          addresses: dict[int, str],
                          destinations: hp_counters.PlanePorts | None = None) -> None:
        """Attribute a plane's new port-allocation errors to its ENIs (module docstring);
        `destinations`: a read with each ENI's busiest destination, when several ENIs may
        share the plane's conntrack count."""
        failed_before, refused_before = self._seen.get(vpc_id, (0, {}))
        self._seen[vpc_id] = (ports.insert_failed, dict(ports.refused))
        new = {n: max(0, ports.refused.get(n, 0) - refused_before.get(n, 0)) for n in addresses}
        failed = max(0, ports.insert_failed - failed_before)
        if failed and addresses:
            def share(n: int) -> float:
                if destinations is None:
                    return 0.0  # one ENI (or no read): every candidate shares the top rank
                used = destinations.busiest.get(addresses[n], 0)
                full = destinations.ranges.get(n, port_range_size(SNAT_PORTS))
                return used / max(1, full)
            fullest = max(share(n) for n in addresses)
            for n in addresses:
                if share(n) == fullest:
                    new[n] += failed
        now = time.monotonic()
        for n, count in new.items():
            if count:
                errors = self.errors.setdefault(n, PortErrors())
                if errors.last_at is None or now - errors.last_at >= PORT_QUIET_S:
                    log.info("Hyperplane ENI e%d: port-allocation errors; it takes no new "
                             "environments until %.0f s without any", n, PORT_QUIET_S)
                errors.count += count
                errors.last_at = now
