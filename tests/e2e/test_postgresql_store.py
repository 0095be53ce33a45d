"""`serve --database postgresql://…`: a live server keeps its store in PostgreSQL (the tests'
own, on a Unix socket): boto3 creates, invokes and lists a function and creates and describes
a VPC, subnet and security group; the rows are in PostgreSQL, no SQLite store file is made,
and a restarted server finds everything again. A URL that is not PostgreSQL's, or a database
that cannot be reached, is a one-line refusal."""
from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.conftest import live_server
from tests.harness import LiveServer, create_python_function
from tests.pg_server import PgServer

pytestmark = pytest.mark.root

APP = """
def handler(event, context):
    return {"echo": event, "fn": context.function_name}
"""


@pytest.fixture(scope="module")
def database(pg_server: PgServer) -> Iterator[str]:
    with pg_server.database() as url:
        yield url


@pytest.fixture(scope="module")
def pg_backed(tmp_path_factory: pytest.TempPathFactory, database: str) -> Iterator[LiveServer]:
    yield from live_server(tmp_path_factory.mktemp("lp"), "--database", database)


def test_lambda_and_vpc_on_postgresql(pg_backed: LiveServer, database: str) -> None:
    lam = pg_backed.lambda_()
    create_python_function(lam, "pg-echo", APP)
    out = lam.invoke(FunctionName="pg-echo", Payload=json.dumps({"n": 1}))
    assert out["StatusCode"] == 200
    assert json.loads(out["Payload"].read()) == {"echo": {"n": 1}, "fn": "pg-echo"}
    assert [f["FunctionName"] for f in lam.list_functions()["Functions"]] == ["pg-echo"]

    ec2 = pg_backed.ec2()
    vpc = ec2.create_vpc(CidrBlock="10.61.0.0/16", TagSpecifications=[
        {"ResourceType": "vpc", "Tags": [{"Key": "Name", "Value": "on-pg"}]}])["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.61.1.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName="web", Description="web",
                                      VpcId=vpc)["GroupId"]
    ec2.authorize_security_group_ingress(GroupId=group, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443,
         "IpRanges": [{"CidrIp": "10.61.0.0/16"}]}])
    described = ec2.describe_vpcs(VpcIds=[vpc])["Vpcs"][0]
    assert described["CidrBlock"] == "10.61.0.0/16"
    assert {"Key": "Name", "Value": "on-pg"} in described["Tags"]
    assert ec2.describe_subnets(SubnetIds=[subnet])["Subnets"][0]["VpcId"] == vpc
    rules = ec2.describe_security_groups(GroupIds=[group])["SecurityGroups"][0]["IpPermissions"]
    assert [(r["FromPort"], r["IpRanges"][0]["CidrIp"]) for r in rules] == \
        [(443, "10.61.0.0/16")]

    with psycopg.connect(database) as conn:  # the state is PostgreSQL's, not a file's
        assert conn.execute("SELECT count(*) FROM functions").fetchone() == (1,)
        assert conn.execute("SELECT cidr FROM ec2_vpcs WHERE id=%s", (vpc,)).fetchone() == \
            ("10.61.0.0/16",)
    assert not (pg_backed.data_dir / "lambdaplane.sqlite3").exists()
    assert "Traceback" not in pg_backed.log(), pg_backed.log()

    pg_backed.stop()
    pg_backed.start()
    lam, ec2 = pg_backed.lambda_(), pg_backed.ec2()
    out = lam.invoke(FunctionName="pg-echo", Payload=json.dumps({"n": 2}))
    assert json.loads(out["Payload"].read())["echo"] == {"n": 2}
    assert lam.get_function(FunctionName="pg-echo")["Configuration"]["State"] == "Active"
    assert ec2.describe_subnets(SubnetIds=[subnet])["Subnets"][0]["CidrBlock"] == \
        "10.61.1.0/24"


def _serve(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lambdaplane.cli", "serve", "--port", "0",
                           "--data-dir", str(tmp_path / "data"), "--no-uplink", *args],
                          capture_output=True, text=True, timeout=120)


def test_database_url_refusals(tmp_path: Path) -> None:
    done = _serve(tmp_path, "--database", "mysql://db/lp")
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "--database must be a postgresql:// URL" in done.stderr
    missing = tmp_path / "no-socket-here"
    done = _serve(tmp_path, "--database", f"postgresql://lp:secret@/lp?host={missing}")
    assert done.returncode != 0 and "Traceback" not in done.stderr, done.stderr
    assert "cannot connect to PostgreSQL" in done.stderr and "secret" not in done.stderr
