"""Helpers for the VPC end-to-end tests: programs started with the real `lambdaplane run` CLI
(each in its own namespace with an interface in a subnet) and probes sent from inside those
namespaces. Traffic only ever goes to addresses inside namespaces the server made."""
from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from botocore.exceptions import ClientError

from tests.harness import LiveServer

PUBLIC_HOST = "203.0.113.10"  # the tests' "public host": a documentation address

# A "public host": port 80 on each address given (default: PUBLIC_HOST; IPv4 or IPv6) answers
# every TCP connection with the address it came from. "listening" once every one is bound.
WHO_AM_I = r"""
import socket, sys, threading
def listen(addr):
    s = socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, 80)); s.listen(64)
    return s
def serve(s):
    while True:
        c, peer = s.accept()
        try:
            c.sendall(b"you are " + peer[0].encode())
        finally:
            c.close()
for s in [listen(a) for a in sys.argv[1:] or ["203.0.113.10"]]:
    threading.Thread(target=serve, args=(s,), daemon=True).start()
print("listening", flush=True)
threading.Event().wait()
"""

# A listener for TCP (every given port) and UDP (echo): answers with its own address.
LISTENER = r"""
import socket, sys, threading
ports = [int(p) for p in sys.argv[1:]]
def tcp(port):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port)); s.listen(64)
    while True:
        c, _ = s.accept()
        try:
            c.sendall(b"hello from " + c.getsockname()[0].encode())
        finally:
            c.close()
def udp(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", port))
    while True:
        data, peer = s.recvfrom(2048); s.sendto(b"echo " + data, peer)
for p in ports:
    threading.Thread(target=tcp, args=(p,), daemon=True).start()
    threading.Thread(target=udp, args=(p,), daemon=True).start()
print("listening", flush=True)
threading.Event().wait()
"""

PROBE = r"""
import socket, sys
proto, host, port, timeout = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
try:
    if proto == "icmp":  # an echo request from a raw socket (we are root); no ping binary here
        s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        s.settimeout(timeout)
        body = bytes([8, 0, 0, 0, 0x12, 0x34, 0, 1]) + b"lambdaplane"
        csum = sum(int.from_bytes(body[i:i + 2], "big") for i in range(0, len(body) - 1, 2))
        csum += body[-1] << 8 if len(body) % 2 else 0
        csum = (csum >> 16) + (csum & 0xFFFF); csum = ~(csum + (csum >> 16)) & 0xFFFF
        s.sendto(body[:2] + csum.to_bytes(2, "big") + body[4:], (host, 0))
        while True:
            packet, peer = s.recvfrom(2048)
            icmp = packet[(packet[0] & 0x0F) * 4:]
            if peer[0] == host and icmp[0] == 0 and icmp[4:6] == bytes([0x12, 0x34]):
                print("pong"); break
    elif proto == "tcp":
        s = socket.create_connection((host, port), timeout=timeout)
        print(s.recv(100).decode() or "empty")
    else:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(timeout)
        s.sendto(b"ping", (host, port)); print(s.recvfrom(100)[0].decode())
except socket.timeout:
    print("timeout")
except ConnectionRefusedError:
    print("refused")
except OSError as e:
    print("error", e.errno)
"""


def cli(server: LiveServer, command: str, *args: str,
        timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`lambdaplane COMMAND --endpoint … ARGS` as a user would type it."""
    return subprocess.run([sys.executable, "-m", "lambdaplane.cli", command, "--endpoint",
                           server.endpoint, *args], capture_output=True, text=True,
                          timeout=timeout)


@dataclass
class Resource:
    """A program started with `lambdaplane run`, and its interface."""
    proc: subprocess.Popen[str]  # the CLI
    eni_id: str
    ip: str
    netns: str
    program_pid: int  # the CLI's child

    def probe(self, host: str, port: int, proto: str = "tcp", timeout: float = 1.0) -> str:
        """Connect from inside this resource's namespace: the reply, 'timeout' or 'refused'."""
        return probe_from(self.netns, host, port, proto, timeout)

    def ping(self, host: str) -> bool:
        """An ICMP echo from inside this namespace: True when the reply came back."""
        result = self.probe(host, 0, proto="icmp")
        assert result in ("pong", "timeout"), result
        return result == "pong"


def probe_from(netns: str, host: str, port: int, proto: str = "tcp",
               timeout: float = 1.0) -> str:
    """PROBE from inside `netns` (TCP to an IPv4 or IPv6 host, UDP or ICMP to an IPv4 one):
    the reply, 'timeout', 'refused' or 'error N'."""
    out = subprocess.run(["ip", "netns", "exec", netns, sys.executable, "-c", PROBE, proto,
                          host, str(port), str(timeout)],
                         capture_output=True, text=True, timeout=timeout + 30)
    return out.stdout.strip() or out.stderr.strip()


def run_args(server: LiveServer, subnet: str, groups: list[str], ip: str | None = None,
             name: str | None = None, host: str | None = None) -> list[str]:
    args = [sys.executable, "-m", "lambdaplane.cli", "run", "--endpoint", server.endpoint,
            "--subnet", subnet]
    if host:  # on the agent's host (`lambdaplane agent --name HOST`; this machine in tests)
        args += ["--host", host]
    for g in groups:
        args += ["--security-group", g]
    if ip:
        args += ["--ip", ip]
    if name:
        args += ["--name", name]
    return args


@contextlib.contextmanager
def resource(server: LiveServer, subnet: str, groups: list[str], ports: tuple[int, ...] = (),
             ip: str | None = None, argv: list[str] | None = None,
             name: str | None = None, host: str | None = None,
             listens: bool = False) -> Iterator[Resource]:
    """Start a program (default: the listener on `ports`) with `lambdaplane run`; stop it after.
    Ready when the program printed "listening" (the default one, or `listens`)."""
    command = argv or [sys.executable, "-u", "-c", LISTENER, *map(str, ports)]
    proc = subprocess.Popen([*run_args(server, subnet, groups, ip, name, host), "--", *command],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        found = wait_for_resource(server, proc, command)
        if argv is None or listens:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "listening"
        yield found
    finally:
        stop(proc)


def wait_for_resource(server: LiveServer, proc: subprocess.Popen[str], command: list[str],
                      timeout_s: float = 60.0) -> Resource:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"lambdaplane run exited {proc.returncode}: "
                                 f"{proc.stderr.read() if proc.stderr else ''}")
        for r in server.admin("ps")["resources"]:  # type: ignore[index]
            if r["owner_pid"] == proc.pid and r["process_pid"]:
                return Resource(proc, r["id"], r["ip"], r["netns"], r["process_pid"])
        time.sleep(0.05)
    raise AssertionError("the resource did not come up")


def stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_until(predicate, timeout_s: float = 10.0, interval_s: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval_s)
    return predicate()


PG_BIN = Path("/usr/lib/postgresql/15/bin")


@contextlib.contextmanager
def postgres_cluster() -> Iterator[Path]:
    """An initialised PostgreSQL data dir owned by `postgres`, trust auth from anywhere (tests
    only). Not under tmp_path: pytest's directories are closed to other users."""
    import pytest

    if not (PG_BIN / "postgres").exists():
        pytest.skip("PostgreSQL 15 is not installed")
    root = Path(tempfile.mkdtemp(prefix="lp-pg-"))
    pg = pwd.getpwnam("postgres")
    try:
        os.chown(root, pg.pw_uid, pg.pw_gid)
        data = root / "data"
        subprocess.run(["setpriv", f"--reuid={pg.pw_uid}", f"--regid={pg.pw_gid}",
                        "--init-groups", str(PG_BIN / "initdb"), "-D", str(data), "-A", "trust",
                        "-U", "postgres"], check=True, capture_output=True, timeout=120, cwd=root)
        with open(data / "pg_hba.conf", "a") as f:
            f.write("host all all 0.0.0.0/0 trust\n")
        yield data
    finally:
        shutil.rmtree(root, ignore_errors=True)


def reconcile_now(server: LiveServer) -> list[str]:
    """Ask the server for a VPC reconcile; the changes it made (none when the kernel already
    matched the store)."""
    import json
    import urllib.request

    req = urllib.request.Request(server.endpoint + "/_lambdaplane/vpc/reconcile", data=b"{}",
                                 method="POST")
    with urllib.request.urlopen(req, timeout=60) as r:
        return list(json.loads(r.read())["changes"])


@contextlib.contextmanager
def own_namespaces(*suffixes: str) -> Iterator[list[str]]:
    """New network namespaces of the test's own, `lpt<random><suffix>` each, `lo` up; deleted
    after, even on failure (and with them every link and process-less object inside)."""
    tag = secrets.token_hex(3)
    names = [f"lpt{tag}{suffix}" for suffix in suffixes]
    made: list[str] = []
    try:
        for name in names:
            subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
            made.append(name)
            subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True,
                           capture_output=True)
        yield names
    finally:
        for name in made:
            subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)


@contextlib.contextmanager
def who_am_i(netns: str, *addresses: str) -> Iterator[None]:
    """WHO_AM_I running inside `netns` on `addresses` (already on its links), until the end."""
    proc = subprocess.Popen(["ip", "netns", "exec", netns, sys.executable, "-u", "-c", WHO_AM_I,
                             *addresses], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "listening"
        yield
    finally:
        proc.kill()
        proc.wait()


def internet_vpc(ec2, prefix: str) -> dict[str, str]:
    """A VPC `<prefix>.0.0/16` whose subnet `<prefix>.1.0/24` ("public") is routed to an
    attached internet gateway by a route table of its own, and a security group "web" open on
    TCP 80 from anywhere: ids of the VPC, the subnet, the group, the gateway, the table and its
    association."""
    vpc = ec2.create_vpc(CidrBlock=f"{prefix}.0.0/16")["Vpc"]["VpcId"]
    public = ec2.create_subnet(VpcId=vpc, CidrBlock=f"{prefix}.1.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName="web", Description="w", VpcId=vpc)["GroupId"]
    ec2.authorize_security_group_ingress(GroupId=group, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80,
         "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
    igw = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    ec2.attach_internet_gateway(InternetGatewayId=igw, VpcId=vpc)
    table = ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"]
    ec2.create_route(RouteTableId=table, DestinationCidrBlock="0.0.0.0/0", GatewayId=igw)
    assoc = ec2.associate_route_table(RouteTableId=table, SubnetId=public)["AssociationId"]
    return {"vpc": vpc, "public": public, "group": group, "igw": igw, "table": table,
            "assoc": assoc}


@contextlib.contextmanager
def an_internet_vpc(ec2, prefix: str) -> Iterator[dict[str, str]]:
    """`internet_vpc`, deleted after (once the interfaces in it are gone); a gateway the test
    detached or deleted itself is let be."""
    made = internet_vpc(ec2, prefix)
    try:
        yield made
    finally:
        wait_until(lambda: ec2.describe_network_interfaces(Filters=[
            {"Name": "vpc-id", "Values": [made["vpc"]]}])["NetworkInterfaces"] == [],
            timeout_s=30)
        ec2.disassociate_route_table(AssociationId=made["assoc"])
        ec2.delete_route_table(RouteTableId=made["table"])
        with contextlib.suppress(ClientError):
            ec2.detach_internet_gateway(InternetGatewayId=made["igw"], VpcId=made["vpc"])
        with contextlib.suppress(ClientError):
            ec2.delete_internet_gateway(InternetGatewayId=made["igw"])
        ec2.delete_security_group(GroupId=made["group"])
        ec2.delete_subnet(SubnetId=made["public"])
        ec2.delete_vpc(VpcId=made["vpc"])
