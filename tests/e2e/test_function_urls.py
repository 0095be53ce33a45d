"""Function URLs end to end: the configuration operations through boto3 with AWS's errors, and
the URLs themselves fetched with a plain HTTP client on the server's port — by Host
(`<url-id>.lambda-url.<region>.localhost`) and by the path fallback — as payload format 2.0
events and mapped responses; AuthType NONE held to the resource policy; AWS_IAM verified with
SigV4 against the server's credentials; a CORS preflight answered by the platform; an alias
URL."""
from __future__ import annotations

import base64
import http.client
import json
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from tests.conftest import live_server
from tests.harness import LiveServer, create_python_function

pytestmark = pytest.mark.root

ACCOUNT = "000000000000"
KEY_ID, SECRET = "test", "test"  # what LiveServer's clients sign with
ECHO = """
import base64, json
def handler(event, context):
    path = event["rawPath"]
    if path == "/plain":
        return {"just": "a value"}
    if path == "/binary":
        return {"statusCode": 201, "headers": {"content-type": "image/png", "x-one": "1"},
                "cookies": ["a=1; Path=/", "b=2"], "isBase64Encoded": True,
                "body": base64.b64encode(bytes(range(256))).decode()}
    if path == "/fail":
        raise RuntimeError("boom")
    return {"statusCode": 200, "headers": {"content-type": "application/json"},
            "body": json.dumps({"event": event, "arn": context.invoked_function_arn})}
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    base = tmp_path_factory.mktemp("lpurl")
    creds = base / "credentials"
    creds.write_text(f"[default]\naws_access_key_id = {KEY_ID}\n"
                     f"aws_secret_access_key = {SECRET}\n")
    yield from live_server(base, "--auth", "sigv4", "--credentials", str(creds))


def _error(call) -> dict:
    with pytest.raises(ClientError) as err:
        call()
    return err.value.response


def _arn(name: str, qualifier: str | None = None) -> str:
    base = f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:{name}"
    return f"{base}:{qualifier}" if qualifier else base


def fetch(server: LiveServer, url: str, method: str = "GET", body: bytes | None = None,
          headers: dict[str, str] | None = None, by_path: bool = False
          ) -> tuple[int, http.client.HTTPMessage, bytes]:
    """A plain HTTP request to the server's port: Host names the URL (or the path does)."""
    parts = urlsplit(url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    sent = dict(headers or {})
    if by_path:
        target = f"/_lambdaplane/url/{parts.hostname.split('.')[0]}{target}"
    else:
        sent["Host"] = parts.netloc
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    try:
        conn.request(method, target, body=body, headers=sent)
        resp = conn.getresponse()
        return resp.status, resp.headers, resp.read()
    finally:
        conn.close()


def signed_headers(url: str, method: str = "GET", body: bytes = b"",
                   secret: str = SECRET) -> dict[str, str]:
    request = AWSRequest(method=method, url=url, data=body)
    SigV4Auth(Credentials(KEY_ID, secret), "lambda", "us-east-1").add_auth(request)
    return dict(request.headers.items())


def test_url_configurations_and_their_errors(server: LiveServer) -> None:
    lam = server.lambda_()
    create_python_function(lam, "urlcfg", ECHO, Publish=True)
    created = lam.create_function_url_config(FunctionName="urlcfg", AuthType="NONE")
    url = created["FunctionUrl"]
    assert url.startswith("http://") and url.endswith(
        f".lambda-url.us-east-1.localhost:{server.port}/")
    assert len(urlsplit(url).hostname.split(".")[0]) == 32
    assert created["FunctionArn"] == _arn("urlcfg") and created["InvokeMode"] == "BUFFERED"
    got = lam.get_function_url_config(FunctionName="urlcfg")
    assert got["FunctionUrl"] == url and got["AuthType"] == "NONE" and got["LastModifiedTime"]
    updated = lam.update_function_url_config(FunctionName="urlcfg", AuthType="AWS_IAM",
                                             Cors={"AllowOrigins": ["https://a.example"]})
    assert updated["AuthType"] == "AWS_IAM" and updated["FunctionUrl"] == url
    assert updated["Cors"] == {"AllowOrigins": ["https://a.example"]}
    lam.create_alias(FunctionName="urlcfg", Name="live", FunctionVersion="1")
    alias_url = lam.create_function_url_config(FunctionName="urlcfg", Qualifier="live",
                                               AuthType="NONE")
    assert alias_url["FunctionArn"] == _arn("urlcfg", "live") and alias_url["FunctionUrl"] != url
    listed = lam.list_function_url_configs(FunctionName="urlcfg")["FunctionUrlConfigs"]
    assert sorted(c["FunctionArn"] for c in listed) == [_arn("urlcfg"), _arn("urlcfg", "live")]

    def code(call) -> str:
        return _error(call)["Error"]["Code"]

    assert code(lambda: lam.create_function_url_config(FunctionName="urlcfg",
                                                       AuthType="NONE")) == \
        "ResourceConflictException"
    assert code(lambda: lam.create_function_url_config(FunctionName="urlcfg", Qualifier="1",
                                                       AuthType="NONE")) == "ValidationException"
    assert code(lambda: lam.create_function_url_config(FunctionName="urlcfg", Qualifier="nope",
                                                       AuthType="NONE")) == \
        "ResourceNotFoundException"
    assert code(lambda: lam.create_function_url_config(FunctionName="urlcfg",
                                                       AuthType="OPEN")) == "ValidationException"
    assert code(lambda: lam.get_function_url_config(FunctionName="nope")) == \
        "ResourceNotFoundException"
    assert code(lambda: lam.update_function_url_config(
        FunctionName="urlcfg", Cors={"AllowMethods": ["FETCH"]})) == \
        "InvalidParameterValueException"
    lam.delete_function_url_config(FunctionName="urlcfg")
    assert code(lambda: lam.get_function_url_config(FunctionName="urlcfg")) == \
        "ResourceNotFoundException"
    assert code(lambda: lam.delete_function_url_config(FunctionName="urlcfg")) == \
        "ResourceNotFoundException"
    # deleting the alias takes its URL along
    lam.delete_alias(FunctionName="urlcfg", Name="live")
    assert lam.list_function_url_configs(FunctionName="urlcfg")["FunctionUrlConfigs"] == []
    lam.delete_function(FunctionName="urlcfg")


def test_public_url_serves_payload_2_events(server: LiveServer) -> None:
    lam = server.lambda_()
    create_python_function(lam, "urlfn", ECHO)
    url = lam.create_function_url_config(FunctionName="urlfn", AuthType="NONE")["FunctionUrl"]
    # no policy statement allowing the public: AWS's 403
    status, _, body = fetch(server, url + "hello")
    assert status == 403 and json.loads(body) == {"Message": "Forbidden"}
    lam.add_permission(FunctionName="urlfn", StatementId="public",
                       Action="lambda:InvokeFunctionUrl", Principal="*",
                       FunctionUrlAuthType="NONE")

    status, headers, body = fetch(
        server, url + "a/b%20c?x=1&y=2&x=3", method="POST", body=b'{"k": "v"}',
        headers={"Content-Type": "application/json", "Cookie": "s=1; t=2",
                 "X-Custom": "Yes", "User-Agent": "plain-client"})
    assert status == 200 and headers["Content-Type"] == "application/json"
    answer = json.loads(body)
    event = answer["event"]
    assert answer["arn"] == _arn("urlfn")
    assert event["version"] == "2.0" and event["routeKey"] == "$default"
    assert event["rawPath"] == "/a/b%20c" and event["rawQueryString"] == "x=1&y=2&x=3"
    assert event["queryStringParameters"] == {"x": "1,3", "y": "2"}
    assert event["cookies"] == ["s=1", "t=2"]
    assert event["headers"]["x-custom"] == "Yes" and "cookie" not in event["headers"]
    assert all(k == k.lower() for k in event["headers"])
    assert event["body"] == '{"k": "v"}' and event["isBase64Encoded"] is False
    http_ctx = event["requestContext"]["http"]
    assert http_ctx["method"] == "POST" and http_ctx["path"] == "/a/b%20c"
    assert http_ctx["sourceIp"] == "127.0.0.1" and http_ctx["userAgent"] == "plain-client"
    assert event["requestContext"]["domainPrefix"] == urlsplit(url).hostname.split(".")[0]

    # binary request bodies arrive base64; a binary response comes back as bytes with cookies
    status, _, body = fetch(server, url + "echo", method="PUT", body=bytes(range(256)),
                            headers={"Content-Type": "application/octet-stream"})
    event = json.loads(body)["event"]
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == bytes(range(256))
    status, headers, body = fetch(server, url + "binary")
    assert status == 201 and body == bytes(range(256))
    assert headers["Content-Type"] == "image/png" and headers["x-one"] == "1"
    assert headers.get_all("Set-Cookie") == ["a=1; Path=/", "b=2"]
    # a plain return value: 200 JSON
    status, headers, body = fetch(server, url + "plain")
    assert status == 200 and json.loads(body) == {"just": "a value"}
    assert headers["Content-Type"] == "application/json"
    # a function error: 502
    status, _, body = fetch(server, url + "fail")
    assert status == 502 and json.loads(body) == {"Message": "Internal Server Error"}
    # the path fallback reaches the same URL
    status, _, body = fetch(server, url + "via/path?q=1", by_path=True)
    event = json.loads(body)["event"]
    assert status == 200 and event["rawPath"] == "/via/path" and event["rawQueryString"] == "q=1"
    # an unknown url id
    status, _, _ = fetch(server, "http://" + "z" * 32 + f".lambda-url.us-east-1.localhost:"
                         f"{server.port}/")
    assert status == 404
    lam.delete_function(FunctionName="urlfn")


def test_aws_iam_url_needs_a_valid_sigv4_signature(server: LiveServer) -> None:
    lam = server.lambda_()
    create_python_function(lam, "urliam", ECHO)
    url = lam.create_function_url_config(FunctionName="urliam", AuthType="AWS_IAM")[
        "FunctionUrl"]
    status, _, body = fetch(server, url + "x")
    assert status == 403 and json.loads(body) == {"Message": "Forbidden"}
    status, _, _ = fetch(server, url + "x", headers=signed_headers(url + "x", secret="wrong"))
    assert status == 403
    payload = b'{"signed": true}'
    headers = signed_headers(url + "signed?a=1", "POST", payload)
    headers["Content-Type"] = "application/json"
    status, _, body = fetch(server, url + "signed?a=1", "POST", payload, headers)
    assert status == 200, body
    event = json.loads(body)["event"]
    assert event["body"] == '{"signed": true}'
    assert event["requestContext"]["authorizer"]["iam"]["accessKey"] == KEY_ID
    assert event["requestContext"]["accountId"] == ACCOUNT
    lam.delete_function(FunctionName="urliam")


def test_cors_preflight_and_alias_url(server: LiveServer) -> None:
    lam = server.lambda_()
    create_python_function(lam, "urlcors", ECHO, Publish=True)
    lam.create_alias(FunctionName="urlcors", Name="live", FunctionVersion="1")
    url = lam.create_function_url_config(
        FunctionName="urlcors", Qualifier="live", AuthType="NONE",
        Cors={"AllowOrigins": ["https://app.example"], "AllowMethods": ["GET", "POST"],
              "AllowHeaders": ["content-type", "x-token"], "ExposeHeaders": ["x-one"],
              "MaxAge": 300, "AllowCredentials": True})["FunctionUrl"]
    lam.add_permission(FunctionName="urlcors", Qualifier="live", StatementId="public",
                       Action="lambda:InvokeFunctionUrl", Principal="*",
                       FunctionUrlAuthType="NONE")
    # a browser's preflight is answered by the platform
    status, headers, body = fetch(server, url + "api", "OPTIONS", headers={
        "Origin": "https://app.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type"})
    assert status == 200 and body == b""
    assert headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert headers["Access-Control-Allow-Methods"] == "GET,POST"
    assert headers["Access-Control-Allow-Headers"] == "content-type,x-token"
    assert headers["Access-Control-Max-Age"] == "300"
    assert headers["Access-Control-Allow-Credentials"] == "true"
    # another origin gets no CORS headers
    status, headers, _ = fetch(server, url + "api", "OPTIONS", headers={
        "Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
    assert "Access-Control-Allow-Origin" not in headers
    # the actual request: the alias runs, CORS headers are added
    status, headers, body = fetch(server, url + "api", headers={"Origin": "https://app.example"})
    assert status == 200
    assert json.loads(body)["arn"] == _arn("urlcors", "live")
    assert headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert headers["Access-Control-Expose-Headers"] == "x-one"
    lam.delete_function(FunctionName="urlcors")
