"""One host's side of port blocks (service/port_block_leases.py) on SQLite and PostgreSQL: two
hosts each get their own SNAT range of one ENI, each one's reply steering names the other's
block (by hop) and not its own, a VPC's ENIs that a host does not run are steered too, release
takes a block out of the others' steering, and the 65,000-flow rule counts across hosts (and a
host that could get no block has no room)."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from lambdaplane.net.hyperplane.port_blocks import RemoteBlock
from lambdaplane.service.port_block_leases import EniAddress, NoFreeBlock, PortBlockLeases
from lambdaplane.store.db import Database
from lambdaplane.store.hosts import HostStore
from lambdaplane.store.port_blocks import PortBlockStore

E1, E2 = EniAddress("eni-0aaaaaaaaaaaaaaa1", "10.60.1.50"), EniAddress("eni-0bbbbbbbbbbbbbbb2",
                                                                       "10.60.2.50")


@pytest.fixture
def db(tmp_path: Path, database_url: str | None) -> Iterator[Database]:
    database = Database.open(tmp_path, database_url)
    try:
        hosts = HostStore(database)
        for host_id in ("lpa1", "lpb1", "lpc1"):
            hosts.register(host_id, host_id, "unix:/x", host_id, now=1e10)
        yield database
    finally:
        database.close()


def _leases(db: Database, host_id: str, block_size: int = 4096) -> PortBlockLeases:
    return PortBlockLeases(PortBlockStore(db, block_size), host_id, flow_limit=65000,
                           clock=lambda: 5.0)


def test_two_hosts_get_their_ranges_and_steer_to_each_other(db: Database) -> None:
    a, b, c = (_leases(db, h) for h in ("lpa1", "lpb1", "lpc1"))
    assert a.ports_for(E1.eni_id) == "1024-5119"
    assert b.ports_for(E1.eni_id) == "5120-9215"
    assert a.ports_for(E1.eni_id) == "1024-5119"  # held, not leased again
    assert b.ports_for(E2.eni_id) == "1024-5119"  # another ENI: its own blocks
    assert a.held() == {E1.eni_id: "1024-5119"}
    steer_a = a.steering("vpc-1", [E1, E2])
    steer_b = b.steering("vpc-1", [E1, E2])
    hop_a, hop_b = steer_a.own_hop, steer_b.own_hop
    assert hop_a != hop_b
    assert steer_a.remote == (RemoteBlock(E1.address, 5120, 9215, hop_b),
                              RemoteBlock(E2.address, 1024, 5119, hop_b))
    assert steer_b.remote == (RemoteBlock(E1.address, 1024, 5119, hop_a),)
    # a host that runs neither ENI still steers every block of the VPC's ENIs
    assert len(c.steering("vpc-1", [E1, E2]).remote) == 3
    # b's last environment of E1 went: its block leaves a's steering
    assert b.release(E1.eni_id) and not b.release(E1.eni_id)
    assert a.steering("vpc-1", [E1, E2]).remote == (RemoteBlock(E2.address, 1024, 5119, hop_b),)


def test_the_flow_rule_counts_across_hosts(db: Database) -> None:
    a, b, c = (_leases(db, h, block_size=40000) for h in ("lpa1", "lpb1", "lpc1"))
    a.ports_for(E1.eni_id)
    b.ports_for(E1.eni_id)
    a.record_flows({E1.eni_id: 30000})
    assert a.has_room(E1.eni_id) and b.has_room(E1.eni_id)
    b.record_flows({E1.eni_id: 35000})
    assert not a.has_room(E1.eni_id) and not b.has_room(E1.eni_id)
    b.record_flows({E1.eni_id: 100})
    assert a.has_room(E1.eni_id)
    # two blocks of 40,000 cover the range: a third host has no ports to translate with
    assert not c.has_room(E1.eni_id)
    with pytest.raises(NoFreeBlock):
        c.ports_for(E1.eni_id)
