"""Hyperplane port blocks across hosts (store/port_blocks.py) on SQLite and PostgreSQL: a host
keeps its block of an ENI, blocks never overlap and stay inside 1024-65535 (so the ENI's ports
across hosts stay under 65,000 per destination), a full ENI refuses another host, release and
re-lease, an expired host's blocks and hop go with its lease row, flows summed across hosts
for the 65,000-flow rule, and concurrent claimers on separate connections never share a
block."""
from __future__ import annotations

import threading
from pathlib import Path

import pytest

from lambdaplane.store.db import Database
from lambdaplane.store.hosts import HostStore
from lambdaplane.store.port_blocks import (
    NoFreeBlock,
    PortBlock,
    PortBlockError,
    PortBlockStore,
)

ENI = "eni-0123456789abcdef0"


def _hosts(db: Database, count: int, now: float = 100.0) -> list[str]:
    hosts = HostStore(db, lease_s=5.0)
    ids = [f"lph{i}" for i in range(count)]
    for i, host_id in enumerate(ids):
        hosts.register(host_id, f"host-{i}", f"unix:/h{i}/agent.sock", f"h{i}", now=now)
    return ids


def test_each_host_keeps_one_block_and_blocks_never_overlap(db: Database) -> None:
    store = PortBlockStore(db)  # 4,096 ports a block
    ids = _hosts(db, 3)
    a = store.lease(ENI, ids[0], now=1.0)
    assert (a.block, a.ports, a.size) == (0, "1024-5119", 4096)
    assert store.lease(ENI, ids[0], now=2.0) == a  # the same block again, not a second one
    b = store.lease(ENI, ids[1], now=3.0)
    assert (b.block, b.ports) == (1, "5120-9215")
    assert [x.host_id for x in store.of_eni(ENI)] == ids[:2]
    assert store.of_host(ids[1]) == [b]
    # another ENI starts from block 0 again
    assert store.lease("eni-0ffffffffffffffff", ids[1], now=4.0).block == 0
    assert set(store.of_enis([ENI, "eni-none"])) == {ENI, "eni-none"}
    assert store.of_enis([ENI])[ENI] == [a, b]


def test_the_range_is_cut_whole_and_a_full_eni_refuses_another_host(db: Database) -> None:
    store = PortBlockStore(db, block_size=20000)
    assert store.blocks_per_eni == 4  # 64,512 ports: three of 20,000 and one of 4,512
    ids = _hosts(db, 5)
    blocks = [store.lease(ENI, host_id, now=1.0) for host_id in ids[:4]]
    assert [b.ports for b in blocks] == ["1024-21023", "21024-41023", "41024-61023",
                                         "61024-65535"]
    assert sum(b.size for b in blocks) == 64512 < 65000
    with pytest.raises(NoFreeBlock):
        store.lease(ENI, ids[4], now=2.0)
    # a host gives its block back: the next host gets that one
    assert store.release(ENI, ids[1])
    assert not store.release(ENI, ids[1])
    assert store.lease(ENI, ids[4], now=3.0).ports == "21024-41023"
    assert store.release_eni(ENI) == 4
    assert store.of_eni(ENI) == []


def test_an_expired_host_frees_its_blocks_and_hop(db: Database) -> None:
    hosts = HostStore(db, lease_s=5.0)
    store = PortBlockStore(db)
    ids = _hosts(db, 2, now=100.0)
    assert (store.hop(ids[0]), store.hop(ids[1]), store.hop(ids[0])) == (1, 2, 1)
    store.lease(ENI, ids[0], now=100.0)
    store.lease(ENI, ids[1], now=100.0)
    hosts.renew(ids[0], 104.0, load=0, warm=set())
    assert [h.id for h in hosts.expire(now=105.5)] == [ids[1]]
    assert [b.host_id for b in store.of_eni(ENI)] == [ids[0]]
    assert store.hops() == {ids[0]: 1}
    # its block and hop number are free for the next host
    c = hosts.register("lph2", "host-2", "unix:/h2/agent.sock", "h2", now=106.0).id
    assert store.lease(ENI, c, now=106.0).block == 1
    assert store.hop(c) == 2
    # a host without a lease row gets nothing
    with pytest.raises(PortBlockError):
        store.lease(ENI, "lpgone", now=107.0)
    with pytest.raises(PortBlockError):
        store.hop("lpgone")
    assert hosts.remove(ids[0])
    assert [b.host_id for b in store.of_eni(ENI)] == [c]
    # an agent restarting under its id takes over its row: its old blocks are gone with it
    hosts.register(c, "host-2", "unix:/h2/agent.sock", "h2", now=107.0)
    assert store.of_eni(ENI) == [] and store.hops() == {}


def test_flows_are_counted_across_hosts(db: Database) -> None:
    store = PortBlockStore(db)
    ids = _hosts(db, 2)
    assert not store.record_flows(ENI, ids[0], 10)  # no block, nothing recorded
    store.lease(ENI, ids[0], now=1.0)
    store.lease(ENI, ids[1], now=1.0)
    assert store.record_flows(ENI, ids[0], 40000)
    assert store.has_room(ENI, 65000)
    assert store.record_flows(ENI, ids[1], 25000)
    assert store.flows(ENI) == 65000
    assert not store.has_room(ENI, 65000)
    assert store.flows("eni-none") == 0


def test_another_block_size_is_refused_not_overlapped(db: Database) -> None:
    ids = _hosts(db, 2)
    PortBlockStore(db, block_size=4096).lease(ENI, ids[0], now=1.0)
    with pytest.raises(PortBlockError, match="another block size"):
        PortBlockStore(db, block_size=1024).lease(ENI, ids[1], now=1.0)
    with pytest.raises(ValueError):
        PortBlockStore(db, block_size=0)


def test_concurrent_hosts_never_share_a_block(tmp_path: Path, database_url: str | None
                                              ) -> None:
    """Eight claimers, each on its own connection (as on separate hosts), lease blocks of the
    same ENIs at once: every ENI ends with one block per host and no block twice."""
    setup = Database.open(tmp_path, database_url)
    try:
        ids = _hosts(setup, 8)
    finally:
        setup.close()
    enis = [f"eni-{i:017x}" for i in range(6)]
    results: dict[str, list[PortBlock]] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(len(ids))

    def claim(host_id: str) -> None:
        database = Database.open(tmp_path, database_url)
        try:
            store = PortBlockStore(database, block_size=8000)  # 9 blocks for 8 hosts
            start.wait()
            results[host_id] = [store.lease(eni, host_id, now=1.0) for eni in enis]
            store.hop(host_id)
        except BaseException as e:  # reported below
            errors.append(e)
        finally:
            database.close()

    threads = [threading.Thread(target=claim, args=(h,)) for h in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    check = Database.open(tmp_path, database_url)
    try:
        store = PortBlockStore(check, block_size=8000)
        for eni in enis:
            held = store.of_eni(eni)
            assert sorted(b.host_id for b in held) == sorted(ids)
            assert len({b.block for b in held}) == len(ids)
            assert {b for b in held} == {results[b.host_id][enis.index(eni)] for b in held}
        assert sorted(store.hops().values()) == list(range(1, len(ids) + 1))
    finally:
        check.close()
