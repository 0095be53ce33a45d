"""ModifyVpcEndpoint refused by the endpoint's state, before anything is read or changed:
OperationInProgress while `pending` (AWS serialises an endpoint's operations), IncorrectState
while `deleting`. The part is faked: only the state check runs."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest

from lambdaplane.errors import AwsError
from lambdaplane.service.vpc_endpoint_edits import modify_vpc_endpoint


@dataclass
class _Endpoint:
    id: str
    state: str


class _Core:
    def ensure_region(self, region: str) -> None:
        assert region == "us-east-1"

    def vpc(self, region: str, vpc_id: str) -> Any:
        raise AssertionError("a refused modify reads nothing more")


class _Part:
    def __init__(self, state: str) -> None:
        self.core = _Core()
        self.endpoint = _Endpoint("vpce-0123456789abcdef0", state)

    def vpc_endpoint(self, region: str, endpoint_id: str) -> _Endpoint:
        assert endpoint_id == self.endpoint.id
        return self.endpoint


def _refusal(state: str) -> AwsError:
    part: Any = _Part(state)
    with pytest.raises(AwsError) as caught:
        asyncio.run(modify_vpc_endpoint(part, "us-east-1", {
            "VpcEndpointId": part.endpoint.id, "AddSubnetIds": ["subnet-0123456789abcdef0"]}))
    return caught.value


def test_pending_is_operation_in_progress() -> None:
    e = _refusal("pending")
    assert (e.code, e.message, e.status) == ("OperationInProgress",
                                             "VpcEndpoint modify operation in progress", 400)


def test_deleting_is_incorrect_state() -> None:
    e = _refusal("deleting")
    assert e.code == "IncorrectState" and "deleting" in e.message


def test_missing_id_before_state() -> None:
    part: Any = _Part("pending")
    with pytest.raises(AwsError) as caught:
        asyncio.run(modify_vpc_endpoint(part, "us-east-1", {}))
    assert caught.value.code == "MissingParameter"
