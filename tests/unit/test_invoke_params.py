"""api/invoke_params.py: Invoke's input checked once per target gives exactly what the model's
parse gives — the payload per request, the errors each time — and every header the model reads
for Invoke is part of what is remembered."""
from __future__ import annotations

import pytest
from multidict import CIMultiDict

from lambdaplane.api.invoke_params import InvokeParams
from lambdaplane.api.wire import lambda_model, parse_input
from lambdaplane.errors import AwsError

OP = lambda_model().operation_model("Invoke")


def _both(path_name: str, query: dict[str, str], headers: dict[str, str], body: bytes,
          params: InvokeParams) -> tuple[object, object]:
    labels = {"FunctionName": path_name}
    raw = f"/2015-03-31/functions/{path_name}/invocations"
    outcomes = []
    for parse in (lambda: parse_input(OP, labels, query, CIMultiDict(headers), body),
                  lambda: params.parse(raw, labels, query, CIMultiDict(headers), body)):
        try:
            outcomes.append(parse())
        except AwsError as e:
            outcomes.append((e.code, e.message))
    return outcomes[0], outcomes[1]


@pytest.mark.parametrize("name,query,headers", [
    ("fn", {}, {}),
    ("fn", {"Qualifier": "live"}, {"X-Amz-Invocation-Type": "Event"}),
    ("fn", {}, {"x-amz-log-type": "Tail", "X-Amz-Client-Context": "e30="}),
    ("fn", {"Qualifier": ""}, {}),  # too short
    ("fn", {}, {"X-Amz-Invocation-Type": "Sometimes"}),  # not in the enum
    ("fn", {}, {"X-Amz-Log-Type": "All", "X-Amz-Tenant-Id": "t1"}),
    ("a" * 300, {}, {}),  # too long
])
def test_the_same_as_the_models_parse_twice_over(name: str, query: dict[str, str],
                                                 headers: dict[str, str]) -> None:
    params = InvokeParams(OP)
    for body in (b'{"n": 1}', b"", b'{"n": 2}'):  # the second and third from what is kept
        expected, got = _both(name, query, headers, body, params)
        assert got == expected


def test_a_kept_target_gets_each_requests_own_payload() -> None:
    params = InvokeParams(OP)
    first = params.parse("/p", {"FunctionName": "fn"}, {}, CIMultiDict(), b'{"a": 1}')
    second = params.parse("/p", {"FunctionName": "fn"}, {}, CIMultiDict(), b'{"b": 2}')
    assert first["Payload"] == b'{"a": 1}' and second["Payload"] == b'{"b": 2}'
    second["FunctionName"] = "changed"  # what a caller does to its dict is its own
    assert params.parse("/p", {"FunctionName": "fn"}, {}, CIMultiDict(), b"")["FunctionName"] \
        == "fn"


def test_every_header_of_the_model_is_in_the_key() -> None:
    located = {m.serialization["name"] for m in OP.input_shape.members.values()
               if m.serialization.get("location") == "header"}
    assert set(InvokeParams(OP).headers) == located
