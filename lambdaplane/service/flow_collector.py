"""The flow-log collector: turns what the kernel of each logged VPC reports (net/flow_sources.py:
conntrack counters, NFLOG drops) into AWS's default flow-log records (version 2), aggregated
per flow log over its interval, and delivers them to the flow log's log group, one stream per
interface named by the ENI id, as AWS does.

Which interface a record belongs to, as AWS shows it: an accepted flow gives, on the ENI of each
end inside the VPC, one record per direction that carried packets; the initiator's address is
the one the responder sees (after SNAT: a Hyperplane ENI's own address, not a sandbox's). A
packet the receiver's groups drop is a REJECT on the receiver's ENI (the sender's ENI let it
out: ACCEPT there); one the sender's groups drop is a REJECT on the sender's ENI.

Runs as one task on the event loop; the kernel reads run in a worker thread. Owns the NFLOG
sockets it opened (closed at stop and when a VPC has no flow log left) and nothing else."""
from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field

from ..tasks import cancel_and_wait
from ..net import flow_sources, ns
from ..net.flow_sources import DropLog, DroppedPacket, TrackedFlow
from ..net.names import Names
from ..net.names import port_ifname
from ..store.ec2 import Ec2Store, Eni
from ..store.flow_logs import FlowLog
from .flow_logs import FlowLogs
from .logs import LogsService

log = logging.getLogger("lambdaplane.flowlogs")

# (interface, srcaddr, dstaddr, srcport, dstport, protocol, action)
RecordKey = tuple[str, str, str, int, int, int, str]


@dataclass
class Tally:
    packets: int = 0
    bytes: int = 0
    start: int = 0
    end: int = 0

    def add(self, packets: int, size: int, now: int) -> None:
        self.start = self.start or now
        self.end = now
        self.packets += packets
        self.bytes += size


@dataclass
class Window:
    """One flow log's records since its interval began."""
    started: float  # monotonic
    tallies: dict[RecordKey, Tally] = field(default_factory=lambda: defaultdict(Tally))
    wall_started: int = field(default_factory=lambda: int(time.time()))


@dataclass(frozen=True)
class Observation:
    key: RecordKey
    packets: int
    bytes: int


def flow_observations(flow: TrackedFlow, delta: tuple[int, int, int, int],
                      eni_by_ip: Mapping[str, str]) -> list[Observation]:
    """The records one accepted flow's new packets make, on the ENIs of both its ends."""
    init_addr, init_port = flow.reply_dst, flow.reply_dport  # after SNAT
    resp_addr, resp_port = flow.orig_dst, flow.orig_dport
    out: list[Observation] = []
    for eni in dict.fromkeys(filter(None, (eni_by_ip.get(init_addr), eni_by_ip.get(resp_addr)))):
        if delta[0]:
            out.append(Observation((eni, init_addr, resp_addr, init_port, resp_port,
                                    flow.protocol, "ACCEPT"), delta[0], delta[1]))
        if delta[2]:
            out.append(Observation((eni, resp_addr, init_addr, resp_port, init_port,
                                    flow.protocol, "ACCEPT"), delta[2], delta[3]))
    return out


def drop_observations(drop: DroppedPacket, eni_by_port: Mapping[str, Eni]) -> list[Observation]:
    """A dropped packet: REJECT where a group dropped it; for an ingress drop, ACCEPT on the
    sender's ENI, whose groups let it out. A Hyperplane sender shows its ENI's address."""
    sender = eni_by_port.get(drop.in_port)
    src = sender.ip if sender is not None else drop.src
    where = eni_by_port.get(drop.port)
    out: list[Observation] = []
    if where is not None:
        out.append(Observation((where.id, src, drop.dst, drop.sport, drop.dport, drop.protocol,
                                "REJECT"), 1, drop.length))
    if drop.direction == "in" and sender is not None and sender is not where:
        out.append(Observation((sender.id, src, drop.dst, drop.sport, drop.dport,
                                drop.protocol, "ACCEPT"), 1, drop.length))
    return out


def nodata_line(account_id: str, eni_id: str, start: int, end: int) -> str:
    """AWS's record for an interface without traffic in the interval."""
    return f"2 {account_id} {eni_id} - - - - - - - {start} {end} - NODATA"


def record_line(account_id: str, key: RecordKey, tally: Tally) -> str:
    eni, src, dst, sport, dport, protocol, action = key
    return (f"2 {account_id} {eni} {src} {dst} {sport} {dport} {protocol} {tally.packets} "
            f"{tally.bytes} {tally.start} {tally.end} {action} OK")


class FlowCollector:
    def __init__(self, names: Names, flow_logs: FlowLogs, logs: LogsService,
                 interval_override_s: float | None = None) -> None:
        self.names = names
        self.flow_logs = flow_logs
        self.logs = logs
        self.ec2 = Ec2Store(flow_logs.db)
        self.interval_override_s = interval_override_s
        self.tick_s = min(1.0, (interval_override_s or 60) / 4)
        self._drop_logs: dict[str, DropLog] = {}
        self._accounting: set[tuple[str, int]] = set()  # (netns, its inode)
        self._counters: dict[tuple[str, int], tuple[int, int, int, int]] = {}
        self._windows: dict[str, Window] = {}
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        flow_logs.after_create = self.tick  # count from the moment a flow log exists

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="lp-flow-logs")

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)
        for drop_log in self._drop_logs.values():
            drop_log.close()
        self._drop_logs.clear()

    async def _run(self) -> None:
        while True:
            began = time.monotonic()
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("flow-log collection failed")
            # a big conntrack table makes a dump slow: then dump less often (never more than
            # a fifth of the time), which only coarsens start/end within the interval
            await asyncio.sleep(max(self.tick_s, 4 * (time.monotonic() - began)))

    async def tick(self) -> None:
        """One collection: kernel reads (turning accounting and the NFLOG socket on in VPCs
        that just got a flow log), tallies, and delivery of the windows that are due."""
        async with self._lock:
            await self._tick()

    async def _tick(self) -> None:
        flows = self.flow_logs.active()
        if not flows and not self._drop_logs and not self._windows:
            return  # nothing logged: no kernel reads at all
        enis = self.ec2.enis()
        covered = {f.id: [e for e in enis if FlowLogs.covers(f, e)] for f in flows}
        vpcs = sorted({e.vpc_id for es in covered.values() for e in es})
        netns_of = {v: self.names.vpc_netns(v) for v in vpcs}
        readings = await asyncio.to_thread(self._read_kernel, list(netns_of.values()))
        watched = set(netns_of.values())
        for key in [k for k in self._counters if k[0] not in watched]:
            del self._counters[key]
        now = int(time.time())
        observations: list[Observation] = []
        for vpc_id, netns in netns_of.items():
            vpc_enis = [e for e in enis if e.vpc_id == vpc_id]
            tracked, drops = readings.get(netns, ([], []))
            eni_by_ip = {e.ip: e.id for e in vpc_enis}
            eni_by_port = {port_ifname(e.id): e for e in vpc_enis}
            for flow, delta in self._deltas(netns, tracked):
                observations += flow_observations(flow, delta, eni_by_ip)
            for drop in drops:
                observations += drop_observations(drop, eni_by_port)
        self._tally(flows, covered, observations, now)
        self._deliver(flows, covered, time.monotonic())

    def _read_kernel(self, netns_list: list[str]
                     ) -> dict[str, tuple[list[TrackedFlow], list[DroppedPacket]]]:
        """Worker thread: one conntrack dump and the pending drops of each watched VPC."""
        for netns in [n for n in self._drop_logs if n not in netns_list]:
            self._drop_logs.pop(netns).close()
        out = {}
        for netns in netns_list:
            if not ns.exists(netns):
                continue
            try:
                # a namespace made anew under the same name (reconcile after a crash) is
                # another kernel: its accounting is off and the old socket reads nothing
                identity = (netns, ns.netns_path(netns).stat().st_ino)
                if identity not in self._accounting:
                    flow_sources.enable_accounting(netns)
                    self._accounting.add(identity)
                    if netns in self._drop_logs:
                        self._drop_logs.pop(netns).close()
                if netns not in self._drop_logs:
                    self._drop_logs[netns] = DropLog(netns)
                drops = self._drop_logs[netns].read()
                out[netns] = (flow_sources.tracked_flows(netns), drops)
            except OSError as e:  # the VPC went away between the check and the read
                log.debug("flow-log read of %s: %s", netns, e)
        return out

    def _deltas(self, netns: str, tracked: list[TrackedFlow]
                ) -> list[tuple[TrackedFlow, tuple[int, int, int, int]]]:
        """Each entry's packets and bytes since the previous dump (all of them when new)."""
        out = []
        seen = set()
        for flow in tracked:
            key = (netns, flow.ct_id)
            seen.add(key)
            now = (flow.orig_packets, flow.orig_bytes, flow.reply_packets, flow.reply_bytes)
            before = self._counters.get(key, (0, 0, 0, 0))
            if any(n < b for n, b in zip(now, before)):  # the id was reused
                before = (0, 0, 0, 0)
            self._counters[key] = now
            delta = (now[0] - before[0], now[1] - before[1], now[2] - before[2],
                     now[3] - before[3])
            if any(delta):
                out.append((flow, delta))
        for key in [k for k in self._counters if k[0] == netns and k not in seen]:
            del self._counters[key]
        return out

    def _tally(self, flows: list[FlowLog], covered: Mapping[str, list[Eni]],
               observations: list[Observation], now: int) -> None:
        for flow in flows:
            window = self._windows.setdefault(flow.id, Window(time.monotonic()))
            eni_ids = {e.id for e in covered.get(flow.id, [])}
            for ob in observations:
                action = ob.key[6]
                if ob.key[0] in eni_ids and flow.traffic_type in ("ALL", action):
                    window.tallies[ob.key].add(ob.packets, ob.bytes, now)
        for gone in set(self._windows) - {f.id for f in flows}:
            del self._windows[gone]  # deleted: nothing more is delivered

    def _deliver(self, flows: list[FlowLog], covered: Mapping[str, list[Eni]],
                 now: float) -> None:
        for flow in flows:
            window = self._windows[flow.id]
            interval = self.interval_override_s or flow.interval_s
            if now - window.started < interval:
                continue
            self._windows[flow.id] = Window(now)
            eni_ids = {e.id for e in covered.get(flow.id, [])}
            if window.tallies or eni_ids:
                self._put(flow, window, eni_ids)

    def _put(self, flow: FlowLog, window: Window, eni_ids: set[str]) -> None:
        store = self.logs.store
        group = store.group(flow.region, flow.log_group)
        if group is None:  # AWS makes the group when it does not exist
            store.create_group(flow.region, flow.log_group, None, "STANDARD", {})
            group = store.group(flow.region, flow.log_group)
        if group is None:
            return
        by_eni: dict[str, list[tuple[int, str]]] = defaultdict(list)
        for key, tally in sorted(window.tallies.items(), key=lambda kv: kv[1].start):
            line = record_line(self.flow_logs.account_id, key, tally)
            by_eni[key[0]].append((tally.end * 1000, line))
        end = int(time.time())
        for eni_id in sorted(eni_ids - set(by_eni)):
            line = nodata_line(self.flow_logs.account_id, eni_id, window.wall_started, end)
            by_eni[eni_id].append((end * 1000, line))
        for eni_id, events in by_eni.items():
            stream = store.stream(group.id, eni_id)
            if stream is None:
                store.create_stream(group.id, eni_id)
                stream = store.stream(group.id, eni_id)
            if stream is not None:
                store.put_events(group.id, stream.id, sorted(events))
