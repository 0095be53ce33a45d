"""The store behaves the same on SQLite and PostgreSQL (the `database_url` fixture runs each
test on both): replace and ignore, insertion order (rowid), constraint errors, case-insensitive
IAM names, binary payloads, JSON lookups, transactions, the change count the invoke cache
relies on, schema migrations, and state that outlives a reopen. The SQL rewrites themselves
(store/dialect.py) are checked without a database."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import lambdaplane.store.events  # noqa: F401  (each registers its tables before the open)
import lambdaplane.store.hyperplane  # noqa: F401
import lambdaplane.store.iam  # noqa: F401
import lambdaplane.store.versions  # noqa: F401
from lambdaplane.model.network_acls import AclAssociation, NetworkAcl
from lambdaplane.store import migrations
from lambdaplane.store.db import Database, IntegrityError
from lambdaplane.store.dialect import PostgresDialect, Statement, TableKeys
from lambdaplane.store.ec2 import Ec2Store, Vpc
from lambdaplane.store.ec2_network_acls import NetworkAclStore
from lambdaplane.store.events import EventStore
from lambdaplane.store.hyperplane import EniKey, HyperplaneEniRow, HyperplaneStore
from lambdaplane.store.iam import EntityExists, IamStore, Role
from lambdaplane.store.versions import VersionStore


def _role(name: str) -> Role:
    return Role(name, "AROA" + name.upper(), f"arn:aws:iam::000000000000:role/{name}", "/",
                "2026-12-07T00:00:00Z", "{}")


def test_replace_updates_in_place_and_moves_last_ignore_keeps(db: Database) -> None:
    store = Ec2Store(db)
    store.set_tags("vpc-1", {"a": "1", "b": "2"})
    store.set_tags("vpc-1", {"a": "3"})
    assert store.tags() == {"vpc-1": {"a": "3", "b": "2"}}
    rows = db.conn.execute("SELECT key FROM ec2_tags ORDER BY rowid").fetchall()
    assert [r["key"] for r in rows] == ["b", "a"]  # REPLACE is a delete and an insert
    acls = NetworkAclStore(db)  # a REPLACE conflicting on a UNIQUE column, not the key
    for acl_id in ("acl-1", "acl-2"):
        acls.add_acl(NetworkAcl(acl_id, "us-east-1", "vpc-1", False))
    acls.associate(AclAssociation("aclassoc-1", "acl-1", "subnet-1"))
    acls.associate(AclAssociation("aclassoc-2", "acl-2", "subnet-1"))
    assert [(a.id, a.acl_id) for a in acls.associations()] == [("aclassoc-2", "acl-2")]
    store.mark_region("us-east-1")
    store.mark_region("us-east-1")  # INSERT OR IGNORE
    assert store.region_initialised("us-east-1")
    assert db.conn.execute("SELECT COUNT(*) FROM ec2_regions").fetchone()[0] == 1


def test_insertion_order_and_flags(db: Database) -> None:
    store = Ec2Store(db)
    for vpc_id, default in (("vpc-b", True), ("vpc-a", False), ("vpc-c", False)):
        store.add_vpc(Vpc(vpc_id, "us-east-1", "10.0.0.0/16", default))
    assert [v.id for v in store.vpcs("us-east-1")] == ["vpc-b", "vpc-a", "vpc-c"]
    assert store.vpc("vpc-b").is_default is True and store.vpc("vpc-a").is_default is False


def test_constraint_violation_is_one_error_on_both(db: Database) -> None:
    iam = IamStore(db)
    iam.insert_role(_role("Deployer"))
    with pytest.raises(EntityExists):
        iam.insert_role(_role("deployer"))  # role names are case-insensitive
    assert iam.role("DEPLOYER").name == "Deployer"
    iam.insert_role(_role("admin"))
    iam.insert_role(_role("Builder"))
    assert [r.name for r in iam.roles()] == ["admin", "Builder", "Deployer"]
    with pytest.raises(IntegrityError):
        db.conn.execute("INSERT INTO iam_roles (name, record) VALUES (?, ?)", ("ADMIN", "{}"))
    assert iam.delete_role("ADMIN") and iam.role("admin") is None


def test_binary_payloads_and_transactions(db: Database) -> None:
    events = EventStore(db)
    payload = bytes(range(256)) + b"\x00'%?"
    events.enqueue("req-1", "us-east-1", "f", payload, None)
    [queued] = events.claim("c1", now=1e12, limit=10)
    assert queued.payload == payload and isinstance(queued.id, int)
    with pytest.raises(RuntimeError):
        with db.transaction():
            events.retry_later(queued.id, 1e13, 1, "Boom")
            raise RuntimeError("rolled back")
    assert events.release_claims("c1") == 1
    assert events.claim("c1", now=1e12, limit=10)[0].attempts == 0
    events.finish(queued.id, "succeeded", 1, None,
                  then_enqueue=("req-2", "us-east-1", "dest", b"{}"))
    assert [(e.request_id, e.status) for e in events.recent(name=None)] == \
        [("req-2", "queued"), ("req-1", "succeeded")]
    assert [e.request_id for e in events.recent(region="us-east-1", name="dest")] == ["req-2"]


def test_json_lookups(db: Database) -> None:
    versions = VersionStore(db)
    versions.put_extra("us-east-1", "f", "$LATEST", "url", {"UrlId": "abc", "n": 1})
    versions.put_extra("us-east-1", "g", "$LATEST", "url", {"UrlId": "xyz"})
    versions.put_extra("us-east-1", "f", "$LATEST", "url", {"UrlId": "abd"})  # upsert
    assert versions.find_extra("url", "UrlId", "abd") == {"UrlId": "abd"}
    assert versions.find_extra("url", "UrlId", "abc") is None
    assert [e[1] for e in versions.extras("url", region="us-east-1")] == ["f", "g"]
    assert versions.next_number("us-east-1", "f") == 1
    assert versions.next_number("us-east-1", "f") == 2


def test_change_count_moves_on_writes_only(db: Database) -> None:
    hyperplane = HyperplaneStore(db)
    before = db.conn.total_changes
    hyperplane.all()
    assert db.conn.total_changes == before
    row = HyperplaneEniRow(hyperplane.free_number(), EniKey("us-east-1", "subnet-1", "sg-1"),
                           "vpc-1", "eni-1", "f")
    hyperplane.add(row)
    assert db.conn.total_changes == before + 1
    assert hyperplane.all() == [row] and hyperplane.free_number() == 2
    hyperplane.delete(row.n)
    db.conn.execute("DELETE FROM hyperplane_enis WHERE n=?", (99,))  # no row: no change
    assert db.conn.total_changes == before + 2


def test_migrations_apply_once(tmp_path: Path, database_url: str | None) -> None:
    step = migrations.migration(
        "test-0001-hyperplane-note",
        "ALTER TABLE hyperplane_enis ADD COLUMN note TEXT NOT NULL DEFAULT '';"
        "CREATE INDEX hyperplane_enis_by_vpc ON hyperplane_enis (vpc_id)")
    try:
        db = Database.open(tmp_path, database_url)
        assert step.name in migrations.applied(db)
        db.conn.execute("INSERT INTO hyperplane_enis VALUES (?,?,?,?,?,?,?,?)",  # positional
                        (1, "r", "s", "g", "v", "e", "f", "kept"))
        db.close()
        db = Database.open(tmp_path, database_url)  # not applied twice (it would fail)
        assert migrations.migrate(db) == []
        assert db.conn.execute("SELECT note FROM hyperplane_enis").fetchone()["note"] == "kept"
        db.close()
    finally:
        migrations.MIGRATIONS.remove(step)
    with pytest.raises(ValueError):
        migrations.migration("x", "")
        migrations.migration("x", "")
    migrations.MIGRATIONS[:] = [m for m in migrations.MIGRATIONS if m.name != "x"]


def test_postgres_rewrites() -> None:
    tables = {"acl_assoc": TableKeys(("id", "acl_id", "subnet_id", "rowid"),
                                     (("id",), ("subnet_id",))),
              "regions": TableKeys(("region", "rowid"), (("region",),))}
    d = PostgresDialect(tables.__getitem__)
    replace = d.statement("INSERT OR REPLACE INTO acl_assoc VALUES (?,?,?)")
    assert replace.sql == ("DELETE FROM acl_assoc WHERE (id = %s) OR (subnet_id = %s); "
                           "INSERT INTO acl_assoc (id, acl_id, subnet_id) VALUES (%s,%s,%s)")
    assert replace.order == (0, 2, 0, 1, 2)
    assert d.statement("INSERT OR REPLACE INTO acl_assoc (subnet_id, acl_id) VALUES (?, ?)") \
        == Statement("DELETE FROM acl_assoc WHERE (subnet_id = %s); "
                     "INSERT INTO acl_assoc (subnet_id, acl_id) VALUES (%s, %s)", (0, 0, 1))
    with pytest.raises(ValueError):
        d.statement("INSERT OR REPLACE INTO acl_assoc VALUES (?, 'x', ?)")
    assert d.statement("insert or ignore into regions values (?)").sql == \
        "INSERT INTO regions (region) values (%s) ON CONFLICT DO NOTHING"
    assert d.statement("SELECT '?%' || ? WHERE a IS NOT ? AND b IS ? AND c LIKE 'x%'").sql == \
        "SELECT '?%%' || %s WHERE a IS DISTINCT FROM %s AND b IS NOT DISTINCT FROM %s " \
        "AND c LIKE 'x%%'"
    with pytest.raises(ValueError):
        d.statement("SELECT ?1")
    assert d.script("CREATE TABLE u (n INTEGER PRIMARY KEY, m INTEGER)") == \
        "CREATE TABLE u (n BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, m BIGINT,\n" \
        "  rowid BIGINT GENERATED BY DEFAULT AS IDENTITY)"
    ddl = d.script("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY AUTOINCREMENT, "
                   "name TEXT PRIMARY KEY COLLATE NOCASE, body BLOB, at REAL, "
                   "state TEXT DEFAULT 'INTEGER'); -- a note")
    assert ddl == ("CREATE TABLE IF NOT EXISTS t (id BIGINT GENERATED BY DEFAULT AS IDENTITY "
                   "PRIMARY KEY, name TEXT COLLATE nocase PRIMARY KEY, body BYTEA, "
                   "at DOUBLE PRECISION, state TEXT COLLATE \"C\" DEFAULT 'INTEGER',\n"
                   "  rowid BIGINT GENERATED BY DEFAULT AS IDENTITY); ")


def test_positional_insert_after_add_column(db: Database) -> None:
    db.conn.execute("INSERT INTO ec2_regions VALUES (?)", ("r1",))
    db.conn.execute("ALTER TABLE ec2_regions ADD COLUMN note TEXT")
    db.conn.execute("INSERT INTO ec2_regions VALUES (?, ?)", ("r2", "second"))
    rows = db.conn.execute("SELECT region, note FROM ec2_regions ORDER BY rowid").fetchall()
    assert [tuple(r) for r in rows] == [("r1", None), ("r2", "second")]


def test_two_servers_opening_one_new_database_create_it_once(tmp_path: Path,
                                                             database_url: str | None) -> None:
    if database_url is None:
        pytest.skip("one SQLite file belongs to one data dir (its lock)")
    with ThreadPoolExecutor(2) as pool:  # the advisory lock orders them
        opened = list(pool.map(lambda d: Database.open(tmp_path / d, database_url), "ab"))
    try:
        everything = [m.name for m in migrations.MIGRATIONS]  # each applied once, by one
        assert [migrations.applied(d) for d in opened] == [everything, everything]
        Ec2Store(opened[0]).mark_region("us-east-1")
        assert Ec2Store(opened[1]).region_initialised("us-east-1")
    finally:
        for d in opened:
            d.close()


def test_glob_conditions_as_like() -> None:
    """The log store's GLOB filters (service/filter_pattern.py) read as LIKE on PostgreSQL:
    `*` and `?` become `%` and `_`, a one-character bracket is that character, and LIKE's
    own specials are escaped; other placeholders and literals keep their places."""
    d = PostgresDialect(lambda table: TableKeys((), ()))
    sql, params = d.glob_as_like(
        "e.ts >= ? AND e.message GLOB ? AND (e.message NOT GLOB ? OR e.message GLOB '*{*')",
        [5, "*50%_[*]*", "*a\\b[?]*"])
    assert sql == "e.ts >= ? AND e.message LIKE ? AND (e.message NOT LIKE ? OR " \
                  "e.message LIKE '%{%')"
    assert params == [5, "%50\\%\\_*%", "%a\\\\b?%"]
    with pytest.raises(ValueError):
        d.glob_as_like("m GLOB ?", ["[ab]"])
