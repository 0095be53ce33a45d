"""The AWS CLI v1 (awscli from PyPI, run as `python -m awscli`) end to end against a live server:
Lambda (create, wait, invoke with --log-type Tail, update code, get, delete; layers, versions,
aliases, function URLs, permissions, a version invoked with its log tail), Logs (filter-log-events,
get-log-events of a function's group), EC2 (VPC, subnet, security group, an ingress rule, a network
interface), IAM (role, policies), STS, and the error a user sees for a service lambdaplane does not serve. Credentials come from the environment; HOME
and the CLI's config files point into the test's temporary directory."""
from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness import LiveServer, make_zip

pytestmark = pytest.mark.root

TRUST = {"Version": "2012-10-17", "Statement": [{
    "Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
    "Action": "sts:AssumeRole"}]}
BASIC = "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"


class Aws:
    def __init__(self, server: LiveServer, home: Path) -> None:
        self.endpoint = server.endpoint
        self.home = home
        self.env = {"PATH": "/usr/bin:/bin", "HOME": str(home),
                    "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
                    "AWS_DEFAULT_REGION": "us-east-1", "AWS_PAGER": "",
                    "AWS_CONFIG_FILE": str(home / "config"),
                    "AWS_SHARED_CREDENTIALS_FILE": str(home / "credentials")}

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "awscli", "--endpoint-url", self.endpoint,
                               "--output", "json", *args], env=self.env, cwd=self.home,
                              capture_output=True, text=True, timeout=180)

    def __call__(self, *args: str) -> dict:
        out = self.run(*args)
        assert out.returncode == 0, f"aws {' '.join(args)}: {out.stderr}"
        return json.loads(out.stdout) if out.stdout.strip() else {}

    def fails(self, *args: str) -> str:
        out = self.run(*args)
        assert out.returncode != 0, out.stdout
        return out.stderr


@pytest.fixture
def aws(server: LiveServer, tmp_path: Path) -> Aws:
    return Aws(server, tmp_path)


def test_sts_and_iam(aws: Aws) -> None:
    me = aws("sts", "get-caller-identity")
    assert (me["Account"], me["Arn"]) == ("000000000000", "arn:aws:iam::000000000000:root")
    (aws.home / "trust.json").write_text(json.dumps(TRUST))
    role = aws("iam", "create-role", "--role-name", "cli-role",
               "--assume-role-policy-document", "file://trust.json")["Role"]
    assert role["Arn"] == "arn:aws:iam::000000000000:role/cli-role"
    assert aws("iam", "get-role", "--role-name", "cli-role")["Role"][
        "AssumeRolePolicyDocument"] == TRUST
    aws("iam", "attach-role-policy", "--role-name", "cli-role", "--policy-arn", BASIC)
    attached = aws("iam", "list-attached-role-policies", "--role-name", "cli-role")
    assert attached["AttachedPolicies"][0]["PolicyArn"] == BASIC
    assert "DeleteConflict" in aws.fails("iam", "delete-role", "--role-name", "cli-role")
    aws("iam", "put-role-policy", "--role-name", "cli-role", "--policy-name", "inline",
        "--policy-document", json.dumps({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "logs:*", "Resource": "*"}]}))
    assert aws("iam", "list-role-policies", "--role-name", "cli-role")["PolicyNames"] == \
        ["inline"]
    aws("iam", "delete-role-policy", "--role-name", "cli-role", "--policy-name", "inline")
    aws("iam", "detach-role-policy", "--role-name", "cli-role", "--policy-arn", BASIC)
    aws("iam", "delete-role", "--role-name", "cli-role")
    stderr = aws.fails("iam", "get-role", "--role-name", "cli-role")
    assert "NoSuchEntity" in stderr and "cannot be found" in stderr


def test_lambda(aws: Aws) -> None:
    (aws.home / "fn.zip").write_bytes(make_zip({"app.py": (
        "def handler(event, context):\n    print('hello from the cli')\n"
        "    return {'got': event}\n")}))
    created = aws("lambda", "create-function", "--function-name", "cli-fn",
                  "--runtime", "python3.11", "--handler", "app.handler",
                  "--role", "arn:aws:iam::000000000000:role/lambda",
                  "--zip-file", "fileb://fn.zip")
    assert created["FunctionName"] == "cli-fn"
    aws("lambda", "wait", "function-active-v2", "--function-name", "cli-fn")
    result = aws("lambda", "invoke", "--function-name", "cli-fn", "--log-type", "Tail",
                 "--payload", '{"a": 1}',  # v1 sends it as given
                 "out.json")
    assert result["StatusCode"] == 200
    assert json.loads((aws.home / "out.json").read_text()) == {"got": {"a": 1}}
    tail = base64.b64decode(result["LogResult"]).decode()
    assert "hello from the cli" in tail and "START RequestId" in tail

    (aws.home / "fn2.zip").write_bytes(make_zip({"app.py": (
        "def handler(event, context):\n    return 'v2'\n")}))
    updated = aws("lambda", "update-function-code", "--function-name", "cli-fn",
                  "--zip-file", "fileb://fn2.zip")
    assert updated["CodeSha256"] != created["CodeSha256"]
    aws("lambda", "wait", "function-updated-v2", "--function-name", "cli-fn")
    aws("lambda", "invoke", "--function-name", "cli-fn", "out2.json")
    assert json.loads((aws.home / "out2.json").read_text()) == "v2"
    names = [f["FunctionName"] for f in aws("lambda", "list-functions")["Functions"]]
    assert "cli-fn" in names
    aws("lambda", "delete-function", "--function-name", "cli-fn")
    assert "ResourceNotFoundException" in aws.fails("lambda", "get-function",
                                                    "--function-name", "cli-fn")


def test_ec2(aws: Aws) -> None:
    vpc = aws("ec2", "create-vpc", "--cidr-block", "10.42.0.0/16")["Vpc"]["VpcId"]
    subnet = aws("ec2", "create-subnet", "--vpc-id", vpc,
                 "--cidr-block", "10.42.1.0/24")["Subnet"]["SubnetId"]
    group = aws("ec2", "create-security-group", "--group-name", "cli", "--description", "cli",
                "--vpc-id", vpc)["GroupId"]
    aws("ec2", "authorize-security-group-ingress", "--group-id", group, "--protocol", "tcp",
        "--port", "8080", "--cidr", "10.42.0.0/16")
    described = aws("ec2", "describe-security-groups", "--group-ids", group)
    ingress = described["SecurityGroups"][0]["IpPermissions"]
    assert [(p["IpProtocol"], p["FromPort"], p["IpRanges"][0]["CidrIp"]) for p in ingress] == \
        [("tcp", 8080, "10.42.0.0/16")]
    eni = aws("ec2", "create-network-interface", "--subnet-id", subnet,
              "--groups", group)["NetworkInterface"]
    assert eni["PrivateIpAddress"].startswith("10.42.1.")
    aws("ec2", "delete-network-interface", "--network-interface-id",
        eni["NetworkInterfaceId"])
    aws("ec2", "revoke-security-group-ingress", "--group-id", group, "--protocol", "tcp",
        "--port", "8080", "--cidr", "10.42.0.0/16")
    aws("ec2", "delete-security-group", "--group-id", group)
    aws("ec2", "delete-subnet", "--subnet-id", subnet)
    aws("ec2", "delete-vpc", "--vpc-id", vpc)
    assert "InvalidVpcID.NotFound" in aws.fails("ec2", "describe-vpcs", "--vpc-ids", vpc)


def test_a_service_lambdaplane_does_not_serve(aws: Aws) -> None:
    stderr = aws.fails("dynamodb", "list-tables")
    assert "UnknownServiceException" in stderr and "does not serve" in stderr


def test_lambda_versions_aliases_urls_permissions_layers(aws: Aws) -> None:
    """publish-layer-version, create-function with the layer, publish-version, create-alias,
    create-function-url-config, add-permission, get-policy, invoke of a version with
    --log-type Tail; then everything deleted again."""
    (aws.home / "layer.zip").write_bytes(make_zip({"python/clilib.py": "WORD = 'layered'\n"}))
    layer = aws("lambda", "publish-layer-version", "--layer-name", "cli-lib",
                "--zip-file", "fileb://layer.zip", "--compatible-runtimes", "python3.11")
    assert layer["Version"] == 1 and layer["LayerVersionArn"].endswith(":layer:cli-lib:1")
    (aws.home / "fn.zip").write_bytes(make_zip({"app.py": (
        "import clilib\n\ndef handler(event, context):\n"
        "    print('version', context.function_version)\n"
        "    return {'word': clilib.WORD, 'version': context.function_version}\n")}))
    aws("lambda", "create-function", "--function-name", "cli-ver", "--runtime", "python3.11",
        "--handler", "app.handler", "--role", "arn:aws:iam::000000000000:role/lambda",
        "--zip-file", "fileb://fn.zip", "--layers", layer["LayerVersionArn"])
    aws("lambda", "wait", "function-active-v2", "--function-name", "cli-ver")

    version = aws("lambda", "publish-version", "--function-name", "cli-ver",
                  "--description", "first")
    assert (version["Version"], version["Description"]) == ("1", "first")
    assert [v["Version"] for v in aws("lambda", "list-versions-by-function",
                                      "--function-name", "cli-ver")["Versions"]] == \
        ["$LATEST", "1"]
    alias = aws("lambda", "create-alias", "--function-name", "cli-ver", "--name", "live",
                "--function-version", "1")
    assert alias["AliasArn"].endswith(":function:cli-ver:live")
    url = aws("lambda", "create-function-url-config", "--function-name", "cli-ver",
              "--qualifier", "live", "--auth-type", "NONE")
    assert url["FunctionUrl"].startswith("http") and url["AuthType"] == "NONE"
    assert aws("lambda", "get-function-url-config", "--function-name", "cli-ver",
               "--qualifier", "live")["FunctionUrl"] == url["FunctionUrl"]
    aws("lambda", "add-permission", "--function-name", "cli-ver", "--qualifier", "live",
        "--statement-id", "url", "--action", "lambda:InvokeFunctionUrl", "--principal", "*",
        "--function-url-auth-type", "NONE")
    added = aws("lambda", "add-permission", "--function-name", "cli-ver", "--statement-id",
                "s3", "--action", "lambda:InvokeFunction", "--principal", "s3.amazonaws.com",
                "--source-arn", "arn:aws:s3:::cli-bucket")
    assert json.loads(added["Statement"])["Sid"] == "s3"
    policy = json.loads(aws("lambda", "get-policy", "--function-name", "cli-ver")["Policy"])
    assert [s["Sid"] for s in policy["Statement"]] == ["s3"]
    alias_policy = json.loads(aws("lambda", "get-policy", "--function-name", "cli-ver",
                                  "--qualifier", "live")["Policy"])
    assert [s["Sid"] for s in alias_policy["Statement"]] == ["url"]
    assert "ResourceConflictException" in aws.fails(
        "lambda", "add-permission", "--function-name", "cli-ver", "--statement-id", "s3",
        "--action", "lambda:InvokeFunction", "--principal", "s3.amazonaws.com")

    result = aws("lambda", "invoke", "--function-name", "cli-ver", "--qualifier", "1",
                 "--log-type", "Tail", "out.json")
    assert result["ExecutedVersion"] == "1"
    assert json.loads((aws.home / "out.json").read_text()) == {"word": "layered",
                                                               "version": "1"}
    tail = base64.b64decode(result["LogResult"]).decode()
    assert "version 1" in tail and "REPORT RequestId" in tail
    via_alias = aws("lambda", "invoke", "--function-name", "cli-ver", "--qualifier", "live",
                    "out2.json")
    assert via_alias["ExecutedVersion"] == "1"

    aws("lambda", "remove-permission", "--function-name", "cli-ver", "--statement-id", "s3")
    aws("lambda", "delete-function-url-config", "--function-name", "cli-ver",
        "--qualifier", "live")
    aws("lambda", "delete-alias", "--function-name", "cli-ver", "--name", "live")
    aws("lambda", "delete-function", "--function-name", "cli-ver")
    aws("lambda", "delete-layer-version", "--layer-name", "cli-lib", "--version-number", "1")
    assert "ResourceNotFoundException" in aws.fails(
        "lambda", "get-layer-version", "--layer-name", "cli-lib", "--version-number", "1")


def test_logs_of_a_function(aws: Aws) -> None:
    """What a function printed, read back with logs filter-log-events and get-log-events."""
    (aws.home / "fn.zip").write_bytes(make_zip({"app.py": (
        "def handler(event, context):\n    print('marker', event['n'])\n    return 1\n")}))
    aws("lambda", "create-function", "--function-name", "cli-logs", "--runtime", "python3.11",
        "--handler", "app.handler", "--role", "arn:aws:iam::000000000000:role/lambda",
        "--zip-file", "fileb://fn.zip")
    aws("lambda", "wait", "function-active-v2", "--function-name", "cli-logs")
    for n in (1, 2):
        aws("lambda", "invoke", "--function-name", "cli-logs", "--payload",
            json.dumps({"n": n}), f"out{n}.json")
    group = "/aws/lambda/cli-logs"
    groups = aws("logs", "describe-log-groups", "--log-group-name-prefix", group)["logGroups"]
    assert [g["logGroupName"] for g in groups] == [group]
    found = aws("logs", "filter-log-events", "--log-group-name", group,
                "--filter-pattern", "marker")["events"]
    assert sorted(e["message"].strip() for e in found) == ["marker 1", "marker 2"]
    streams = aws("logs", "describe-log-streams", "--log-group-name", group)["logStreams"]
    messages = [e["message"] for s in streams for e in aws(
        "logs", "get-log-events", "--log-group-name", group, "--log-stream-name",
        s["logStreamName"], "--start-from-head")["events"]]
    assert sum(m.startswith("START RequestId") for m in messages) == 2
    assert any(m.strip() == "marker 2" for m in messages)
    aws("lambda", "delete-function", "--function-name", "cli-logs")
