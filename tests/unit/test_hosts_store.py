"""Hosts and leases (store/hosts.py) on SQLite and PostgreSQL: register, renew with load and
warm functions, expiry (placement ignores an expired host; `expire` deletes it and what is
assigned to it), a re-registration taking over, and removal."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from lambdaplane.store.db import Database
from lambdaplane.store.hosts import HostStore


@pytest.fixture
def hosts(tmp_path: Path, database_url: str | None) -> Iterator[HostStore]:
    database = Database.open(tmp_path, database_url)
    try:
        yield HostStore(database, lease_s=5.0)
    finally:
        database.close()


def test_register_renew_and_warm_functions(hosts: HostStore) -> None:
    hosts.register("lpa1", "host-a", "unix:/a/agent.sock", "a1", now=100.0)
    hosts.register("lpb1", "host-b", "unix:/b/agent.sock", "b1", now=100.0)
    assert [h.name for h in hosts.live(now=101.0)] == ["host-a", "host-b"]
    assert hosts.renew("lpa1", 102.0, load=3, warm={("us-east-1", "f"), ("us-east-1", "g:1")})
    a = hosts.live(now=106.0)
    assert [(h.name, h.load, h.lease_expires) for h in a] == [("host-a", 3, 107.0)]
    assert [h.name for h in hosts.warm_for(("us-east-1", "f"), now=103.0)] == ["host-a"]
    assert hosts.warm_for(("us-east-1", "h"), now=103.0) == []
    assert hosts.renew("lpa1", 103.0, load=0, warm={("us-east-1", "g:1")})
    assert hosts.warm_functions("lpa1") == {("us-east-1", "g:1")}
    assert hosts.warm_for(("us-east-1", "f"), now=103.0) == []


def test_an_expired_lease_is_ignored_then_deleted_with_its_assignments(
        hosts: HostStore) -> None:
    hosts.register("lpa1", "host-a", "unix:/a/agent.sock", "a1", now=100.0)
    hosts.register("lpb1", "host-b", "unix:/b/agent.sock", "b1", now=100.0)
    hosts.renew("lpb1", 100.0, load=0, warm={("us-east-1", "f")})
    hosts.renew("lpa1", 104.0, load=0, warm=set())
    # b's lease ran out at 105: placement no longer sees it, though its row is still there
    assert [h.name for h in hosts.live(now=105.5)] == ["host-a"]
    assert hosts.warm_for(("us-east-1", "f"), now=105.5) == []
    assert [h.name for h in hosts.expire(now=105.5)] == ["host-b"]
    assert [h.name for h in hosts.all()] == ["host-a"]
    assert hosts.warm_functions("lpb1") == set()
    # the agent comes back: its renew says so, it registers again
    assert not hosts.renew("lpb1", 106.0, load=0, warm=set())
    hosts.register("lpb1", "host-b", "unix:/b/agent.sock", "b1", now=106.0)
    assert [h.name for h in hosts.live(now=106.5)] == ["host-a", "host-b"]


def test_register_takes_over_a_name_and_remove_deletes(hosts: HostStore) -> None:
    hosts.register("lpa1", "host-a", "unix:/a/agent.sock", "a1", now=100.0)
    hosts.renew("lpa1", 100.0, load=1, warm={("us-east-1", "f")})
    # a new data dir (new instance) under the same host name replaces the old row
    hosts.register("lpa2", "host-a", "unix:/a2/agent.sock", "a2", now=101.0)
    assert [(h.id, h.address) for h in hosts.all()] == [("lpa2", "unix:/a2/agent.sock")]
    held = hosts.by_name("host-a")
    assert held is not None and held.id == "lpa2" and hosts.by_name("host-z") is None
    assert hosts.warm_functions("lpa1") == set()
    assert hosts.remove("lpa2")
    assert not hosts.remove("lpa2")
    assert hosts.all() == []


def test_renew_with_the_warm_set_written_updates_only_the_lease(hosts: HostStore) -> None:
    """The agent's renewal every second: when the warm functions are the ones it last wrote,
    one UPDATE (lease and load); the warm rows stay; a deleted row still says 'register'."""
    hosts.register("lpa1", "host-a", "unix:/a/agent.sock", "a1", now=100.0)
    warm = {("us-east-1", "f")}
    assert hosts.renew("lpa1", 101.0, load=0, warm=warm, written=set())
    changes = hosts.db.conn.total_changes
    assert hosts.renew("lpa1", 102.0, load=2, warm=warm, written=warm)
    assert hosts.db.conn.total_changes == changes + 1  # the hosts row, nothing else
    assert [(h.load, h.lease_expires) for h in hosts.live(now=102.0)] == [(2, 107.0)]
    assert hosts.warm_functions("lpa1") == warm
    assert hosts.warm_by_host() == {"lpa1": warm}
    # a stale `written` (the row was rewritten by someone else) is still corrected on change
    assert hosts.renew("lpa1", 103.0, load=0, warm=set(), written=warm)
    assert hosts.warm_by_host() == {}
    hosts.remove("lpa1")
    assert not hosts.renew("lpa1", 104.0, load=0, warm=set(), written=set())


def test_expire_with_nothing_expired_writes_nothing(hosts: HostStore) -> None:
    hosts.register("lpa1", "host-a", "unix:/a/agent.sock", "a1", now=100.0)
    hosts.register("lpb1", "host-b", "unix:/b/agent.sock", "b1", now=100.0)
    hosts.renew("lpb1", 100.0, load=0, warm={("us-east-1", "f")})
    changes = hosts.db.conn.total_changes
    assert hosts.expire(now=104.0) == []
    assert hosts.db.conn.total_changes == changes
    assert [h.name for h in hosts.expire(now=105.0)] == ["host-a", "host-b"]
    assert hosts.all() == [] and hosts.warm_by_host() == {}
