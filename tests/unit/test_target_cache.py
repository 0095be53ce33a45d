"""service/target_cache.py: what an invoke looks up is remembered only until the next write —
every configuration, code, version, alias and concurrency change is seen by the next invoke
(FunctionService.target and serving_spec against a real SQLite store and code dir)."""
from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from lambdaplane.config import Settings
from lambdaplane.errors import AwsError
from lambdaplane.service.functions import FunctionService
from lambdaplane.service.target_cache import TargetCache
from lambdaplane.store.db import Database
from tests.harness import make_zip
from tests.unit.test_function_service import REGION, RetireRecorder, _params, _settled


@pytest.fixture
async def service(tmp_path: Path, database_url: str | None):
    db = Database.open(tmp_path, database_url)
    svc = FunctionService(Settings(data_dir=tmp_path), db, RetireRecorder())
    await svc.start()
    yield svc
    await svc.stop()
    db.close()


def test_cache_remembers_until_a_write_and_never_an_error() -> None:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.execute("CREATE TABLE t (v INTEGER)")
    cache = TargetCache(conn)
    loads: list[int] = []

    def load() -> int:
        loads.append(1)
        return len(loads)

    assert cache.get(("k",), load) == 1
    assert cache.get(("k",), load) == 1 and len(loads) == 1
    conn.execute("INSERT INTO t VALUES (1)")  # any write forgets everything
    assert cache.get(("k",), load) == 2

    def failing() -> int:
        loads.append(1)
        raise KeyError("gone")

    for _ in range(2):
        with pytest.raises(KeyError):
            cache.get(("bad",), failing)
    assert len(loads) == 4  # the error was not remembered

    def writing() -> int:  # a load that writes is not remembered either
        conn.execute("INSERT INTO t VALUES (2)")
        loads.append(1)
        return len(loads)

    assert cache.get(("w",), writing) == 5
    assert cache.get(("w",), writing) == 6


async def test_the_next_invoke_sees_configuration_and_code_updates(service):
    await service.create(REGION, _params())
    first, arn = service.target(REGION, "f1")
    assert arn == first.arn
    assert service.target(REGION, "f1")[0] is first  # remembered
    spec = service.serving_spec(first)
    assert service.serving_spec(first) is spec

    await service.update_configuration(REGION, {"FunctionName": "f1", "Timeout": 9,
                                                "Environment": {"Variables": {"A": "1"}}})
    await _settled(service, "f1")
    after, _ = service.target(REGION, "f1")
    assert (after.timeout, after.environment) == (9, {"A": "1"})
    new_spec = service.serving_spec(after)
    assert new_spec.revision_id == after.revision_id != spec.revision_id
    assert (new_spec.timeout_s, new_spec.environment) == (9, {"A": "1"})

    await service.update_code(REGION, {"FunctionName": "f1",
                                       "ZipFile": make_zip({"app.py": "# new code\n"})})
    await _settled(service, "f1")
    coded, _ = service.target(REGION, "f1")
    assert coded.code_hex != after.code_hex
    assert (service.serving_spec(coded).code_dir / "app.py").read_text() == "# new code\n"

    service.put_concurrency(REGION, "f1", 5)
    assert service.target(REGION, "f1")[0].reserved_concurrency == 5


async def test_the_next_invoke_sees_versions_and_alias_changes(service):
    await service.create(REGION, _params())
    v1 = await service.versions.publish(REGION, "f1")
    assert service.target(REGION, "f1", "1")[0].version == "1"
    with pytest.raises(AwsError) as err:
        service.target(REGION, "f1", "2")
    assert err.value.code == "ResourceNotFoundException"

    await service.update_configuration(REGION, {"FunctionName": "f1", "Timeout": 7})
    await _settled(service, "f1")
    v2 = await service.versions.publish(REGION, "f1")
    record, arn = service.target(REGION, "f1:2")
    assert (record.version, record.timeout, arn) == ("2", 7, v2.arn)

    with pytest.raises(AwsError):
        service.target(REGION, "f1", "live")
    alias = service.aliases.create(REGION, "f1", "live", "1")
    record, arn = service.target(REGION, "f1", "live")
    assert (record.version, record.revision_id, arn) == ("1", v1.revision_id, alias.arn)
    service.aliases.update(REGION, "f1", "live", {"FunctionVersion": "2"})
    assert service.target(REGION, "f1", "live")[0].version == "2"
    # weights are drawn for every invoke, not remembered with the alias
    service.aliases.update(REGION, "f1", "live",
                           {"RoutingConfig": {"AdditionalVersionWeights": {"1": 0.5}}})
    seen = {service.target(REGION, "f1", "live")[0].version for _ in range(200)}
    assert seen == {"1", "2"}
    service.aliases.delete(REGION, "f1", "live")
    with pytest.raises(AwsError):
        service.target(REGION, "f1", "live")

    await service.delete(REGION, "f1")
    for qualifier in (None, "1"):
        with pytest.raises(AwsError) as err:
            service.target(REGION, "f1", qualifier)
        assert err.value.code == "ResourceNotFoundException"


async def test_an_update_in_progress_serves_the_previous_configuration(service):
    """serving_spec follows the lifecycle: the previous configuration while an update is
    InProgress, the new one once it settled."""
    await service.create(REGION, _params())
    before = service.serving_spec(service.target(REGION, "f1")[0])
    await service.update_configuration(REGION, {"FunctionName": "f1", "MemorySize": 256})
    during, _ = service.target(REGION, "f1")
    assert during.last_update_status == "InProgress"  # settling runs in the background
    assert service.serving_spec(during).memory_mb == 128
    record = await _settled(service, "f1")
    after = service.serving_spec(service.target(REGION, "f1")[0])
    assert (before.memory_mb, after.memory_mb) == (128, 256)
    assert after.revision_id == record.revision_id
