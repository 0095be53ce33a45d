"""FlowLogs' rules without a server: per-resource failures as Unsuccessful items, parameter
errors, filters, deletion, and flow logs that go with their resource."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import lambdaplane.store.flow_logs  # noqa: F401  (registers its table before the open)
from lambdaplane.errors import AwsError
from lambdaplane.service.flow_logs import DEFAULT_FORMAT, FlowLogs
from lambdaplane.store.db import Database
from lambdaplane.store.ec2 import Ec2Store, Subnet, Vpc

REGION = "us-east-1"
VPC, SUBNET = "vpc-0123456789abcdef0", "subnet-0123456789abcdef0"


@pytest.fixture
def flow_logs(tmp_path: Path, database_url: str | None) -> Iterator[FlowLogs]:
    db = Database.open(tmp_path, database_url)
    store = Ec2Store(db)
    store.add_vpc(Vpc(VPC, REGION, "10.0.0.0/16", False))
    store.add_subnet(Subnet(SUBNET, REGION, VPC, "10.0.1.0/24", "us-east-1a", False))
    yield FlowLogs(db, "000000000000")
    db.close()


def _params(**extra: object) -> dict:
    return {"ResourceType": "VPC", "ResourceIds": [VPC], "TrafficType": "ALL",
            "LogGroupName": "g", **extra}


def _code(call) -> str:
    with pytest.raises(AwsError) as err:
        call()
    return err.value.code


def test_create_reports_per_resource_failures(flow_logs: FlowLogs) -> None:
    created, failed = flow_logs.create(REGION, _params(
        ResourceIds=[VPC, "vpc-00000000000000000", "subnet-0123"], LogFormat=DEFAULT_FORMAT))
    assert len(created) == 1
    assert [(u.resource_id, u.code) for u in failed] == [
        ("vpc-00000000000000000", "InvalidVpcID.NotFound"),
        ("subnet-0123", "InvalidVpcID.Malformed")]
    again, failed = flow_logs.create(REGION, _params())
    assert again == [] and failed[0].code == "FlowLogAlreadyExists"
    # another traffic type or log group is another flow log
    assert len(flow_logs.create(REGION, _params(TrafficType="REJECT"))[0]) == 1
    assert len(flow_logs.create(REGION, _params(LogGroupName="h"))[0]) == 1
    # another region does not see the VPC
    assert flow_logs.create("eu-west-1", _params())[1][0].code == "InvalidVpcID.NotFound"


def test_parameter_errors(flow_logs: FlowLogs) -> None:
    assert _code(lambda: flow_logs.create(REGION, _params(ResourceType="TransitGateway"))) == \
        "InvalidParameterValue"
    assert _code(lambda: flow_logs.create(REGION, _params(TrafficType="SOME"))) == \
        "InvalidParameterValue"
    assert _code(lambda: flow_logs.create(REGION, _params(MaxAggregationInterval=120))) == \
        "InvalidParameterValue"
    assert _code(lambda: flow_logs.create(REGION, _params(LogDestinationType="s3"))) == \
        "InvalidParameterValue"
    assert _code(lambda: flow_logs.create(REGION, _params(LogFormat="${srcaddr}"))) == \
        "InvalidParameter"
    assert _code(lambda: flow_logs.create(REGION, _params(
        LogDestination="arn:aws:logs:us-east-1:000000000000:log-group:g"))) == "InvalidParameter"
    assert _code(lambda: flow_logs.create(REGION, {
        "ResourceType": "VPC", "ResourceIds": [VPC], "TrafficType": "ALL",
        "LogDestination": "arn:aws:s3:::bucket"})) == "InvalidParameter"
    no_traffic = _params()
    del no_traffic["TrafficType"]
    assert _code(lambda: flow_logs.create(REGION, no_traffic)) == "MissingParameter"


def test_filters_delete_and_prune(flow_logs: FlowLogs) -> None:
    [on_vpc], _ = flow_logs.create(REGION, _params(TagSpecifications=[
        {"ResourceType": "vpc-flow-log", "Tags": [{"Key": "k", "Value": "v"}]}]))
    [on_subnet], _ = flow_logs.create(REGION, {
        "ResourceType": "Subnet", "ResourceIds": [SUBNET], "TrafficType": "REJECT",
        "LogDestination": f"arn:aws:logs:{REGION}:000000000000:log-group:rejects:*"})

    def ids(*filters: tuple[str, str]) -> list[str]:
        return [f.id for f in flow_logs.describe(REGION, [], [
            {"Name": n, "Values": [v]} for n, v in filters])]
    assert ids(("log-group-name", "rejects")) == [on_subnet]
    assert ids(("tag:k", "v")) == [on_vpc]
    assert ids(("traffic-type", "A*")) == [on_vpc]
    assert _code(lambda: ids(("no-such-filter", "x"))) == "InvalidParameterValue"
    assert [u.code for u in flow_logs.delete(REGION, [on_vpc, on_vpc])] == \
        ["InvalidFlowLogId.NotFound"]
    Ec2Store(flow_logs.db).delete_subnet(SUBNET)
    assert flow_logs.describe(REGION, [], []) == []
