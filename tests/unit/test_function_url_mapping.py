"""The pure parts of function URLs and aliases: how a function's result becomes the HTTP
response (api/function_urls.map_response), CORS answers, the public-URL policy rule, and the
weighted choice an alias makes (service/aliases.Aliases.pick)."""
from __future__ import annotations

import base64
import json
import random
from types import SimpleNamespace

from lambdaplane.api.function_urls import cors_headers, map_response
from lambdaplane.service.aliases import Aliases
from lambdaplane.service.permissions import Permissions, principal_of
from lambdaplane.store.versions import AliasRecord


def test_structured_result_maps_to_status_headers_cookies_and_body() -> None:
    status, headers, body = map_response(json.dumps({
        "statusCode": 418, "headers": {"X-A": "1"}, "cookies": ["c=1", "d=2"],
        "body": base64.b64encode(b"\x00\xff").decode(), "isBase64Encoded": True}).encode())
    assert status == 418 and body == b"\x00\xff"
    assert headers["X-A"] == "1" and headers.getall("Set-Cookie") == ["c=1", "d=2"]
    assert headers["Content-Type"] == "application/json"  # AWS's default


def test_plain_values_are_200_json_and_bad_results_502() -> None:
    for value in ({"a": 1}, [1, 2], "text", 3, None):
        payload = json.dumps(value).encode()
        status, headers, body = map_response(payload)
        assert (status, body, headers["Content-Type"]) == (200, payload, "application/json")
    for bad in (b"not json", json.dumps({"statusCode": "x"}).encode(),
                json.dumps({"statusCode": 99}).encode(),
                json.dumps({"statusCode": 200, "body": "!!", "isBase64Encoded": True}).encode()):
        assert map_response(bad)[0] == 502


def test_cors_headers_only_for_allowed_origins() -> None:
    cors = {"AllowOrigins": ["https://a.example"], "ExposeHeaders": ["x-b"]}
    assert cors_headers(cors, "https://a.example")["Access-Control-Allow-Origin"] == \
        "https://a.example"
    assert cors_headers(cors, "https://b.example") == {}
    assert cors_headers({}, "https://a.example") == {}
    assert cors_headers({"AllowOrigins": ["*"]}, "https://x")["Access-Control-Allow-Origin"] \
        == "*"


def test_principals_as_aws_writes_them() -> None:
    assert principal_of("*", "0") == "*"
    assert principal_of("123456789012", "0") == {"AWS": "arn:aws:iam::123456789012:root"}
    assert principal_of("s3.amazonaws.com", "0") == {"Service": "s3.amazonaws.com"}
    assert principal_of("arn:aws:iam::1:role/x", "0") == {"AWS": "arn:aws:iam::1:role/x"}


def _policy(*statements: dict) -> Permissions:
    store = SimpleNamespace(extra=lambda *a: {"policy": {"Statement": list(statements)}})
    permissions = Permissions.__new__(Permissions)
    permissions.store = store  # type: ignore[assignment]
    return permissions


def test_public_url_rule() -> None:
    allow = {"Effect": "Allow", "Principal": "*", "Action": "lambda:InvokeFunctionUrl",
             "Condition": {"StringEquals": {"lambda:FunctionUrlAuthType": "NONE"}}}
    assert _policy(allow).allows_public_url("r", "f", "")
    assert _policy({**allow, "Condition": {}}).allows_public_url("r", "f", "")
    assert not _policy({**allow, "Principal": {"AWS": "x"}}).allows_public_url("r", "f", "")
    assert not _policy({**allow, "Action": "lambda:InvokeFunction"}).allows_public_url(
        "r", "f", "")
    assert not _policy({**allow, "Condition": {"StringEquals": {
        "lambda:FunctionUrlAuthType": "AWS_IAM"}}}).allows_public_url("r", "f", "")
    assert not _policy({**allow, "Condition": {"StringEquals": {
        "AWS:SourceAccount": "1"}}}).allows_public_url("r", "f", "")
    assert not _policy().allows_public_url("r", "f", "")


def test_alias_pick_follows_the_weight() -> None:
    aliases = Aliases.__new__(Aliases)
    aliases._random = random.Random(7)
    alias = AliasRecord("r", "f", "a", "arn", "1", "rev", weights={"2": 0.3})
    picks = [aliases.pick(alias) for _ in range(10_000)]
    assert set(picks) == {"1", "2"}
    assert 0.28 <= picks.count("2") / len(picks) <= 0.32
    assert {aliases.pick(AliasRecord("r", "f", "a", "arn", "1", "rev")) for _ in range(50)} == \
        {"1"}
    always = AliasRecord("r", "f", "a", "arn", "1", "rev", weights={"2": 1.0})
    assert {aliases.pick(always) for _ in range(50)} == {"2"}
