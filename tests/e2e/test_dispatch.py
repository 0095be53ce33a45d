"""What lambdaplane does not serve, asked as a client would: a clear JSON error naming what was
asked for and listing what is served (api/dispatch.py) — never EC2's XML for another service."""
from __future__ import annotations

import json
import urllib.error
import urllib.request

import boto3
import botocore.config
import botocore.exceptions
import botocore.parsers
import pytest

from tests.harness import LiveServer

pytestmark = pytest.mark.root


def call(server: LiveServer, method: str, path: str, body: bytes | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(server.endpoint + path, data=body, method=method,
                                 headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def not_served(reply: tuple[int, dict[str, str], bytes], *words: str) -> dict:
    status, headers, body = reply
    assert status == 404, reply
    assert headers["Content-Type"].startswith("application/json"), reply
    assert headers["x-amzn-ErrorType"] == "UnknownServiceException"
    document = json.loads(body)
    assert document["__type"] == "UnknownServiceException"
    for word in (*words, "ec2: Query protocol on POST / (Version=2016-11-15)", "lambda: REST"):
        assert word in document["message"], document["message"]
    assert any(line.startswith("ec2:") for line in document["served"])
    return document


def test_get_root_names_the_path_and_what_is_served(server: LiveServer) -> None:
    not_served(call(server, "GET", "/"), "GET /")
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    not_served(call(server, "POST", "/", b"", form), "POST /")


def test_a_path_nothing_serves(server: LiveServer) -> None:
    not_served(call(server, "GET", "/nosuch/path"), "GET /nosuch/path")


def test_json_target_of_an_unserved_service(server: LiveServer) -> None:
    not_served(call(server, "POST", "/", b"{}", {
        "Content-Type": "application/x-amz-json-1.0",
        "X-Amz-Target": "DynamoDB_20120810.ListTables"}),
        "X-Amz-Target 'DynamoDB_20120810.ListTables'", "dynamodb")


def test_query_version_of_an_unserved_service(server: LiveServer) -> None:
    not_served(call(server, "POST", "/", b"Action=ListTopics&Version=2010-03-31",
                    {"Content-Type": "application/x-www-form-urlencoded"}),
               "API Version '2010-03-31'", "sns", "ListTopics")


def test_boto3_client_of_an_unserved_service_gets_the_message(server: LiveServer) -> None:
    """A JSON client reads the error as such; a Query (XML) client cannot parse JSON, but
    botocore shows the body it got, so the message still reaches the user."""
    once = botocore.config.Config(retries={"max_attempts": 1})
    sns = boto3.client("sns", endpoint_url=server.endpoint, region_name="us-east-1",
                       aws_access_key_id="test", aws_secret_access_key="test", config=once)
    with pytest.raises(botocore.parsers.ResponseParserError) as parse_err:
        sns.list_topics()
    shown = str(parse_err.value)  # the body, as bytes' repr
    assert "lambdaplane does not serve API Version" in shown and "(service sns" in shown
    dynamodb = boto3.client("dynamodb", endpoint_url=server.endpoint, region_name="us-east-1",
                            aws_access_key_id="test", aws_secret_access_key="test",
                            config=once)
    with pytest.raises(botocore.exceptions.ClientError) as err:
        dynamodb.list_tables()
    assert err.value.response["Error"]["Code"] == "UnknownServiceException"
    assert "dynamodb" in err.value.response["Error"]["Message"]


def test_served_services_still_answer_in_their_own_protocol(server: LiveServer) -> None:
    assert "Vpcs" in server.ec2().describe_vpcs()
    status, _, body = call(server, "GET", "/?Action=DescribeVpcs")  # no Version: EC2, as before
    assert status == 200 and b"DescribeVpcsResponse" in body
    status, headers, body = call(server, "GET", "/?Action=NoSuchAction&Version=2016-11-15")
    assert status == 400 and b"<Code>InvalidAction</Code>" in body
    status, headers, _ = call(server, "GET", "/2015-03-31/nosuch")
    assert status == 404 and headers["x-amzn-ErrorType"] == "UnknownOperationException"
