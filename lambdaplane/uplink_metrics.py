"""The host-uplink internet's counters in /metrics (when the VPC gateways go out through the
host's uplink: serve with the uplink on and no --internet-netns): what the internet
namespace's nft table `lp<i>-ug` refused before the uplink, refused coming in, and let out,
as `lambdaplane_vpc_uplink_<counter>_packets` / `_bytes`. Read on the net thread just before
each scrape (net/host_internet.py), never on the event loop."""
from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, Metric

log = logging.getLogger(__name__)

# nft counter name → (metric stem, HELP)
HELP = {
    "refused": ("refused", "Leaving VPC gateways for the host's uplink, refused (private, "
                           "CGNAT, link-local, loopback, multicast, the host's networks, the "
                           "public address pool, IPv6)"),
    "inbound_refused": ("inbound_refused", "Arriving from the host's uplink for the VPC "
                                           "gateways, refused (not a reply)"),
    "out": ("out", "Let out of the VPC gateways through the host's uplink"),
}


class HostUplinkMetrics:
    """A collector over the readings taken by `refresh` (none when the uplink is not used)."""

    def __init__(self, platform: Any) -> None:
        self.platform = platform
        self.readings: dict[str, Any] = {}  # counter name → net.host_internet.CounterReading

    async def refresh(self) -> None:
        uplink = getattr(self.platform, "host_internet", None)  # service/host_internet.py
        if uplink is None:
            return
        try:
            self.readings = await uplink.counters()
        except Exception:
            log.exception("reading the host uplink's counters failed")

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        for name, (stem, help_) in HELP.items():
            reading = self.readings.get(name)
            for unit in ("packets", "bytes"):
                family = CounterMetricFamily(f"lambdaplane_vpc_uplink_{stem}_{unit}",
                                             f"{unit.capitalize()} {help_[0].lower()}{help_[1:]}")
                if reading is not None:
                    family.add_metric([], getattr(reading, unit))
                yield family
