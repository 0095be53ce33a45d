"""`GET /metrics`: the server's numbers in Prometheus text format (prometheus-client).

Owns the metric definitions and how they are fed. Invocations are observed by wrapping the
two things the Invoker already takes as collaborators — its execution environments (every
finished invocation, with its cold-start phase timings from `InvocationResult.extra`) and its
admission (every throttle) — so neither service knows about metrics. Everything that is a
level rather than an event (concurrency, environments by state, the sandbox pool, per-ENI
flows and byte/packet counters from the Hyperplane plane's nftables counters and conntrack) is
read when scraped: the kernel's part on the NetThread, then rendered from that snapshot."""
from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from . import metrics_capacity, metrics_prestart
from .errors import AwsError
from .sandbox.types import FunctionSpec, Invocation, InvocationResult

if TYPE_CHECKING:
    from .service.hyperplane import HyperplaneService

log = logging.getLogger("lambdaplane.metrics")

# Latency buckets from 0.5 ms (a warm invoke) to the 15-minute maximum timeout.
DURATION_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                    2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0)
PHASE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.015, 0.025, 0.05, 0.1,
                 0.25, 0.5, 1.0, 5.0, 10.0)
# InvocationResult.extra keys (milliseconds) that are phases of a cold start.
COLD_PHASES = ("pool_take_ms", "vpc_attach_ms", "cgroup_ms", "spawn_ms")


RECENT_DURATIONS = 1000  # per function: what the console's p50/p99 are taken over


@dataclass
class FunctionCounts:
    """One function's numbers since the server started (the console's columns)."""
    invocations: int = 0
    errors: int = 0  # function errors (CloudWatch's Errors)
    throttles: int = 0  # refused before running (TooManyRequestsException ...)
    cold_starts: int = 0
    recent_ms: deque[float] = field(default_factory=lambda: deque(maxlen=RECENT_DURATIONS))

    def percentile(self, q: float) -> float | None:
        """The q-th percentile (0..1, nearest rank) of the recent durations, in ms."""
        if not self.recent_ms:
            return None
        ordered = sorted(self.recent_ms)
        return ordered[min(len(ordered) - 1, max(0, int(q * len(ordered) + 0.5) - 1))]


@dataclass
class Snapshot:
    """Levels read at scrape time."""
    in_flight: int = 0
    environments: dict[str, int] = field(default_factory=dict)
    pool: dict[str, int] = field(default_factory=dict)
    enis: list[dict[str, Any]] = field(default_factory=list)
    capacity: dict[str, Any] = field(default_factory=dict)  # sandbox/capacity.py's targets
    prestarted: dict[str, Any] = field(default_factory=dict)  # per runtime (prewarm.py)


class Metrics:
    def __init__(self) -> None:
        disable_created_metrics()  # the *_created series only double the scrape's size
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.invocations = Counter(
            "lambdaplane_invocations", "Invocations that ran, by function and outcome "
            "(success or function_error; the error types are in the errors counter)", ["function", "outcome"], registry=r)
        self.errors = Counter(
            "lambdaplane_invocation_errors", "Failed invocations by error type: function "
            "errors (Unhandled, Runtime.*, Sandbox.Timedout) and refusals before running "
            "(TooManyRequestsException reasons, ResourceConflictException ...)",
            ["function", "error_type"], registry=r)
        self.duration = Histogram(
            "lambdaplane_invocation_duration_seconds", "Function duration (the REPORT line's "
            "Duration)", ["function"], buckets=DURATION_BUCKETS, registry=r)
        self.cold_starts = Counter(
            "lambdaplane_cold_starts", "Invocations that started a new execution environment",
            ["function"], registry=r)
        self.init_duration = Histogram(
            "lambdaplane_cold_start_seconds", "Cold start until the runtime took the event "
            "(the REPORT line's Init Duration)", buckets=DURATION_BUCKETS, registry=r)
        self.phases = Histogram(
            "lambdaplane_cold_start_phase_seconds", "Cold-start phases: pool_take, vpc_attach, "
            "cgroup, spawn (zygote fork reported), runtime_ready (spawned until the runtime's "
            "first /next)", ["phase"], buckets=PHASE_BUCKETS, registry=r)
        self.snapshot = Snapshot()
        self.registry.register(_Levels(self))
        self._ok: dict[str, tuple[Any, Any]] = {}
        self._pending_ok: list[tuple[str, float]] = []  # successful invokes not counted yet
        self._counts: dict[str, FunctionCounts] = {}

    # -- feeding ---------------------------------------------------------------------------
    def observe(self, spec: FunctionSpec, result: InvocationResult) -> None:
        name = spec.name
        counts = self._counts.get(name)
        if counts is None:
            counts = self._counts[name] = FunctionCounts()
        counts.invocations += 1
        counts.recent_ms.append(result.duration_ms)
        if result.function_error is not None:
            counts.errors += 1
        if result.cold_start:
            counts.cold_starts += 1
        if result.function_error is None:
            # the warm path: kept as a pair and counted into the labelled series when /metrics
            # is read (or a batch is full), not one locked update of each per invoke
            self._pending_ok.append((name, result.duration_ms))
            if len(self._pending_ok) >= PENDING_LIMIT:
                self._count_pending()
        else:
            self.invocations.labels(name, "function_error").inc()
            self.errors.labels(name, result.error_type or result.function_error).inc()
            self.duration.labels(name).observe(result.duration_ms / 1000)
        if result.cold_start:
            self.cold_starts.labels(name).inc()
            extra = result.extra
            phases_ms = 0.0
            for key in COLD_PHASES:
                if key in extra:
                    self.phases.labels(key[:-3]).observe(extra[key] / 1000)
                    phases_ms += extra[key]
            if result.init_duration_ms is not None:
                self.init_duration.observe(result.init_duration_ms / 1000)
                self.phases.labels("runtime_ready").observe(
                    max(result.init_duration_ms - phases_ms, 0.0) / 1000)

    def _count_pending(self) -> None:
        pending, self._pending_ok = self._pending_ok, []
        for name, duration_ms in pending:
            ok = self._ok.get(name)  # labelled children looked up once per function
            if ok is None:
                ok = self._ok[name] = (self.invocations.labels(name, "success"),
                                       self.duration.labels(name))
            ok[0].inc()
            ok[1].observe(duration_ms / 1000)

    def refused(self, function: str, error: AwsError) -> None:
        self._counts.setdefault(function, FunctionCounts()).throttles += 1
        reason = error.extra.get("Reason") if isinstance(error.extra, dict) else None
        self.errors.labels(function, f"{error.code}:{reason}" if reason else error.code).inc()

    def function_counts(self, function: str) -> FunctionCounts:
        """A function's numbers (all zero if it never ran); by name, as the metrics label."""
        return self._counts.get(function) or FunctionCounts()

    def instrument(self, platform: Any) -> None:
        """Observe the platform's invoker (call once, before serving)."""
        invoker = platform.invoker
        invoker.environments = MeteredEnvironments(invoker.environments, self)
        invoker.admission = MeteredAdmission(invoker.admission, self)
        from .data_dir_usage import DataDirCollector
        self.registry.register(DataDirCollector(platform.settings.data_dir))
        if getattr(platform, "kernel_watch", None) is not None:  # service/kernel_watch.py
            from .heal_metrics import KernelHealthCollector
            self.registry.register(KernelHealthCollector(platform.kernel_watch))

    # -- scraping --------------------------------------------------------------------------
    async def render(self, platform: Any) -> bytes:
        self.snapshot = await read_levels(platform)
        self._count_pending()
        return generate_latest(self.registry)


PENDING_LIMIT = 4096  # successful invokes kept before they are counted without a scrape


class MeteredEnvironments:
    """The Invoker's `environments`, observed."""

    def __init__(self, inner: Any, metrics: Metrics) -> None:
        self.inner = inner
        self.metrics = metrics

    async def invoke(self, spec: FunctionSpec, inv: Invocation) -> InvocationResult:
        try:
            result = await self.inner.invoke(spec, inv)
        except AwsError as e:
            self.metrics.refused(spec.name, e)
            raise
        except Exception:
            self.metrics.errors.labels(spec.name, "ServiceException").inc()
            raise
        self.metrics.observe(spec, result)
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class MeteredAdmission:
    """The Invoker's `admission`: throttles counted as they are raised."""

    def __init__(self, inner: Any, metrics: Metrics) -> None:
        self.inner = inner
        self.metrics = metrics

    def acquire(self, record: Any, unreserved_capacity: int) -> Any:
        try:
            return self.inner.acquire(record, unreserved_capacity)
        except AwsError as e:
            self.metrics.refused(record.name, e)
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def read_levels(platform: Any) -> Snapshot:
    envs = platform.environments
    stats = envs.stats()
    snap = Snapshot(in_flight=int(stats.get("in_flight", 0)),
                    environments=dict(stats.get("environments", {})),
                    pool={k: int(v) for k, v in stats.items()
                          if k.startswith(("pool_", "sandboxes_")) and isinstance(v, int)},
                    capacity=dict(stats.get("capacity") or {}),
                    prestarted=dict(stats.get("prestarted") or {}))
    hyperplane = getattr(platform, "hyperplane", None)
    if hyperplane is not None:
        try:
            snap.enis = await eni_levels(platform, hyperplane)
        except Exception:
            log.exception("reading Hyperplane ENI counters failed")
    return snap


async def eni_levels(platform: Any, hyperplane: HyperplaneService) -> list[dict[str, Any]]:
    """Per ENI: tracked flows (sampled by the service), and its plane's nftables counters
    plus the further per-ENI counters the data path keeps (`eni_stats`)."""
    import asyncio

    from .net.hyperplane.counters import (ConntrackReading, eni_counters, eni_stats,
                                          read_conntrack)

    enis = hyperplane.sampled_enis()
    if not enis:
        return []
    # the service attributes port-allocation errors to ENIs (the kernel counts them per VPC)
    attributed = hyperplane.port_errors()
    names = platform.names
    # conntrack dumps walk the kernel's whole table: off the NetThread, one per plane
    readings: dict[str, ConntrackReading] = {}
    for vpc_id in sorted({e.row.vpc_id for e in enis}):
        readings[vpc_id] = await asyncio.to_thread(read_conntrack, names, vpc_id)

    def read() -> list[dict[str, Any]]:
        out = []
        for sampled in enis:
            row = sampled.row
            counters = eni_counters(names, row.vpc_id, row.n)
            item: dict[str, Any] = {"eni": row.eni_id, "n": row.n, "vpc": row.vpc_id,
                                    "subnet": row.key.subnet_id,
                                    "active_connections": sampled.active_connections,
                                    **{k: getattr(counters, k) for k in (
                                        "tx_packets", "tx_bytes", "rx_packets", "rx_bytes",
                                        "dropped_packets")}}
            item.update(eni_stats(names, row.vpc_id, row.n, readings[row.vpc_id]))
            item["port_allocation_errors"] = attributed.get(row.n, 0)
            out.append(item)
        return out

    return await platform.net.run(read)


# Per-ENI counters the data path may report beyond bytes/packets (issue 6's list).
_ENI_COUNTERS = {
    "tx_packets": "Packets from sandboxes into the VPC through the ENI",
    "tx_bytes": "Bytes from sandboxes into the VPC through the ENI",
    "rx_packets": "Packets from the VPC back to sandboxes through the ENI",
    "rx_bytes": "Bytes from the VPC back to sandboxes through the ENI",
    "dropped_packets": "Packets the ENI refused (new flows from the VPC, strays)",
    "new_connections": "Flows opened through the ENI",
    "port_allocation_errors": "Flows refused because the ENI had no free source port "
                              "(ErrorPortAllocation; attribution in service/hyperplane.py)",
    "idle_timeouts": "Flows expired after their idle timeout",
}


class _Levels:
    """A custom collector over the last snapshot (taken by `render` just before)."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        snap = self.metrics.snapshot
        g = GaugeMetricFamily("lambdaplane_concurrent_executions",
                              "Invocations running now (account concurrency in use)")
        g.add_metric([], snap.in_flight)
        yield g
        g = GaugeMetricFamily("lambdaplane_execution_environments",
                              "Execution environments by state", labels=["state"])
        for state, n in sorted(snap.environments.items()):
            g.add_metric([state], n)
        yield g
        for key, help_ in (("pool_ready", "Pre-made sandboxes ready for a cold start"),
                           ("pool_target", "Sandboxes the pool keeps ready"),
                           ("sandboxes_in_use", "Sandboxes held by environments")):
            g = GaugeMetricFamily(f"lambdaplane_sandbox_{key.removeprefix('sandboxes_')}"
                                  if key.startswith("sandboxes_") else f"lambdaplane_{key}",
                                  help_)
            g.add_metric([], snap.pool.get(key, 0))
            yield g
        yield from metrics_capacity.families(snap.capacity)
        yield from metrics_prestart.families(snap.prestarted)
        c = CounterMetricFamily("lambdaplane_pool_recycled",
                                "Sandboxes handed out again without a rebuild")
        c.add_metric([], snap.pool.get("pool_recycled", 0))
        yield c
        labels = ["eni", "subnet", "vpc"]
        g = GaugeMetricFamily("lambdaplane_eni_active_connections",
                              "Tracked flows through the Hyperplane ENI", labels=labels)
        for eni in snap.enis:
            g.add_metric([eni["eni"], eni["subnet"], eni["vpc"]], eni["active_connections"])
        yield g
        for key, help_ in _ENI_COUNTERS.items():
            c = CounterMetricFamily(f"lambdaplane_eni_{key}", help_, labels=labels)
            for eni in snap.enis:
                if key in eni:
                    c.add_metric([eni["eni"], eni["subnet"], eni["vpc"]], eni[key])
            yield c


def add_routes(app: web.Application, platform: Any) -> Metrics:
    """Instrument the platform and serve GET /metrics."""
    metrics = Metrics()
    metrics.instrument(platform)

    from .nat_metrics import NatGatewayMetrics

    nat_gateways = NatGatewayMetrics(platform)
    metrics.registry.register(nat_gateways)
    from .uplink_metrics import HostUplinkMetrics

    host_uplink = HostUplinkMetrics(platform)
    metrics.registry.register(host_uplink)

    async def scrape(_request: web.Request) -> web.Response:
        await nat_gateways.refresh()
        await host_uplink.refresh()
        body = await metrics.render(platform)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_PLAIN_0_0_4})

    app.router.add_get("/metrics", scrape)
    app["metrics"] = metrics
    return metrics
