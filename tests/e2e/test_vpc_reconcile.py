"""The kernel state is derived from the store: a restart (clean or after SIGKILL) leaves
reachability exactly as it was, damage is repaired by the reconciler, a second reconcile
changes nothing, a killed `lambdaplane run` leaks nothing, and `lambdaplane clean` removes
whatever a killed server left."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request

import pytest

from lambdaplane.net import ns
from tests.e2e.vpc_support import LISTENER, resource, run_args, stop, wait_for_resource, wait_until
from tests.harness import LiveServer

pytestmark = pytest.mark.root


def _reconcile(server: LiveServer) -> list[str]:
    req = urllib.request.Request(server.endpoint + "/_lambdaplane/vpc/reconcile", data=b"{}",
                                 method="POST")
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read())["changes"]


def _network(ec2) -> dict[str, str]:
    vpc = ec2.create_vpc(CidrBlock="10.50.0.0/16")["Vpc"]["VpcId"]
    net = {"vpc": vpc,
           "a": ec2.create_subnet(VpcId=vpc, CidrBlock="10.50.1.0/24")["Subnet"]["SubnetId"],
           "b": ec2.create_subnet(VpcId=vpc, CidrBlock="10.50.2.0/24")["Subnet"]["SubnetId"]}
    for name in ("srv", "ok", "no"):
        net[name] = ec2.create_security_group(GroupName=name, Description=name,
                                              VpcId=vpc)["GroupId"]
    ec2.authorize_security_group_ingress(GroupId=net["srv"], IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80,
         "UserIdGroupPairs": [{"GroupId": net["ok"]}]},
        {"IpProtocol": "tcp", "FromPort": 81, "ToPort": 81,
         "IpRanges": [{"CidrIp": "10.50.2.0/24"}]}])
    return net


def _matrix(srv, clients) -> list[str]:
    return [c.probe(srv.ip, port) for c in clients for port in (80, 81, 82)]


EXPECTED = [
    "hello from 10.50.1.10", "timeout", "timeout",  # ok-group peer in subnet a: port 80
    "timeout", "hello from 10.50.1.10", "timeout",  # no-group peer in subnet b: port 81 by CIDR
]


def test_restart_and_crash_keep_reachability(fresh_server: LiveServer) -> None:
    server = fresh_server
    net = _network(server.ec2())
    with resource(server, net["a"], [net["srv"]], ports=(80, 81, 82), ip="10.50.1.10") as srv, \
            resource(server, net["a"], [net["ok"]]) as ok, \
            resource(server, net["b"], [net["no"]]) as no:
        assert _matrix(srv, [ok, no]) == EXPECTED
        assert _reconcile(server) == []
        server.restart()  # a clean stop removed every kernel object; start rebuilds them
        assert _matrix(srv, [ok, no]) == EXPECTED
        assert _reconcile(server) == []
        server.kill()  # SIGKILL: the kernel objects stay, the next start adopts them
        server.start()
        assert _reconcile(server) == []
        assert _matrix(srv, [ok, no]) == EXPECTED
        assert {r["id"] for r in server.admin("ps")["resources"]} == {srv.eni_id, ok.eni_id,
                                                                      no.eni_id}


def test_reconcile_repairs_damage_and_removes_strays(fresh_server: LiveServer) -> None:
    server = fresh_server
    net = _network(server.ec2())
    prefix = f"lp{server.instance}"
    with resource(server, net["a"], [net["srv"]], ports=(80, 81, 82), ip="10.50.1.10") as srv, \
            resource(server, net["a"], [net["ok"]]) as ok, \
            resource(server, net["b"], [net["no"]]) as no:
        vpc_ns = f"{prefix}-{net['vpc']}"
        ports = subprocess.run(["ip", "netns", "exec", vpc_ns, "ip", "-o", "link", "show",
                                "type", "veth"], capture_output=True, text=True).stdout
        port = ports.split(":")[1].strip().split("@")[0]
        subprocess.run(["ip", "netns", "exec", vpc_ns, "ip", "link", "del", port], check=True)
        subprocess.run(["ip", "netns", "exec", vpc_ns, "nft", "flush", "ruleset"], check=True)
        stray_vpc, stray_res = f"{prefix}-vpc-0000000000000000f", f"{prefix}-r-eni-00000000"
        ns.create(stray_vpc)
        ns.create(stray_res)
        changes = _reconcile(server)
        assert any("applied security groups" in c for c in changes)
        assert any(f"removed netns {stray_vpc}" == c for c in changes)
        assert any(f"removed netns {stray_res}" == c for c in changes)
        assert any("created port" in c for c in changes)
        assert not ns.exists(stray_vpc) and not ns.exists(stray_res)
        assert _reconcile(server) == []
        assert _matrix(srv, [ok, no]) == EXPECTED


def test_killed_cli_releases_its_interface(fresh_server: LiveServer) -> None:
    server = fresh_server
    ec2 = server.ec2()
    net = _network(ec2)
    command = [sys.executable, "-u", "-c", LISTENER, "80"]
    proc = subprocess.Popen([*run_args(server, net["a"], [net["srv"]]), "--", *command],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    program_pid = None
    try:
        found = wait_for_resource(server, proc, command)
        program_pid = next(r["process_pid"] for r in server.admin("ps")["resources"]
                           if r["id"] == found.eni_id)
        proc.kill()  # SIGKILL: no chance to release anything
        proc.wait()
        assert wait_until(lambda: not ec2.describe_network_interfaces(Filters=[
            {"Name": "subnet-id", "Values": [net["a"]]}])["NetworkInterfaces"])
        assert wait_until(lambda: not ns.exists(found.netns))  # the reconcile that follows
        assert ec2.describe_subnets(SubnetIds=[net["a"]])["Subnets"][0][
            "AvailableIpAddressCount"] == 251
    finally:
        stop(proc)
        if program_pid:
            try:
                os.kill(program_pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_clean_removes_what_a_killed_server_left(fresh_server: LiveServer) -> None:
    server = fresh_server
    net = _network(server.ec2())
    with resource(server, net["a"], [net["srv"]], ports=(80,)):
        prefix = f"lp{server.instance}-"
        assert any(n.startswith(prefix + "vpc-") for n in ns.list_named(prefix))
        server.kill()
        out = subprocess.run([sys.executable, "-m", "lambdaplane.cli", "clean", "--data-dir",
                              str(server.data_dir)], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0 and f"removed netns {prefix}{net['vpc']}" in out.stdout
        assert not ns.list_named(prefix)
        assert server.leftovers() == []
