"""`lambdaplane demo`: the whole story against a running server, with boto3 and `lambdaplane
run` as a user would do it. Builds a VPC with a private subnet and two security groups, starts a
real PostgreSQL there (its group admits port 5432 only from the function's group), deploys a
function that queries it over the VPC (PostgreSQL's wire protocol, stdlib only), invokes it and
prints the answer, the function's ENI(s) and its cold starts with and without the VPC.

Everything it made is removed on exit, also after Ctrl-C or SIGTERM: functions, the database
process and its interface, groups, subnet, VPC, the database's files."""
from __future__ import annotations

import argparse
import glob
import json
import os
import pwd
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import boto3
import botocore.config

from ..bench.common import LambdaHttp, zip_bytes
from .admin_client import ServerError, call

VPC_CIDR, SUBNET_CIDR, DB_IP = "10.77.0.0/16", "10.77.1.0/24", "10.77.1.10"
DEFAULT_REGION = "us-east-1"

# The function: PostgreSQL's v3 protocol over a plain socket (startup, trust auth, one simple
# query), so it needs nothing but the standard library inside the sandbox.
FUNCTION_CODE = r'''
import os, socket, struct

def _read(f):
    kind = f.read(1)
    if not kind:
        raise ConnectionError("the server closed the connection")
    (n,) = struct.unpack("!I", f.read(4))
    return kind, f.read(n - 4)

def _error(data):
    fields = dict((p[:1], p[1:]) for p in data.split(b"\0") if p)
    return RuntimeError(fields.get(b"M", data).decode(errors="replace"))

def query(host, sql, user="postgres", port=5432):
    with socket.create_connection((host, port), timeout=5) as s:
        body = struct.pack("!I", 196608) + b"user\0" + user.encode() + b"\0\0"
        s.sendall(struct.pack("!I", len(body) + 4) + body)
        f = s.makefile("rb")
        while True:
            kind, data = _read(f)
            if kind == b"R" and struct.unpack("!I", data[:4])[0] != 0:
                raise RuntimeError("PostgreSQL asks for a password; the demo uses trust auth")
            if kind == b"E":
                raise _error(data)
            if kind == b"Z":
                break
        q = sql.encode() + b"\0"
        s.sendall(b"Q" + struct.pack("!I", len(q) + 4) + q)
        rows = []
        while True:
            kind, data = _read(f)
            if kind == b"D":
                pos, row = 2, []
                for _ in range(struct.unpack("!H", data[:2])[0]):
                    (n,) = struct.unpack("!i", data[pos:pos + 4])
                    pos += 4
                    row.append(None if n < 0 else data[pos:pos + n].decode())
                    pos += max(n, 0)
                rows.append(row)
            elif kind == b"E":
                raise _error(data)
            elif kind == b"Z":
                break
        s.sendall(b"X" + struct.pack("!I", 4))
        return rows

def handler(event, context):
    if event.get("ping"):
        return {"pong": True}
    answer, client = query(os.environ["DB_HOST"],
                           "SELECT 'hello from ' || split_part(version(), ' on ', 1), "
                           "host(inet_client_addr())")[0]
    return {"answer": answer, "database_saw_client": client}
'''


class Demo:
    """The demo's steps; `undo` holds how to remove each thing made, run in reverse."""

    def __init__(self, endpoint: str, region: str, samples: int) -> None:
        self.endpoint = endpoint
        self.region = region
        self.samples = samples
        cfg = botocore.config.Config(retries={"max_attempts": 2}, read_timeout=120)
        creds = {"aws_access_key_id": os.environ.get("AWS_ACCESS_KEY_ID", "demo"),
                 "aws_secret_access_key": os.environ.get("AWS_SECRET_ACCESS_KEY", "demo")}
        self.ec2 = boto3.client("ec2", endpoint_url=endpoint, region_name=region, config=cfg,
                                **creds)
        self.lam = boto3.client("lambda", endpoint_url=endpoint, region_name=region,
                                config=cfg, **creds)
        self.tag = secrets.token_hex(2)
        self.undo: list[tuple[str, Callable[[], None]]] = []

    # steps ------------------------------------------------------------------------------
    def network(self) -> tuple[str, str, str, str]:
        vpc = self.ec2.create_vpc(CidrBlock=VPC_CIDR)["Vpc"]["VpcId"]
        self.undo.append((f"VPC {vpc}", lambda: self.ec2.delete_vpc(VpcId=vpc)))
        subnet = self.ec2.create_subnet(VpcId=vpc, CidrBlock=SUBNET_CIDR)["Subnet"]["SubnetId"]
        self.undo.append((f"subnet {subnet}", lambda: self.ec2.delete_subnet(SubnetId=subnet)))
        fn = self._group(vpc, f"demo-fn-{self.tag}", "the demo function")
        db = self._group(vpc, f"demo-db-{self.tag}", "PostgreSQL: 5432 from demo-fn only")
        self.ec2.authorize_security_group_ingress(GroupId=db, IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": 5432, "ToPort": 5432,
             "UserIdGroupPairs": [{"GroupId": fn}]}])
        print(f"VPC {vpc} {VPC_CIDR}, private subnet {subnet} {SUBNET_CIDR} (no route out)")
        print(f"security groups: {db} admits tcp/5432 only from {fn}")
        return vpc, subnet, fn, db

    def _group(self, vpc: str, name: str, description: str) -> str:
        gid = self.ec2.create_security_group(GroupName=name, Description=description,
                                             VpcId=vpc)["GroupId"]
        self.undo.append((f"security group {gid}",
                          lambda: self.ec2.delete_security_group(GroupId=gid)))
        return gid

    def postgres(self, subnet: str, db_group: str) -> None:
        """initdb in a scratch directory, then `lambdaplane run` the server in the subnet."""
        bin_dir = postgres_bin()
        pg = pwd.getpwnam("postgres")
        root = Path(tempfile.mkdtemp(prefix="lp-demo-pg-"))
        self.undo.append((f"database files {root}",
                          lambda: shutil.rmtree(root, ignore_errors=True)))
        os.chown(root, pg.pw_uid, pg.pw_gid)
        data = root / "data"
        as_postgres = ["setpriv", f"--reuid={pg.pw_uid}", f"--regid={pg.pw_gid}",
                       "--init-groups"]
        subprocess.run([*as_postgres, str(bin_dir / "initdb"), "-D", str(data), "-A", "trust",
                        "-U", "postgres"], check=True, capture_output=True, timeout=300,
                       cwd=root)
        with open(data / "pg_hba.conf", "a") as f:
            # who may connect is the security group's decision, not PostgreSQL's
            f.write(f"host all all {VPC_CIDR} trust\n")
        log = open(root / "run.log", "wb")
        argv = [sys.executable, "-m", "lambdaplane.cli", "run", "--endpoint", self.endpoint,
                "--region", self.region, "--subnet", subnet, "--security-group", db_group,
                "--ip", DB_IP, "--name", f"demo-postgres-{self.tag}", "--",
                *as_postgres, str(bin_dir / "postgres"), "-D", str(data), "-k", str(data),
                "-c", f"listen_addresses={DB_IP}"]
        # Its own session: our Ctrl-C is handled here, and the cleanup stops it in order.
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        self.undo.append(("PostgreSQL and its interface", lambda: _stop(proc)))
        netns = self._resource_netns(proc, root / "run.log")
        deadline = time.monotonic() + 60
        while subprocess.run(["ip", "netns", "exec", netns, str(bin_dir / "pg_isready"), "-q",
                              "-h", DB_IP], timeout=30).returncode != 0:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("PostgreSQL did not start:\n"
                                   + (root / "run.log").read_text(errors="replace")[-3000:])
            time.sleep(0.2)
        print(f"PostgreSQL {DB_IP}:5432 running in the private subnet (`lambdaplane run`)")

    def _resource_netns(self, proc: subprocess.Popen, log: Path) -> str:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError("lambdaplane run exited:\n"
                                   + log.read_text(errors="replace")[-3000:])
            for r in call(self.endpoint, "GET", "ps").get("resources", []):
                if r.get("owner_pid") == proc.pid and r.get("process_pid"):
                    return str(r["netns"])
            time.sleep(0.1)
        raise RuntimeError("the database's interface did not come up")

    def functions(self, subnet: str, fn_group: str) -> tuple[str, str]:
        name, twin = f"demo-pg-query-{self.tag}", f"demo-pg-novpc-{self.tag}"
        code = zip_bytes({"app.py": FUNCTION_CODE})
        for fname, vpc in ((name, {"SubnetIds": [subnet], "SecurityGroupIds": [fn_group]}),
                           (twin, None)):
            extra = {"VpcConfig": vpc} if vpc else {}
            self.lam.create_function(
                FunctionName=fname, Runtime="python3.11", Handler="app.handler",
                Role="arn:aws:iam::000000000000:role/lambda-demo", Code={"ZipFile": code},
                Timeout=10, Environment={"Variables": {"DB_HOST": DB_IP}}, **extra)
            self.undo.append((f"function {fname}",
                              lambda f=fname: self.lam.delete_function(FunctionName=f)))
        for fname in (name, twin):
            self.lam.get_waiter("function_active_v2").wait(
                FunctionName=fname, WaiterConfig={"Delay": 0.2, "MaxAttempts": 600})
        print(f"function {name} deployed in {subnet} with {fn_group}")
        return name, twin

    def query(self, name: str) -> dict:
        resp = self.lam.invoke(FunctionName=name, Payload=b"{}")
        body = json.loads(resp["Payload"].read())
        if resp.get("FunctionError"):
            raise RuntimeError(f"the function failed: {body}")
        print(f"answer: {body['answer']!r} (the database saw the client as "
              f"{body['database_saw_client']})")
        return body

    def enis(self, subnet: str, fn_group: str) -> list[dict]:
        enis = self.ec2.describe_network_interfaces(Filters=[
            {"Name": "subnet-id", "Values": [subnet]}, {"Name": "group-id", "Values": [fn_group]},
            {"Name": "interface-type", "Values": ["lambda"]}])["NetworkInterfaces"]
        listed = ", ".join(f"{e['NetworkInterfaceId']} {e['PrivateIpAddress']}" for e in enis)
        print(f"the function's ENIs in {subnet}: {len(enis)} — {listed}")
        return enis

    def cold_starts(self, name: str, twin: str) -> dict[str, float]:
        """Cold starts of the same code with and without the VPC, interleaved."""
        http = LambdaHttp(self.endpoint)
        times: dict[str, list[float]] = {name: [], twin: []}
        try:
            for i in range(self.samples):
                for fname in (name, twin):
                    http.json("PUT", f"/2015-03-31/functions/{fname}/configuration",
                              {"Description": f"demo cold start {i}"})
                    http.wait_for(fname, lambda c: c.get("LastUpdateStatus") == "Successful")
                    status, ms, body = http.invoke(fname, b'{"ping": true}')
                    if status != 200 or b"pong" not in body:
                        raise RuntimeError(f"invoke of {fname} failed: {status} {body[:200]!r}")
                    times[fname].append(ms)
        finally:
            http.close()
        vpc, plain = statistics.median(times[name]), statistics.median(times[twin])
        print(f"cold start p50 over {self.samples}: VPC {vpc:.1f} ms, no VPC {plain:.1f} ms "
              f"(ratio {vpc / plain:.2f})")
        return {"vpc_p50_ms": vpc, "no_vpc_p50_ms": plain}

    # cleanup ----------------------------------------------------------------------------
    def cleanup(self) -> list[str]:
        """Undo in reverse; a group or subnet the service still uses for a moment (its ENI
        goes after the function) is retried for a while. Returns what could not be removed."""
        failed: list[str] = []
        while self.undo:
            what, undo = self.undo.pop()
            deadline = time.monotonic() + 60
            while True:
                try:
                    undo()
                    break
                except Exception as e:  # noqa: BLE001 - reported below, never fatal
                    code = getattr(e, "response", {}).get("Error", {}).get("Code", "")
                    if code in ("ResourceNotFoundException", "InvalidGroup.NotFound",
                                "InvalidSubnetID.NotFound", "InvalidVpcID.NotFound"):
                        break
                    if code == "DependencyViolation" and time.monotonic() < deadline:
                        time.sleep(0.3)
                        continue
                    failed.append(f"{what}: {e}")
                    break
        return failed


def postgres_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
    if not found:
        raise RuntimeError("PostgreSQL is not installed (apt-get install postgresql)")
    return Path(found[-1]).parent


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM to `lambdaplane run`: it stops PostgreSQL and releases the interface."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _interrupt(_sig: int, _frame: object) -> None:
    raise KeyboardInterrupt


def main(endpoint: str, args: argparse.Namespace) -> int:
    if os.geteuid() != 0:
        print("lambdaplane demo: run as root (it starts PostgreSQL with `lambdaplane run`)",
              file=sys.stderr)
        return 2
    demo = Demo(endpoint, getattr(args, "region", None) or DEFAULT_REGION,
                max(1, int(getattr(args, "samples", 5) or 5)))
    previous = signal.signal(signal.SIGTERM, _interrupt)
    code = 0
    try:
        _vpc, subnet, fn_group, db_group = demo.network()
        demo.postgres(subnet, db_group)
        name, twin = demo.functions(subnet, fn_group)
        demo.query(name)
        demo.enis(subnet, fn_group)
        demo.cold_starts(name, twin)
    except KeyboardInterrupt:
        print("\ninterrupted; cleaning up", file=sys.stderr)
        code = 130
    except (RuntimeError, ServerError, subprocess.SubprocessError, OSError) as e:
        print(f"lambdaplane demo: {e}", file=sys.stderr)
        code = 1
    except Exception as e:  # botocore errors: shown, then cleaned up like any other
        print(f"lambdaplane demo: {type(e).__name__}: {e}", file=sys.stderr)
        code = 1
    finally:
        # A second Ctrl-C must not leave half of it behind.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        failed = demo.cleanup()
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, previous)
    for line in failed:
        print(f"lambdaplane demo: could not remove {line}", file=sys.stderr)
    print("cleaned up" if not failed else "cleanup incomplete", file=sys.stderr)
    return code or (1 if failed else 0)
