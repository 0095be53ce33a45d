"""`serve --database postgresql://…`: a live server keeps its store in PostgreSQL (the tests'
own, on a Unix socket): boto3 creates, invokes and lists a function and creates and describes
a VPC, subnet and security group; the rows are in PostgreSQL, no SQLite store file is made,
and a restarted server finds everything again. The CloudWatch Logs store is there too:
PutLogEvents/GetLogEvents/FilterLogEvents, and a function's own lines, are rows in PostgreSQL
(no logs.sqlite3) and survive a restart. A URL that is not PostgreSQL's, or a database
that cannot be reached, is a one-line refusal."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
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


LOGGING_APP = """
def handler(event, context):
    print("pg line", event["n"])
    return "ok"
"""


def _wait_for(fetch: Callable[[], list], enough: int, timeout_s: float = 30.0) -> list:
    deadline = time.monotonic() + timeout_s
    while True:
        found = fetch()
        if len(found) >= enough or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def test_logs_on_postgresql(pg_backed: LiveServer, database: str) -> None:
    logs = pg_backed.client("logs")
    logs.create_log_group(logGroupName="pg-app", tags={"team": "a"})
    logs.create_log_stream(logGroupName="pg-app", logStreamName="web")
    logs.create_log_stream(logGroupName="pg-app", logStreamName="worker")
    now = int(time.time() * 1000)
    logs.put_log_events(logGroupName="pg-app", logStreamName="web", logEvents=[
        {"timestamp": now + i, "message": m}
        for i, m in enumerate(["GET / 200", "GET /x 404", "100% of C:\\data"])])
    logs.put_log_events(logGroupName="pg-app", logStreamName="worker", logEvents=[
        {"timestamp": now + 10, "message": '{"job": "mail", "ms": 250}'},
        {"timestamp": now + 11, "message": '{"job": "sms", "ms": 5}'}])
    got = logs.get_log_events(logGroupName="pg-app", logStreamName="web", startFromHead=True)
    assert [e["message"] for e in got["events"]] == ["GET / 200", "GET /x 404",
                                                     "100% of C:\\data"]

    def filtered(pattern: str) -> list[tuple[str, str]]:
        out = logs.filter_log_events(logGroupName="pg-app", filterPattern=pattern)
        return [(e["logStreamName"], e["message"]) for e in out["events"]]

    assert filtered("GET -404") == [("web", "GET / 200")]
    assert filtered('"0%"') == [("web", "100% of C:\\data")]
    assert filtered("{ $.ms > 100 }") == [("worker", '{"job": "mail", "ms": 250}')]

    lam = pg_backed.lambda_()
    create_python_function(lam, "pg-logger", LOGGING_APP)
    lam.invoke(FunctionName="pg-logger", Payload=json.dumps({"n": 7}))
    group = "/aws/lambda/pg-logger"

    def printed() -> list[str]:
        try:
            out = logs.filter_log_events(logGroupName=group, filterPattern='"pg line"')
        except logs.exceptions.ResourceNotFoundException:  # made by the first output
            return []
        return [e["message"] for e in out["events"]]

    assert _wait_for(printed, 1) == ["pg line 7"], pg_backed.log()[-3000:]
    with psycopg.connect(database) as conn:  # the events are PostgreSQL's rows
        rows = conn.execute(
            "SELECT g.name, e.message FROM log_events e JOIN log_groups g ON g.id = e.group_id "
            "WHERE e.message LIKE 'pg line%%' OR g.name = 'pg-app' ORDER BY e.id").fetchall()
        assert ("/aws/lambda/pg-logger", "pg line 7") in rows
        assert [m for g, m in rows if g == "pg-app"][:2] == ["GET / 200", "GET /x 404"]
    assert not (pg_backed.data_dir / "logs.sqlite3").exists()

    pg_backed.stop()
    pg_backed.start()
    logs, lam = pg_backed.client("logs"), pg_backed.lambda_()
    assert filtered("{ $.ms > 100 }") == [("worker", '{"job": "mail", "ms": 250}')]
    assert logs.describe_log_groups(logGroupNamePrefix="pg-app")["logGroups"][0][
        "storedBytes"] > 0
    lam.invoke(FunctionName="pg-logger", Payload=json.dumps({"n": 8}))
    assert _wait_for(printed, 2) == ["pg line 7", "pg line 8"]
    streams = logs.describe_log_streams(logGroupName=group)["logStreams"]
    assert streams and all(s["storedBytes"] > 0 for s in streams)
    assert "Traceback" not in pg_backed.log(), pg_backed.log()


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
