"""`serve --auth sigv4`: every Lambda, EC2 and admin request must carry a valid AWS Signature V4
(made here by boto3/botocore, as any client would) — unknown keys, wrong secrets, tampered
requests, clock skew and unsigned requests are refused with each service's own error; the
health probe stays open. Without --auth, a non-loopback address gets a loud warning."""
from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import boto3
import botocore.auth
import botocore.config
import pytest
from botocore.exceptions import ClientError

from tests.conftest import live_server
from tests.harness import REGION, LiveServer, free_port, make_zip

pytestmark = pytest.mark.root

KEY_ID = "AKIDLAMBDAPLANE0TEST"
SECRET = "lp-test-secret/with+odd=chars"
OTHER_KEY_ID = "AKIDLAMBDAPLANE0SECOND"
OTHER_SECRET = "second-profile-secret"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    base = tmp_path_factory.mktemp("lpauth")
    creds = base / "credentials"
    creds.write_text(f"[default]\naws_access_key_id = {KEY_ID}\n"
                     f"aws_secret_access_key = {SECRET}\n\n"
                     f"[ci]\naws_access_key_id={OTHER_KEY_ID}\n"
                     f"aws_secret_access_key={OTHER_SECRET}\n")
    yield from live_server(base, "--auth", "sigv4", "--credentials", str(creds))


def client(server: LiveServer, service: str, key_id: str = KEY_ID, secret: str = SECRET):
    cfg = botocore.config.Config(retries={"max_attempts": 1}, read_timeout=60)
    return boto3.client(service, endpoint_url=server.endpoint, region_name=REGION,
                        aws_access_key_id=key_id, aws_secret_access_key=secret, config=cfg)


def _error(call) -> tuple[int, str, str]:
    with pytest.raises(ClientError) as err:
        call()
    resp = err.value.response
    return resp["ResponseMetadata"]["HTTPStatusCode"], resp["Error"]["Code"], \
        resp["Error"].get("Message", "")


def test_signed_requests_work_for_lambda_ec2_and_invoke(server: LiveServer) -> None:
    lam = client(server, "lambda")
    code = "def handler(event, context):\n    return {'echo': event}\n"
    lam.create_function(FunctionName="signed", Runtime="python3.11", Handler="app.handler",
                        Role="arn:aws:iam::000000000000:role/lambda",
                        Code={"ZipFile": make_zip({"app.py": code})})
    lam.get_waiter("function_active_v2").wait(FunctionName="signed",
                                              WaiterConfig={"Delay": 0.2, "MaxAttempts": 100})
    # unicode + a query string (Qualifier) + a binary-ish body all go through the signature
    out = lam.invoke(FunctionName="signed", Qualifier="$LATEST",
                     Payload=json.dumps({"k": "é ☃ \u0000"}))
    assert json.loads(out["Payload"].read()) == {"echo": {"k": "é ☃ \u0000"}}
    assert [f["FunctionName"] for f in lam.list_functions()["Functions"]] == ["signed"]
    # the second profile of the credentials file is accepted too
    other = client(server, "lambda", OTHER_KEY_ID, OTHER_SECRET)
    assert other.get_function(FunctionName="signed")["Configuration"]["FunctionName"] == "signed"
    ec2 = client(server, "ec2")
    vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    assert [v["VpcId"] for v in ec2.describe_vpcs(VpcIds=[vpc])["Vpcs"]] == [vpc]
    ec2.delete_vpc(VpcId=vpc)


def test_unknown_access_key(server: LiveServer) -> None:
    status, code, message = _error(
        lambda: client(server, "lambda", "AKIDUNKNOWN", SECRET).list_functions())
    assert (status, code) == (403, "UnrecognizedClientException")
    assert message == "The security token included in the request is invalid."
    status, code, message = _error(
        lambda: client(server, "ec2", "AKIDUNKNOWN", SECRET).describe_vpcs())
    assert (status, code) == (401, "AuthFailure")
    assert message == "AWS was not able to validate the provided access credentials"


def test_wrong_secret_is_a_bad_signature(server: LiveServer) -> None:
    status, code, message = _error(
        lambda: client(server, "lambda", KEY_ID, "not-the-secret").list_functions())
    assert (status, code) == (403, "InvalidSignatureException")
    assert message.startswith("The request signature we calculated does not match")
    status, code, _ = _error(lambda: client(server, "ec2", KEY_ID, "wrong").describe_vpcs())
    assert (status, code) == (401, "AuthFailure")


def test_tampered_body_after_signing(server: LiveServer) -> None:
    lam = client(server, "lambda")

    def tamper(request, **_kwargs) -> None:
        request.body = request.body.replace(b"128", b"256")

    lam.meta.events.register_last("before-send.lambda.CreateFunction", tamper)
    status, code, _ = _error(lambda: lam.create_function(
        FunctionName="tampered", Runtime="python3.11", Handler="app.handler", MemorySize=128,
        Role="arn:aws:iam::000000000000:role/lambda",
        Code={"ZipFile": make_zip({"app.py": "x = 1\n"})}))
    assert (status, code) == (403, "InvalidSignatureException")
    assert _error(lambda: client(server, "lambda").get_function(FunctionName="tampered"))[1] \
        == "ResourceNotFoundException"


def _skewed_clock(monkeypatch: pytest.MonkeyPatch, minutes: int) -> None:
    real = botocore.auth.get_current_datetime
    monkeypatch.setattr(botocore.auth, "get_current_datetime",
                        lambda *a, **k: real(*a, **k) + dt.timedelta(minutes=minutes))


def test_clock_skew_past(server: LiveServer, monkeypatch: pytest.MonkeyPatch) -> None:
    _skewed_clock(monkeypatch, -6)
    status, code, message = _error(lambda: client(server, "lambda").list_functions())
    assert (status, code) == (403, "InvalidSignatureException")
    assert message.startswith("Signature expired: ") and "is now earlier than" in message \
        and message.endswith(" - 5 min.)")
    status, code, message = _error(lambda: client(server, "ec2").describe_vpcs())
    assert (status, code, message) == (400, "RequestExpired", "Request has expired.")


def test_clock_skew_future(server: LiveServer, monkeypatch: pytest.MonkeyPatch) -> None:
    _skewed_clock(monkeypatch, 6)
    status, code, message = _error(lambda: client(server, "lambda").list_functions())
    assert (status, code) == (403, "InvalidSignatureException")
    assert message.startswith("Signature not yet current: ") and message.endswith(" + 5 min.)")


def test_small_skew_is_accepted(server: LiveServer, monkeypatch: pytest.MonkeyPatch) -> None:
    _skewed_clock(monkeypatch, -4)
    assert "Functions" in client(server, "lambda").list_functions()


def test_signature_for_another_service_is_refused(server: LiveServer) -> None:
    # A signature made for EC2 replayed against the Lambda endpoint's path.
    lam = client(server, "lambda")
    signer = lam._request_signer  # noqa: SLF001
    original = signer._signing_name  # noqa: SLF001
    signer._signing_name = "ec2"  # noqa: SLF001
    try:
        status, code, message = _error(lam.list_functions)
    finally:
        signer._signing_name = original  # noqa: SLF001
    assert (status, code) == (403, "InvalidSignatureException")
    assert "Credential should be scoped to correct service: 'lambda'" in message


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict, bytes]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def test_unsigned_requests_are_refused_but_health_is_open(server: LiveServer) -> None:
    status, headers, body = _get(server.endpoint + "/2015-03-31/functions/")
    assert status == 403 and headers["x-amzn-ErrorType"] == "MissingAuthenticationTokenException"
    assert json.loads(body)["message"] == "Missing Authentication Token"
    status, _, body = _get(server.endpoint + "/?Action=DescribeVpcs&Version=2016-11-15")
    assert status == 401 and b"<Code>MissingAuthenticationToken</Code>" in body
    status, headers, _ = _get(server.endpoint + "/_lambdaplane/status")
    assert status == 403 and headers["x-amzn-ErrorType"] == "MissingAuthenticationTokenException"
    status, headers, _ = _get(server.endpoint + "/_lambdaplane/logs/us-east-1/signed")
    assert status == 403
    assert _get(server.endpoint + "/_lambdaplane/health")[0] == 200


def test_malformed_authorization_header(server: LiveServer) -> None:
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    for header in ("Bearer abc", "AWS4-HMAC-SHA256 Credential=AKID", f"AWS4-HMAC-SHA256 "
                   f"Credential={KEY_ID}/x/y, SignedHeaders=host, Signature=00"):
        status, headers, body = _get(server.endpoint + "/2015-03-31/functions/",
                                     {"Authorization": header, "X-Amz-Date": stamp})
        assert status == 400, header
        assert headers["x-amzn-ErrorType"] == "IncompleteSignatureException"
        assert json.loads(body)["message"]


def test_replayed_signature_on_another_path(server: LiveServer) -> None:
    """A valid signature is bound to its method, path and query: reusing the headers of a
    signed ListFunctions for GetAccountSettings fails."""
    captured: dict[str, str] = {}
    lam = client(server, "lambda")
    lam.meta.events.register_last(
        "before-send.lambda.ListFunctions",
        lambda request, **_k: captured.update({k: v for k, v in request.headers.items()}))
    lam.list_functions()
    headers = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in captured.items()}
    status, got, _ = _get(server.endpoint + "/2016-08-19/account-settings/", headers)
    assert status == 403 and got["x-amzn-ErrorType"] == "InvalidSignatureException"
    assert _get(server.endpoint + "/2015-03-31/functions", headers)[0] == 200


def test_non_loopback_without_auth_warns_loudly(tmp_path: Path) -> None:
    """Serve on 0.0.0.0 without --auth: the log says so and names the flag to use."""
    port = free_port()
    log = tmp_path / "serve.log"
    server = LiveServer(tmp_path / "data")
    cmd = [sys.executable, "-m", "lambdaplane.cli", "serve", "--host", "0.0.0.0", "--port",
           str(port), "--data-dir", str(tmp_path / "data"), "--instance", server.instance,
           "--no-uplink", "--pool-size", "0"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while b"ready on" not in log.read_bytes() and time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()
            time.sleep(0.05)
        text = log.read_text()
        assert "WITHOUT AUTHENTICATION" in text and "--auth sigv4" in text, text
    finally:
        proc.terminate()
        proc.wait(30)
        left = server.leftovers()
        server.backstop_clean()
        assert not left


def test_sigv4_without_credentials_file_refuses_to_start(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "lambdaplane.cli", "serve", "--auth", "sigv4",
                          "--data-dir", str(tmp_path)], capture_output=True, text=True,
                         timeout=30)
    assert out.returncode != 0 and "--credentials" in out.stderr
    bad = tmp_path / "creds"
    bad.write_text("[default]\nregion = us-east-1\n")
    out = subprocess.run([sys.executable, "-m", "lambdaplane.cli", "serve", "--auth", "sigv4",
                          "--credentials", str(bad), "--data-dir", str(tmp_path / "d"),
                          "--port", str(free_port())], capture_output=True, text=True,
                         timeout=30)
    assert out.returncode != 0 and "aws_access_key_id" in out.stderr


def test_cli_commands_sign_their_requests(server: LiveServer) -> None:
    """`lambdaplane status`/`logs` sign with the configured credentials, like the AWS CLI."""
    def cli(*args: str, key_id: str, secret: str) -> subprocess.CompletedProcess[str]:
        env = {"PATH": "/usr/bin:/bin", "AWS_ACCESS_KEY_ID": key_id,
               "AWS_SECRET_ACCESS_KEY": secret, "AWS_DEFAULT_REGION": REGION,
               "AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null"}
        return subprocess.run([sys.executable, "-m", "lambdaplane.cli", *args, "--endpoint",
                               server.endpoint], env=env, capture_output=True, text=True,
                              timeout=60)

    ok = cli("status", key_id=KEY_ID, secret=SECRET)
    assert ok.returncode == 0, ok.stderr
    assert "instance" in ok.stdout
    assert cli("logs", "signed", key_id=KEY_ID, secret=SECRET).returncode == 0
    refused = cli("status", key_id=KEY_ID, secret="not-the-secret")
    assert refused.returncode == 1
    assert "signature" in refused.stderr.lower()
