"""api/wire.py: routing, parsing and validation from botocore's Lambda model, output and error
serialisation."""
from __future__ import annotations

import base64
import json

import pytest

from lambdaplane.api.wire import (Router, error_response, lambda_model, parse_input,
                                  region_from_authorization, serialize_output)
from lambdaplane.errors import AwsError, too_many_requests

ROUTER = Router(lambda_model())


@pytest.mark.parametrize("method,path,query,operation,labels", [
    ("POST", "/2015-03-31/functions", {}, "CreateFunction", {}),
    ("GET", "/2015-03-31/functions/", {}, "ListFunctions", {}),
    ("GET", "/2015-03-31/functions/f1", {}, "GetFunction", {"FunctionName": "f1"}),
    ("GET", "/2015-03-31/functions/f1/configuration", {}, "GetFunctionConfiguration",
     {"FunctionName": "f1"}),
    ("PUT", "/2015-03-31/functions/f1/configuration", {}, "UpdateFunctionConfiguration",
     {"FunctionName": "f1"}),
    ("PUT", "/2015-03-31/functions/f1/code", {}, "UpdateFunctionCode", {"FunctionName": "f1"}),
    ("DELETE", "/2015-03-31/functions/f1", {}, "DeleteFunction", {"FunctionName": "f1"}),
    ("POST", "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A000000000000%3A"
             "function%3Af1/invocations", {}, "Invoke",
     {"FunctionName": "arn:aws:lambda:us-east-1:000000000000:function:f1"}),
    ("PUT", "/2017-10-31/functions/f1/concurrency", {}, "PutFunctionConcurrency",
     {"FunctionName": "f1"}),
    ("GET", "/2019-09-30/functions/f1/concurrency", {}, "GetFunctionConcurrency",
     {"FunctionName": "f1"}),
    ("DELETE", "/2017-10-31/functions/f1/concurrency", {}, "DeleteFunctionConcurrency",
     {"FunctionName": "f1"}),
    ("GET", "/2016-08-19/account-settings/", {}, "GetAccountSettings", {}),
    ("GET", "/2019-09-30/functions/f1/provisioned-concurrency", {"List": "ALL"},
     "ListProvisionedConcurrencyConfigs", {"FunctionName": "f1"}),
])
def test_routes_follow_the_model(method, path, query, operation, labels):
    match = ROUTER.match(method, path, query)
    assert match is not None
    assert match.operation.name == operation
    assert match.labels == labels


def test_unknown_routes_do_not_match():
    assert ROUTER.match("GET", "/2015-03-31/nothing-here", {}) is None
    assert ROUTER.match("PATCH", "/2015-03-31/functions/f1", {}) is None


def _op(name: str):
    return lambda_model().operation_model(name)


def test_body_members_parse_and_blob_decodes():
    body = json.dumps({"FunctionName": "f1", "Runtime": "python3.11", "Role":
                       "arn:aws:iam::000000000000:role/r", "Handler": "app.handler",
                       "Code": {"ZipFile": base64.b64encode(b"PK").decode()},
                       "MemorySize": 256, "Unknown": 1}).encode()
    params = parse_input(_op("CreateFunction"), {}, {}, {}, body)
    assert params["Code"] == {"ZipFile": b"PK"}
    assert params["MemorySize"] == 256
    assert "Unknown" not in params


def test_uri_query_header_and_raw_payload():
    params = parse_input(_op("Invoke"), {"FunctionName": "f1"}, {"Qualifier": "$LATEST"},
                         {"X-Amz-Invocation-Type": "Event", "X-Amz-Log-Type": "Tail"},
                         b'{"k": 1}')
    assert params == {"FunctionName": "f1", "Qualifier": "$LATEST", "InvocationType": "Event",
                      "LogType": "Tail", "Payload": b'{"k": 1}'}
    listing = parse_input(_op("ListFunctions"), {}, {"MaxItems": "5", "Marker": "m"}, {}, b"")
    assert listing == {"MaxItems": 5, "Marker": "m"}


def _validation_message(op: str, labels: dict, body: dict | None = None,
                        headers: dict | None = None) -> AwsError:
    with pytest.raises(AwsError) as err:
        parse_input(_op(op), labels, {}, headers or {},
                    json.dumps(body).encode() if body is not None else b"")
    return err.value


def test_required_member_missing_is_null():
    err = _validation_message("CreateFunction", {}, {"FunctionName": "f1", "Role":
                                                     "arn:aws:iam::000000000000:role/r"})
    assert err.code == "ValidationException" and err.status == 400
    assert "Value null at 'code' failed to satisfy constraint: Member must not be null" \
        in err.message


def test_constraints_give_aws_messages():
    err = _validation_message("CreateFunction", {}, {
        "FunctionName": "bad name!", "Role": "arn:aws:iam::000000000000:role/r",
        "Code": {"ZipFile": "UEs="}, "MemorySize": 64, "Runtime": "cobol"})
    assert err.message.startswith("3 validation errors detected: ")
    assert "Value '64' at 'memorySize' failed to satisfy constraint: Member must have value " \
           "greater than or equal to 128" in err.message
    assert "Value 'cobol' at 'runtime' failed to satisfy constraint: Member must satisfy " \
           "enum value set: [" in err.message
    assert "Value 'bad name!' at 'functionName' failed to satisfy constraint: Member must " \
           "satisfy regular expression pattern:" in err.message


def test_enum_in_header_and_map_keys():
    err = _validation_message("Invoke", {"FunctionName": "f1"}, None,
                              {"X-Amz-Invocation-Type": "Sometimes"})
    assert "at 'invocationType'" in err.message
    err = _validation_message("CreateFunction", {}, {
        "FunctionName": "f1", "Role": "arn:aws:iam::000000000000:role/r",
        "Code": {"ZipFile": "UEs="}, "Environment": {"Variables": {"1bad": "x"}}})
    assert "Value at 'environment.variables' failed to satisfy constraint: Map keys must " \
           "satisfy constraint: [Member must satisfy regular expression pattern: " \
           "[a-zA-Z]([a-zA-Z0-9_])+]" in err.message


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b'{"MemorySize": "big"}',
                                  b'{"Code": {"ZipFile": "%%%"}}'])
def test_malformed_bodies_are_invalid_request_content(body):
    with pytest.raises(AwsError) as err:
        parse_input(_op("CreateFunction"), {}, {}, {}, body)
    assert err.value.code == "InvalidRequestContentException"
    assert err.value.status == 400


def test_invoke_output_uses_status_headers_and_raw_payload():
    wire = serialize_output(_op("Invoke"), {"StatusCode": 200, "Payload": b"raw",
                                            "FunctionError": "Unhandled",
                                            "ExecutedVersion": "$LATEST", "LogResult": None})
    assert wire.status == 200 and wire.body == b"raw"
    assert wire.headers == {"X-Amz-Function-Error": "Unhandled",
                            "X-Amz-Executed-Version": "$LATEST"}
    assert serialize_output(_op("DeleteFunction"), {"StatusCode": 204}).status == 204
    assert serialize_output(_op("CreateFunction"), {"FunctionName": "f"}).status == 201


def test_error_body_and_header():
    wire = error_response(too_many_requests("Rate Exceeded.", "ConcurrentInvocationLimitExceeded"))
    assert wire.status == 429
    assert wire.headers["x-amzn-ErrorType"] == "TooManyRequestsException"
    assert wire.headers["Retry-After"] == "1"
    assert json.loads(wire.body) == {"Type": "User", "message": "Rate Exceeded.",
                                     "Reason": "ConcurrentInvocationLimitExceeded"}


def test_region_from_sigv4_credential_scope():
    auth = ("AWS4-HMAC-SHA256 Credential=test/20261127/eu-west-3/lambda/aws4_request, "
            "SignedHeaders=host;x-amz-date, Signature=abc")
    assert region_from_authorization(auth, "us-east-1") == "eu-west-3"
    assert region_from_authorization(None, "us-east-1") == "us-east-1"
    assert region_from_authorization("Bearer x", "us-east-2") == "us-east-2"
