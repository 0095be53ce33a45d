"""Property: whatever arrives at the Lambda REST-JSON endpoint — any of the model's 91 operations
with wrong types, missing or unknown members, huge and unicode values, malformed JSON, or
methods and paths no operation has — the answer is AWS's error shape (JSON body with a message,
`x-amzn-ErrorType`, parsed by botocore's own RestJSON parser) and never a 5xx: a ServiceException
here would be an internal fault triggered by input, i.e. a bug."""
from __future__ import annotations

import json
import re
from collections.abc import Iterator
from types import SimpleNamespace
from urllib.parse import quote, urlencode

import botocore.parsers
import pytest
from botocore.model import OperationModel
from hypothesis import given
from hypothesis import strategies as st

from lambdaplane.api.lambda_api import LambdaApi
from lambdaplane.api.wire import lambda_model
from tests.conftest import live_server
from tests.harness import LiveServer, create_python_function

from .support import (Reply, Tally, any_json, fuzz_settings, header_safe, http_level_refusal,
                      json_body,
                      malformed_json, member_value, send, structure_value, text_value)

pytestmark = pytest.mark.root

MODEL = lambda_model()
OPERATIONS = [MODEL.operation_model(n) for n in sorted(MODEL.operation_names)]
# the operations lambdaplane implements get most of the examples; the rest must answer
# UnknownOperationException whatever they are sent
IMPLEMENTED = [op for op in OPERATIONS
               if op.name in LambdaApi(SimpleNamespace(settings=None)).handlers]
# 5xx codes AWS uses for states that are not faults (a VPC function being restored, ...)
LEGIT_5XX = {"ResourceNotReadyException", "InvalidRuntimeException", "ENILimitReachedException",
             "SubnetIPAddressLimitReachedException", "EC2ThrottledException",
             "EC2UnexpectedException", "EC2AccessDeniedException", "InvalidSubnetIDException",
             "InvalidSecurityGroupIDException"}
TALLY = Tally()
URL_PART_MAX = 2500
EXISTING = "fz"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    for s in live_server(tmp_path_factory.mktemp("lpfuzz")):
        create_python_function(s.lambda_(), EXISTING,
                               "def handler(event, context):\n    return event\n")
        yield s
    print("\n" + TALLY.summary("lambda fuzz"))


def label_value() -> st.SearchStrategy[str]:
    return st.one_of(st.just(EXISTING), st.just(EXISTING + ":$LATEST"), text_value())


@st.composite
def operation_request(draw: st.DrawFn) -> tuple[str, str, dict, bytes, OperationModel]:
    op: OperationModel = draw(st.sampled_from(IMPLEMENTED if draw(st.integers(0, 4))
                                              else OPERATIONS))
    shape = op.input_shape
    uri = op.http["requestUri"]
    path, _, fixed_query = uri.partition("?")

    def fill(m: re.Match[str]) -> str:
        value = draw(label_value())
        # the HTTP parser refuses request lines over 8 KB before any API code runs
        # (test_oversized_request_line_is_refused covers that): keep URLs under it
        return quote(value, safe="" if not m.group(2) else "/")[:URL_PART_MAX]

    path = re.sub(r"\{([A-Za-z0-9_]+)(\+?)\}", fill, path)
    query: list[tuple[str, str]] = [tuple(p.split("=", 1)) for p in fixed_query.split("&") if p]
    headers: dict[str, bytes | str] = {}
    body = b""
    if shape is not None:
        payload = shape.serialization.get("payload")
        for name, member in shape.members.items():
            location = member.serialization.get("location")
            wire_name = member.serialization.get("name", name)
            if location not in ("querystring", "header") or not draw(st.booleans()):
                continue
            value = draw(st.one_of(member_value(member).map(
                lambda v: v if isinstance(v, str) else json.dumps(v)), text_value()))
            if location == "querystring":
                query.append((wire_name, value[:URL_PART_MAX // 6]))
            else:
                headers[wire_name] = header_safe(value)
        if payload and shape.members[payload].type_name == "blob":
            body = draw(st.one_of(st.binary(max_size=200), any_json().map(json_body)))
        elif payload:
            body = json_body(draw(member_value(shape.members[payload])))
        else:
            body_members = {n for n, m in shape.members.items()
                            if m.serialization.get("location") is not None}
            if len(body_members) < len(shape.members):
                body = json_body(draw(structure_value(shape, exclude=frozenset(body_members))))
        if body and draw(st.integers(0, 5)) == 0:
            body = draw(malformed_json(body))
    if draw(st.booleans()):
        headers["Content-Type"] = draw(st.sampled_from(
            ["application/json", "application/x-amz-json-1.1", "text/plain", "", "a/b; x=\x7f",
             "multipart/form-data; boundary=x", "application/x-www-form-urlencoded"]))
    method = op.http["method"] if draw(st.integers(0, 9)) else draw(
        st.sampled_from(["GET", "PUT", "POST", "DELETE", "PATCH", "OPTIONS"]))
    target = path + ("?" + urlencode(query) if query else "")
    return method, target, headers, body, op


@st.composite
def raw_request(draw: st.DrawFn) -> tuple[str, str, dict, bytes, None]:
    """Paths no operation has, under a date version (routed to the Lambda endpoint)."""
    version = draw(st.sampled_from(["2015-03-31", "2016-08-19", "2017-10-31", "2019-09-25",
                                    "9999-99-99", "2015-03-31/functions/fz/.."]))
    segments = draw(st.lists(text_value().map(lambda s: quote(s, safe="")[:URL_PART_MAX]),
                             max_size=2))
    path = "/" + version + "/" + "/".join(segments)
    if draw(st.booleans()):
        path += "?" + urlencode(draw(st.dictionaries(st.text(max_size=8), st.text(max_size=20),
                                                     max_size=3)))
    method = draw(st.sampled_from(["GET", "PUT", "POST", "DELETE", "PATCH", "HEAD", "OPTIONS",
                                   "PROPFIND"]))
    body = draw(st.one_of(st.just(b""), st.binary(max_size=100), any_json().map(json_body)))
    return method, path, {}, body, None


def check_lambda_reply(reply: Reply, op: OperationModel | None, method: str) -> str | None:
    """AWS's error shape, no 5xx but legitimate states; returns the error code if any."""
    if reply.status < 400:
        if op is not None and op.output_shape is not None and \
                reply.headers.get("content-type", "").startswith("application/json") and \
                reply.body and not op.output_shape.serialization.get("payload"):
            json.loads(reply.body)  # successful answers are JSON documents
        return None
    if http_level_refusal(reply):
        return "HTTP-400"
    code = reply.headers.get("x-amzn-errortype")
    assert code, f"error without x-amzn-ErrorType: {reply}"
    assert code != "ServiceException" and (reply.status < 500 or code in LEGIT_5XX), \
        f"internal fault on bad input: {reply.status} {code} {reply.body[:500]!r}"
    if method != "HEAD":
        document = json.loads(reply.body)
        assert isinstance(document, dict) and isinstance(document.get("message"), str), reply
        if op is not None:
            parsed = botocore.parsers.RestJSONParser().parse(
                {"status_code": reply.status, "headers": reply.headers, "body": reply.body},
                op.output_shape)
            assert parsed["Error"]["Code"] == code and parsed["Error"]["Message"], parsed
    return code


@fuzz_settings(reduced=220, full=4000)
@given(request=st.one_of(operation_request(), operation_request(), operation_request(),
                         raw_request()))
def test_lambda_api_answers_bad_input_with_aws_errors(server: LiveServer, request) -> None:
    method, target, headers, body, op = request
    reply = send(server.port, method, target, body, headers)
    TALLY.add(reply.status, check_lambda_reply(reply, op, method))


def test_oversized_request_line_and_headers_are_refused(server: LiveServer) -> None:
    """Past 8 KB of request line or header, the HTTP layer answers 4xx before any handler."""
    for path, headers in (("/2015-03-31/functions/" + "a" * 20_000, {}),
                          ("/2015-03-31/functions", {"X-Big": "b" * 20_000})):
        try:
            reply = send(server.port, "GET", path, headers=headers)
        except (BrokenPipeError, ConnectionResetError):
            continue  # refused before the request was even read to the end
        assert 400 <= reply.status < 500, reply
    assert send(server.port, "GET", "/2015-03-31/functions").status == 200


def test_server_still_serves_after_fuzzing(server: LiveServer) -> None:
    """After the fuzz run the platform still creates and invokes functions."""
    lam = server.lambda_()
    create_python_function(lam, "after-fuzz", "def handler(e, c):\n    return {'ok': 1}\n")
    assert json.loads(lam.invoke(FunctionName="after-fuzz")["Payload"].read()) == {"ok": 1}


def test_found_by_fuzzing_deeply_nested_json(server: LiveServer) -> None:
    """Regression (fuzz find): 100,000 nested arrays raised RecursionError → a 500."""
    reply = send(server.port, "PUT", "/2015-03-31/functions/fz/configuration",
                 b"[" * 100_000 + b"]" * 100_000, {"Content-Type": "application/json"})
    assert reply.status == 400
    assert reply.headers["x-amzn-errortype"] == "InvalidRequestContentException"
