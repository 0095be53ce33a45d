"""A real PostgreSQL in a private subnet, started with one `lambdaplane run` command: a peer
in an allowed group gets `SELECT 1` answered, a peer in another subnet and group times out."""
from __future__ import annotations

import os
import pwd
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.vpc_support import PG_BIN, postgres_cluster, resource

pytestmark = pytest.mark.root

DB_IP = "10.40.1.10"


@pytest.fixture
def pg_data() -> Iterator[Path]:
    with postgres_cluster() as data:
        yield data


def _psql(netns: str, host: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", netns, "psql", "-h", host, "-U", "postgres",
                           "-tAc", "SELECT 1"], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PGCONNECT_TIMEOUT": "2"})


def test_postgres_answers_allowed_peer_only(server, pg_data: Path) -> None:
    ec2 = server.ec2()
    vpc = ec2.create_vpc(CidrBlock="10.40.0.0/16")["Vpc"]["VpcId"]
    private = ec2.create_subnet(VpcId=vpc, CidrBlock="10.40.1.0/24")["Subnet"]["SubnetId"]
    apps = ec2.create_subnet(VpcId=vpc, CidrBlock="10.40.2.0/24")["Subnet"]["SubnetId"]
    db = ec2.create_security_group(GroupName="db", Description="db", VpcId=vpc)["GroupId"]
    app = ec2.create_security_group(GroupName="app", Description="app", VpcId=vpc)["GroupId"]
    other = ec2.create_security_group(GroupName="other", Description="o", VpcId=vpc)["GroupId"]
    ec2.authorize_security_group_ingress(GroupId=db, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 5432, "ToPort": 5432,
         "UserIdGroupPairs": [{"GroupId": app}]}])
    pg = pwd.getpwnam("postgres")
    postgres = ["setpriv", f"--reuid={pg.pw_uid}", f"--regid={pg.pw_gid}", "--init-groups",
                str(PG_BIN / "postgres"), "-D", str(pg_data), "-k", str(pg_data),
                "-c", f"listen_addresses={DB_IP}"]
    with resource(server, private, [db], ip=DB_IP, argv=postgres, name="postgres") as database, \
            resource(server, apps, [app]) as allowed, resource(server, apps, [other]) as denied:
        assert database.ip == DB_IP
        answer = None
        for _ in range(60):  # until PostgreSQL has started
            answer = _psql(allowed.netns, DB_IP)
            if answer.returncode == 0:
                break
        assert answer is not None and answer.stdout.strip() == "1", answer.stderr
        refused = _psql(denied.netns, DB_IP)
        assert refused.returncode != 0 and "timeout expired" in refused.stderr
        enis = ec2.describe_network_interfaces(Filters=[
            {"Name": "group-name", "Values": ["db"]}])["NetworkInterfaces"]
        assert [e["PrivateIpAddress"] for e in enis] == [DB_IP]
