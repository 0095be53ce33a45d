"""The AWS CLI v1 (awscli from PyPI, run as `python -m awscli`) end to end against a live server:
Lambda (create, wait, invoke with --log-type Tail, update code, get, delete), EC2 (VPC, subnet,
security group, an ingress rule, a network interface), IAM (role, policies), STS, and the error a
user sees for a service lambdaplane does not serve. Credentials come from the environment; HOME
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
