"""model/vpc_config.py: a function's VpcConfig parsed once from the request, kept in the
record's JSON in Lambda's wire shape (records written before the type existed read back the
same), and answered as written."""
from __future__ import annotations

import json

from lambdaplane.model.vpc_config import VpcConfig
from lambdaplane.store.functions import FunctionRecord


def _record(**kw: object) -> FunctionRecord:
    return FunctionRecord("us-east-1", "f", "arn", "python3.11", "role", "h.h", "00", "b64", 1,
                          "rev", "now", **kw)  # type: ignore[arg-type]


def test_request_is_sorted_and_vpc_id_unknown() -> None:
    config = VpcConfig.from_request({"SubnetIds": ["subnet-b", "subnet-a"],
                                     "SecurityGroupIds": ["sg-2", "sg-1"]})
    assert config == VpcConfig(("subnet-a", "subnet-b"), ("sg-1", "sg-2"), False, "")
    assert config.attached and not VpcConfig.from_request(None).attached


def test_record_json_keeps_the_wire_shape() -> None:
    config = VpcConfig(("subnet-a",), ("sg-1",), True, "vpc-1")
    text = _record(vpc_config=config).to_json()
    assert json.loads(text)["vpc_config"] == {
        "SubnetIds": ["subnet-a"], "SecurityGroupIds": ["sg-1"],
        "Ipv6AllowedForDualStack": True, "VpcId": "vpc-1"}
    back = FunctionRecord.from_json(text)
    assert back.vpc_config == config and back.has_vpc


def test_record_without_vpc_config_reads_back_none() -> None:
    record = FunctionRecord.from_json(_record().to_json())
    assert record.vpc_config is None and not record.has_vpc
    assert json.loads(_record().to_json())["vpc_config"] == {}


def test_detached_config_is_kept_but_not_attached() -> None:
    """UpdateFunctionConfiguration with empty lists: GetFunction still shows the (empty)
    VpcConfig, the function has no VPC."""
    record = FunctionRecord.from_json(_record(vpc_config=VpcConfig.from_request(
        {"SubnetIds": [], "SecurityGroupIds": []})).to_json())
    assert record.vpc_config == VpcConfig() and not record.has_vpc
    assert record.vpc_config.to_wire()["SubnetIds"] == []
