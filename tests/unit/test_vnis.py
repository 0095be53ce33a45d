"""VNIs allocated in the store (store/vnis.py) on SQLite and PostgreSQL: every VPC gets its
own (1,000 VPCs, 1,000 VNIs — the id hash would have collided), also when two connections
create VPCs at once; the row goes with the VPC and its number is not handed out again at
once; a VPC made before the table gets one in the migration; the fabric takes the VNI given."""
from __future__ import annotations

import threading
from pathlib import Path

from lambdaplane.model.ec2 import Vpc
from lambdaplane.net import fabric
from lambdaplane.net.names import Names
from lambdaplane.store import migrations
from lambdaplane.store.db import Database
from lambdaplane.store.ec2 import Ec2Store
from lambdaplane.store.vnis import VNI_MAX, VniStore


def _vpc(n: int) -> Vpc:
    return Vpc(f"vpc-{n:017x}", "us-east-1", "10.0.0.0/16", False)


def test_every_vpc_gets_its_own_vni(db: Database) -> None:
    ec2, vnis = Ec2Store(db), VniStore(db)
    with db.transaction():
        for n in range(1000):
            ec2.add_vpc(_vpc(n))
    given = vnis.all()
    assert len(given) == 1000 and len(set(given.values())) == 1000
    assert all(1 <= v <= VNI_MAX for v in given.values())
    assert vnis.allocate(_vpc(7).id) == given[_vpc(7).id]  # asked again: the same


def test_concurrent_allocators_never_share_a_vni(tmp_path: Path,
                                                 database_url: str | None) -> None:
    start = threading.Barrier(2, timeout=60)  # a creator that fails breaks it: no hang

    def creator(first: int) -> None:
        database = Database.open(tmp_path, database_url)  # its own connection
        try:
            start.wait()
            ec2 = Ec2Store(database)
            for n in range(first, first + 150):
                ec2.add_vpc(_vpc(n))
        finally:
            database.close()

    threads = [threading.Thread(target=creator, args=(f,)) for f in (0, 1000)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    database = Database.open(tmp_path, database_url)
    try:
        given = VniStore(database).all()
    finally:
        database.close()
    assert len(given) == 300 and len(set(given.values())) == 300


def test_a_deleted_vpcs_vni_goes_with_it_and_is_not_reused_at_once(db: Database) -> None:
    ec2, vnis = Ec2Store(db), VniStore(db)
    for n in range(3):
        ec2.add_vpc(_vpc(n))
    old = vnis.vni_of(_vpc(2).id)
    ec2.delete_vpc(_vpc(2).id)
    assert vnis.vni_of(_vpc(2).id) is None and _vpc(2).id not in vnis.all()
    ec2.add_vpc(_vpc(3))
    assert vnis.vni_of(_vpc(3).id) == old + 1  # the next number, not the freed one


def test_a_full_counter_reuses_the_lowest_gap(db: Database) -> None:
    ec2, vnis = Ec2Store(db), VniStore(db)
    ec2.add_vpc(_vpc(0))
    db.conn.execute("UPDATE vpc_vnis SET vni=? WHERE vpc_id=?", (VNI_MAX, _vpc(0).id))
    db.conn.execute("UPDATE vpc_vni_counter SET last=?", (VNI_MAX,))  # the counter is full
    ec2.add_vpc(_vpc(1))
    assert vnis.vni_of(_vpc(1).id) == 1
    ec2.add_vpc(_vpc(2))
    assert vnis.vni_of(_vpc(2).id) == 2


def test_vpcs_from_before_the_table_get_vnis_in_the_migration(db: Database) -> None:
    ec2 = Ec2Store(db)
    for n in range(3):
        ec2.add_vpc(_vpc(n))
    # as a database of the old layout: VPCs without VNIs, the migration not yet applied
    db.conn.execute("DELETE FROM vpc_vnis WHERE vpc_id != ?", (_vpc(1).id,))
    db.conn.execute("DELETE FROM schema_migrations WHERE name=?",
                    ("0002-vpc-vnis-for-existing-vpcs",))
    assert migrations.migrate(db) == ["0002-vpc-vnis-for-existing-vpcs"]
    given = VniStore(db).all()
    assert set(given) == {_vpc(n).id for n in range(3)} and len(set(given.values())) == 3


def test_the_fabric_takes_the_vni_given() -> None:
    spec = fabric.with_store_vnis(fabric.desired_fabric(
        Names("a1b"), Path("/data"), "10.0.0.1", [],
        [("vpc-1", ["10.1.0.0/24"]), ("vpc-2", ["10.2.0.0/24"])]), {"vpc-1": 7})
    by_id = {v.vpc_id: v.vni for v in spec.vpcs}
    assert by_id == {"vpc-1": 7, "vpc-2": fabric.vni_of_vpc("vpc-2")}  # vpc-2: the fallback
    assert [v.vni for v in spec.vpcs] == sorted(by_id.values())  # still in VNI order
