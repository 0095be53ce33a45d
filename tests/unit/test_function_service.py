"""service/functions.py (with function_config.py and function_lifecycle.py) against a real
store (SQLite and PostgreSQL: the `database_url` fixture) and code dir; execution is a fake that records which functions were retired."""
from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from lambdaplane.config import Settings
from lambdaplane.errors import AwsError
from lambdaplane.service.functions import FunctionService
from lambdaplane.store.db import Database
from lambdaplane.store.functions import FunctionRecord
from tests.harness import make_zip

ROLE = "arn:aws:iam::000000000000:role/lambda"
REGION = "us-east-1"


class RetireRecorder:
    def __init__(self) -> None:
        self.retired: list[tuple[str, str]] = []

    async def retire(self, key: tuple[str, str]) -> None:
        self.retired.append(key)


def _params(name: str = "f1", **extra) -> dict:
    return {"FunctionName": name, "Runtime": "python3.11", "Handler": "app.handler",
            "Role": ROLE, "Code": {"ZipFile": make_zip({"app.py": f"# {name}\n"})}, **extra}


@pytest.fixture
async def service(tmp_path: Path, database_url: str | None):
    db = Database.open(tmp_path, database_url)
    svc = FunctionService(Settings(data_dir=tmp_path), db, RetireRecorder())
    await svc.start()
    yield svc
    await svc.stop()
    db.close()


async def _settled(svc: FunctionService, name: str) -> FunctionRecord:
    for _ in range(200):
        record = svc.get(REGION, name)
        if record.state != "Pending" and record.last_update_status != "InProgress":
            return record
        await asyncio.sleep(0.01)
    raise AssertionError(f"{name} never settled")


async def test_create_is_active_with_aws_fields(service):
    record = await service.create(REGION, _params(Environment={"Variables": {"GREETING": "hi"}},
                                                  Timeout=30, MemorySize=512))
    assert record.state == "Active" and record.last_update_status == "Successful"
    assert record.arn == "arn:aws:lambda:us-east-1:000000000000:function:f1"
    assert record.environment == {"GREETING": "hi"}
    assert len(record.code_sha256) == 44 and record.code_size > 0
    assert record.last_modified.endswith("+0000") and record.last_modified[23] == "+"
    spec = service.spec_for(record)
    assert spec.key == (REGION, "f1") and spec.revision_id == record.revision_id
    assert (spec.code_dir / "app.py").read_text() == "# f1\n"
    assert (spec.memory_mb, spec.timeout_s) == (512, 30)


async def test_names_arns_and_qualifiers(service):
    await service.create(REGION, _params())
    for ref in ("f1", "000000000000:function:f1", "function:f1",
                "arn:aws:lambda:us-east-1:000000000000:function:f1",
                "arn:aws:lambda:us-east-1:000000000000:function:f1:$LATEST", "f1:$LATEST"):
        assert service.get(REGION, ref).name == "f1"
    assert service.get(REGION, "f1", "$LATEST").name == "f1"
    with pytest.raises(AwsError) as err:
        service.get(REGION, "f1", "7")
    assert (err.value.code, err.value.status) == ("ResourceNotFoundException", 404)
    assert err.value.message == ("Function not found: "
                                 "arn:aws:lambda:us-east-1:000000000000:function:f1:7")
    with pytest.raises(AwsError) as err:
        service.get(REGION, "f1:$LATEST", "other")
    assert err.value.code == "InvalidParameterValueException"
    with pytest.raises(AwsError) as err:  # functions are per region
        service.get("eu-west-1", "f1")
    assert err.value.message == ("Function not found: "
                                 "arn:aws:lambda:eu-west-1:000000000000:function:f1")
    with pytest.raises(AwsError):
        service.get(REGION, "arn:aws:lambda:eu-west-1:000000000000:function:f1")


async def test_duplicate_is_a_conflict(service):
    await service.create(REGION, _params())
    with pytest.raises(AwsError) as err:
        await service.create(REGION, _params())
    assert (err.value.code, err.value.status, err.value.message) == (
        "ResourceConflictException", 409, "Function already exist: f1")
    other_region = await service.create("us-west-2", _params())
    assert other_region.arn.startswith("arn:aws:lambda:us-west-2:")


@pytest.mark.parametrize("extra,fragment", [
    ({"Runtime": "python3.8"}, "The runtime parameter of python3.8 is no longer supported"),
    ({"MemorySize": 10241}, "less than or equal to 10240"),
    ({"Timeout": 901}, "less than or equal to 900"),
    ({"Environment": {"Variables": {"AWS_REGION": "x", "LAMBDA_TASK_ROOT": "y"}}},
     "Reserved keys used in this request: AWS_REGION, LAMBDA_TASK_ROOT"),
    ({"Environment": {"Variables": {"BIG": "x" * 4100}}}, "exceeded the 4KB limit"),
    ({"Code": {"S3Bucket": "b", "S3Key": "k"}}, "Code.ZipFile"),
    ({"Handler": None}, "Runtime and Handler are mandatory"),
])
async def test_invalid_configuration(service, extra, fragment):
    params = {k: v for k, v in {**_params(), **extra}.items() if v is not None}
    with pytest.raises(AwsError) as err:
        await service.create(REGION, params)
    assert err.value.code == "InvalidParameterValueException"
    assert fragment in err.value.message
    assert service.store.get(REGION, "f1") is None


async def test_updates_change_revision_retire_and_settle(service):
    created = await service.create(REGION, _params())
    updated = await service.update_configuration(REGION, {"FunctionName": "f1",
                                                          "MemorySize": 1024})
    assert updated.last_update_status == "InProgress"
    assert updated.revision_id != created.revision_id
    assert service.environments.retired == [(REGION, "f1")]
    settled = await _settled(service, "f1")
    assert settled.last_update_status == "Successful" and settled.memory_size == 1024
    code = await service.update_code(REGION, {"FunctionName": "f1",
                                              "ZipFile": make_zip({"app.py": "# v2\n"})})
    assert code.code_sha256 != created.code_sha256
    assert code.revision_id != updated.revision_id
    assert (service.spec_for(code).code_dir / "app.py").read_text() == "# v2\n"
    assert service.environments.retired == [(REGION, "f1")] * 2
    with pytest.raises(AwsError) as err:  # still InProgress right after
        await service.update_configuration(REGION, {"FunctionName": "f1", "Timeout": 5})
    assert err.value.code == "ResourceConflictException"
    assert "An update is in progress for resource: " in err.value.message
    await _settled(service, "f1")
    with pytest.raises(AwsError) as err:
        await service.update_configuration(REGION, {"FunctionName": "f1", "Timeout": 5,
                                                    "RevisionId": created.revision_id})
    assert (err.value.code, err.value.status) == ("PreconditionFailedException", 412)


async def test_delete_retires_and_forgets(service):
    await service.create(REGION, _params())
    await service.delete(REGION, "arn:aws:lambda:us-east-1:000000000000:function:f1")
    assert service.environments.retired == [(REGION, "f1")]
    with pytest.raises(AwsError) as err:
        await service.delete(REGION, "f1")
    assert err.value.code == "ResourceNotFoundException"


async def test_list_pages_by_marker(service):
    for i in range(5):
        await service.create(REGION, _params(f"fn{i}"))
    seen, marker = [], None
    while True:
        page, marker = service.list(REGION, marker, 2)
        seen += [r.name for r in page]
        if marker is None:
            break
    assert seen == [f"fn{i}" for i in range(5)]


async def test_reserved_concurrency_keeps_100_unreserved(service):
    await service.create(REGION, _params("a"))
    await service.create(REGION, _params("b"))
    assert service.put_concurrency(REGION, "a", 800) == 800
    with pytest.raises(AwsError) as err:
        service.put_concurrency(REGION, "b", 101)
    assert err.value.code == "InvalidParameterValueException"
    assert "below its minimum value of [100]" in err.value.message
    assert service.put_concurrency(REGION, "b", 100) == 100
    settings = service.account_settings(REGION)
    assert settings["AccountLimit"]["UnreservedConcurrentExecutions"] == 100
    assert settings["AccountUsage"]["FunctionCount"] == 2
    service.delete_concurrency(REGION, "a")
    assert service.unreserved_capacity(REGION) == 900
    assert service.get(REGION, "a").reserved_concurrency is None


async def test_restart_keeps_functions(tmp_path, database_url):
    db = Database.open(tmp_path, database_url)
    svc = FunctionService(Settings(data_dir=tmp_path), db, RetireRecorder())
    await svc.start()
    created = await svc.create(REGION, _params(Environment={"Variables": {"KEEP": "me"}}))
    await svc.stop()
    db.close()
    db = Database.open(tmp_path, database_url)
    again = FunctionService(Settings(data_dir=tmp_path), db, RetireRecorder())
    await again.start()
    try:
        assert again.get(REGION, "f1") == created
    finally:
        await again.stop()
        db.close()


class FakeNetwork:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.gate = asyncio.Event()
        self.released: list[str] = []

    async def prepare(self, record: FunctionRecord) -> str:
        await self.gate.wait()
        if self.fail:
            raise AwsError("SubnetIPAddressLimitReachedException", "no addresses", 502,
                           extra={"ReasonCode": "SubnetOutOfIPAddresses"})
        return "vpc-123"

    async def release(self, record: FunctionRecord) -> None:
        self.released.append(record.name)


VPC = {"VpcConfig": {"SubnetIds": ["subnet-1"], "SecurityGroupIds": ["sg-1"]}}


async def test_vpc_hook_pending_then_active(service):
    service.network = FakeNetwork()
    record = await service.create(REGION, _params(**VPC))
    assert (record.state, record.state_reason_code) == ("Pending", "Creating")
    assert record.state_reason == "The function is being created."
    service.network.gate.set()
    settled = await _settled(service, "f1")
    assert settled.state == "Active" and settled.vpc_config.vpc_id == "vpc-123"
    assert service.spec_for(settled).vpc.vpc_id == "vpc-123"
    await service.delete(REGION, "f1")
    await asyncio.sleep(0.05)
    assert service.network.released == ["f1"]


async def test_vpc_hook_failure_makes_function_failed(service):
    service.network = FakeNetwork(fail=True)
    service.network.gate.set()
    await service.create(REGION, _params(**VPC))
    settled = await _settled(service, "f1")
    assert (settled.state, settled.state_reason_code) == ("Failed", "SubnetOutOfIPAddresses")
