"""Where an invoke runs when `serve --no-data-plane` leaves execution to agents: on a live host
(store/hosts.py) that holds a warm environment of the function version, else on the least
loaded live host; `--placement pin:NAME` sends every invoke to the host named (tests). Works
on a snapshot of the hosts table refreshed every second (and when it is empty), plus what this
server itself has in flight on each host and has just run where; no I/O beyond the store."""
from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable

from ..errors import AwsError, too_many_requests
from ..store.hosts import FunctionKey, Host, HostStore

log = logging.getLogger("lambdaplane.placement")

PIN_PREFIX = "pin:"


def parse_placement(value: str) -> str:
    """The pinned host's name of `pin:NAME`, "" for the default (warm, else least loaded)."""
    if not value:
        return ""
    if not value.startswith(PIN_PREFIX) or not value[len(PIN_PREFIX):]:
        raise ValueError("--placement must be pin:HOSTNAME")
    return value[len(PIN_PREFIX):]


def no_capacity() -> AwsError:
    """No live agent to run on. Lambda's answer when it has no concurrency to give an invoke is
    TooManyRequestsException (429, Retry-After): SDKs back off and retry, and an Event
    invocation stays queued without counting as an attempt (service/invoke.py)."""
    return too_many_requests("Rate Exceeded.", "ConcurrentInvocationLimitExceeded", 1)


class Placement:
    def __init__(self, hosts: HostStore, pin: str = "",
                 clock: Callable[[], float] = time.time) -> None:
        self.hosts = hosts
        self.pin = pin
        self.clock = clock
        self.live: list[Host] = []
        self.warm: dict[FunctionKey, set[str]] = {}  # function version → host ids
        self.forwarded: Counter[str] = Counter()  # invokes this server has in flight, by host

    def refresh(self) -> None:
        """Read the live hosts and their warm functions again (two reads, however many
        hosts)."""
        now = self.clock()
        self.live = self.hosts.live(now)
        by_host = self.hosts.warm_by_host()
        warm: dict[FunctionKey, set[str]] = {}
        for host in self.live:
            for key in by_host.get(host.id, ()):
                warm.setdefault(key, set()).add(host.id)
        self.warm = warm

    def choose(self, key: FunctionKey, exclude: set[str] = frozenset()) -> Host:  # type: ignore[assignment]
        """The host to run an invoke of `key` on; `exclude`: hosts that just failed."""
        now = self.clock()
        if not self.live:
            self.refresh()
        candidates = [h for h in self.live if h.lease_expires > now and h.id not in exclude]
        if self.pin:
            pinned = [h for h in candidates if h.name == self.pin]
            if not pinned:
                log.warning("no live agent named %s (--placement pin:%s)", self.pin, self.pin)
                raise no_capacity()
            return pinned[0]
        if not candidates:
            log.warning("no live agent to run %s:%s on", *key)
            raise no_capacity()
        warm_ids = self.warm.get(key, set())
        warm = [h for h in candidates if h.id in warm_ids]
        return min(warm or candidates, key=lambda h: (h.load + self.forwarded[h.id], h.name))

    def ran(self, key: FunctionKey, host: Host) -> None:
        """`key` now has an environment on `host` (until the next refresh says otherwise)."""
        self.warm.setdefault(key, set()).add(host.id)

    def failed(self, host: Host) -> None:
        """`host` could not be reached: left out until the next refresh."""
        self.live = [h for h in self.live if h.id != host.id]
