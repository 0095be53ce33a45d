"""The host's uplink as the VPC gateways' internet, as a server component: decides whether this
server uses it (uplink on and no --internet-netns), builds it before the VPCs link into it,
repairs it on reconcile and removes it on stop. The kernel side is net/host_internet.py."""
from __future__ import annotations

import logging
from pathlib import Path

from ..config import Settings
from ..net import host_internet, host_sysctls
from ..net.executor import NetThread
from ..net.names import Names

log = logging.getLogger(__name__)


def adopt(settings: Settings, names: Names) -> bool:
    """Point the settings at the server's own internet namespace when it is the one to use;
    called once, before any component reads `settings.internet_netns`."""
    if not settings.uplink or settings.internet_netns:
        return False
    settings.internet_netns = names.host_internet_netns
    settings.internet_via_uplink = True
    return True


class HostInternet:
    """Started before the VPC service (whose gateways link into the namespace), stopped after."""

    def __init__(self, settings: Settings, names: Names, net: NetThread) -> None:
        self.settings = settings
        self.names = names
        self.net = net
        self.state: host_internet.HostInternetState | None = None

    @property
    def _host_record(self) -> Path:
        """Where the host's ip_forward is recorded before it is switched on (shared with the
        worker's uplink, net/host_sysctls.py)."""
        return self.settings.data_dir / host_sysctls.RECORD_NAME

    async def start(self) -> None:
        try:
            self.state = await self.net.run(host_internet.setup, self.names,
                                            self.settings.public_cidr, self._host_record)
        except BaseException:
            await self.net.run(host_internet.teardown, self.names, None)
            raise
        log.info("VPC gateways lead to the host's uplink through %s (masqueraded; private, "
                 "CGNAT, link-local, loopback and multicast destinations refused)",
                 self.names.host_internet_netns)

    async def stop(self) -> None:
        await self.net.run(host_internet.teardown, self.names, self.state)
        self.state = None

    async def reconcile(self) -> list[str]:
        """Rebuild what vanished (the VPC links into it are the gateways reconciler's)."""
        if await self.net.run(host_internet.is_intact, self.names):
            return []
        state = await self.net.run(host_internet.setup, self.names, self.settings.public_cidr,
                                   self._host_record)
        if self.state is None:
            self.state = state
        return [f"rebuilt the uplink internet namespace {self.names.host_internet_netns}"]

    async def counters(self) -> dict[str, host_internet.CounterReading]:
        """The internet namespace's refusal/out counters, read on the net thread (never on
        the event loop: nft runs a netlink dump)."""
        readings: dict[str, host_internet.CounterReading] = await self.net.run(
            host_internet.readings, self.names)
        return readings
