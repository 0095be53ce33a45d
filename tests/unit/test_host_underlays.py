"""The agents' underlay addresses (store/host_underlays.py) on SQLite and PostgreSQL: recorded
at registration, read as peers only while the host's lease runs and never one's own, a row of a
host that is gone deleted by the next registration, removed with the agent."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from lambdaplane.store.db import Database
from lambdaplane.store.host_underlays import HostUnderlays
from lambdaplane.store.hosts import HostStore


@pytest.fixture
def stores(tmp_path: Path, database_url: str | None) -> Iterator[tuple[HostStore,
                                                                        HostUnderlays]]:
    database = Database.open(tmp_path, database_url)
    try:
        yield HostStore(database, lease_s=5.0), HostUnderlays(database)
    finally:
        database.close()


def _rows(underlays: HostUnderlays) -> set[str]:
    return {r["host_id"] for r in underlays.db.conn.execute(
        "SELECT host_id FROM host_underlays").fetchall()}


def test_peers_are_the_other_live_hosts(stores: tuple[HostStore, HostUnderlays]) -> None:
    hosts, underlays = stores
    hosts.register("lpa1", "host-a", "unix:/a", "a1", now=100.0)
    underlays.record("lpa1", "10.252.0.1")
    assert underlays.live_peers("lpa1", 101.0) == set()
    hosts.register("lpb1", "host-b", "unix:/b", "b1", now=100.0)
    underlays.record("lpb1", "10.252.0.2")
    underlays.record("lpb1", "10.252.0.3")  # registered again, with another address
    assert underlays.live_peers("lpa1", 101.0) == {"10.252.0.3"}
    assert underlays.live_peers("lpb1", 101.0) == {"10.252.0.1"}
    hosts.renew("lpa1", 104.0, load=0, warm=set())
    # b's lease ran out at 105: no longer a peer, even before its host row is deleted
    assert underlays.live_peers("lpa1", 105.5) == set()
    hosts.expire(105.5)
    assert _rows(underlays) == {"lpa1", "lpb1"}
    hosts.register("lpc1", "host-c", "unix:/c", "c1", now=106.0)
    underlays.record("lpc1", "10.252.0.4")  # the gone host's row goes on the way
    assert _rows(underlays) == {"lpa1", "lpc1"}
    underlays.remove("lpc1")
    assert underlays.live_peers("lpa1", 107.0) == set()
    assert _rows(underlays) == {"lpa1"}
