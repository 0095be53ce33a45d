"""NAT gateways' CloudWatch metrics in /metrics, as `lambdaplane_natgateway_<MetricName>`
with the gateway's id (AWS's names: ActiveConnectionCount, ConnectionAttemptCount,
ConnectionEstablishedCount, ErrorPortAllocation, IdleTimeoutCount, BytesOutToDestination,
PacketsOutToDestination, PacketsDropCount), for public and private NAT gateways.
Read from the kernel on the net thread just before each scrape (net/gateways.py)."""
from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

log = logging.getLogger(__name__)

HELP = {
    "ActiveConnectionCount": ("gauge", "Concurrent active TCP/UDP flows through the NAT "
                                       "gateway"),
    "ConnectionAttemptCount": ("counter", "Connections attempted through the NAT gateway"),
    "ConnectionEstablishedCount": ("counter", "TCP connections established through the NAT "
                                              "gateway (the destination answered)"),
    "IdleTimeoutCount": ("counter", "Established TCP connections that expired idle (no "
                                    "activity for the idle timeout, 350 s)"),
    "ErrorPortAllocation": ("counter", "Connections refused: 55,000 simultaneous connections "
                                       "to one destination in use"),
    "BytesOutToDestination": ("counter", "Bytes sent out through the NAT gateway"),
    "PacketsOutToDestination": ("counter", "Packets sent out through the NAT gateway"),
    "PacketsDropCount": ("counter", "Packets the NAT gateway dropped (inbound connections, "
                                    "port allocation errors)"),
}


class NatGatewayMetrics:
    """A collector over the levels read by `refresh`."""

    def __init__(self, platform: Any) -> None:
        self.platform = platform
        self.levels: list[tuple[str, str, dict[str, int]]] = []  # (nat id, vpc, metrics)

    async def refresh(self) -> None:
        from .net import gateways as net_gateways

        vpc = getattr(self.platform, "vpc", None)
        if vpc is None:
            return
        try:
            specs = [s for s in vpc.gateway_desired() if s.nat_addresses]
            nat_of = {(n.vpc_id, n.public_ip or n.private_ip): n.id
                      for n in vpc.nat_store.all() if n.state == "available"}
            names = self.platform.names

            def read() -> list[tuple[str, str, dict[str, int]]]:
                out = []
                for spec in specs:
                    for pub, values in net_gateways.nat_levels(names, spec).items():
                        if (spec.vpc_id, pub) in nat_of:
                            out.append((nat_of[(spec.vpc_id, pub)], spec.vpc_id, values))
                return out

            self.levels = await self.platform.net.run(read)
        except Exception:
            log.exception("reading NAT gateway counters failed")

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        for name, (kind, help_) in HELP.items():
            family = (GaugeMetricFamily if kind == "gauge" else CounterMetricFamily)(
                f"lambdaplane_natgateway_{name}", help_, labels=["nat_gateway", "vpc"])
            for nat_id, vpc_id, values in self.levels:
                family.add_metric([nat_id, vpc_id], values.get(name, 0))
            yield family
