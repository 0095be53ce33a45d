"""AmazonProvidedDNS on real kernel networking, through boto3: the resolver at the VPC base
address + 2 answers EC2 private names both ways for `lambdaplane run` resources and VPC
functions (their resolv.conf names it), is not judged by security groups, stops answering
with enableDnsSupport off, and forwards other names upstream only while the VPC has a path to
the internet. The test makes the internet: a namespace with an upstream DNS server on a
documentation address (203.0.113.53) answering `www.example.com`; no query ever leaves the
machine, and none goes to the host's resolvers. Everything survives a SIGKILL of the server."""
from __future__ import annotations

import json
import secrets
import subprocess
import sys
from collections.abc import Iterator

import boto3
import pytest

from tests.conftest import live_server
from tests.e2e.vpc_support import resource, run_args, wait_until
from tests.harness import LiveServer, create_python_function, make_zip

pytestmark = pytest.mark.root

UPSTREAM = "203.0.113.53"
PUBLIC_ANSWER = "203.0.113.80"

# The internet's resolver: www.example.com → 203.0.113.80, everything else NXDOMAIN.
UPSTREAM_SERVER = r"""
import socket, dns.message, dns.rrset, dns.rcode
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("203.0.113.53", 53))
print("listening", flush=True)
while True:
    data, peer = s.recvfrom(4096)
    q = dns.message.from_wire(data); r = dns.message.make_response(q)
    name = q.question[0].name.to_text()
    if name == "www.example.com." and q.question[0].rdtype == 1:
        r.answer.append(dns.rrset.from_text(name, 300, "IN", "A", "203.0.113.80"))
    else:
        r.set_rcode(dns.rcode.NXDOMAIN)
    s.sendto(r.to_wire(), peer)
"""

# A query from inside a namespace, straight to a server: "A 1.2.3.4", "NXDOMAIN", "timeout"…
QUERY = r"""
import sys, dns.message, dns.query, dns.rcode, dns.exception
server, name, rdtype, tcp = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "tcp"
q = dns.message.make_query(name, rdtype)
try:
    r = (dns.query.tcp if tcp else dns.query.udp)(q, server, timeout=1.5)
except dns.exception.Timeout:
    print("timeout"); sys.exit()
except OSError as e:
    print("error", e.errno); sys.exit()
if r.rcode() != dns.rcode.NOERROR:
    print(dns.rcode.to_text(r.rcode()))
else:
    print(" ".join(f"{dns.rdatatype.to_text(rr.rdtype)} {item}" for rr in r.answer
                   for item in rr) or "empty")
"""

# What a program sees through its resolv.conf (glibc's resolver, as any program would).
LOOKUP = r"""
import socket, sys
for name in sys.argv[1:]:
    try:
        print(name, socket.gethostbyname(name))
    except OSError as e:
        print(name, "fails")
"""

FUNCTION = r"""
import socket
def handler(event, context):
    out = {"resolv.conf": open("/etc/resolv.conf").read()}
    for name in event["names"]:
        try:
            out[name] = socket.gethostbyname(name)
        except OSError:
            out[name] = "fails"
    try:
        out["ptr"] = socket.gethostbyaddr(event["ptr"])[0]
    except OSError:
        out["ptr"] = "fails"
    out["alias"] = ask_alias(event["names"][0])
    return out


def ask_alias(name):
    # an A query to the Route 53 Resolver's alias (no DNS library in the sandbox: the test's
    # own few bytes); the first answer's address
    q = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00" + b"".join(
        bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\x00\x00\x01\x00\x01"
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(5)
    try:
        s.sendto(q, ("169.254.169.253", 53))
        reply, peer = s.recvfrom(2048)
    except OSError as e:
        return f"fails {e}"
    if peer[0] != "169.254.169.253" or reply[:2] != b"\x12\x34" or reply[7] == 0:
        return "no answer"
    return socket.inet_ntoa(reply[-4:])
"""


def query(netns: str, server: str, name: str, rdtype: str = "A", tcp: bool = False) -> str:
    out = subprocess.run(["ip", "netns", "exec", netns, sys.executable, "-c", QUERY, server,
                          name, rdtype, "tcp" if tcp else "udp"],
                         capture_output=True, text=True, timeout=30)
    return out.stdout.strip() or out.stderr.strip()


@pytest.fixture(scope="module")
def internet() -> Iterator[str]:
    name = "lpt" + secrets.token_hex(3)
    subprocess.run(["ip", "netns", "add", name], check=True)
    upstream = None
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        subprocess.run(["ip", "-n", name, "addr", "add", f"{UPSTREAM}/32", "dev", "lo"],
                       check=True)
        upstream = subprocess.Popen(["ip", "netns", "exec", name, sys.executable, "-u", "-c",
                                     UPSTREAM_SERVER], stdout=subprocess.PIPE, text=True)
        assert upstream.stdout is not None and upstream.stdout.readline().strip() == "listening"
        yield name
    finally:
        if upstream is not None:
            upstream.kill()
            upstream.wait()
        subprocess.run(["ip", "netns", "del", name], check=False)


@pytest.fixture(scope="module")
def server(internet, tmp_path_factory) -> Iterator[LiveServer]:
    yield from live_server(tmp_path_factory.mktemp("lp"), "--internet-netns", internet,
                           "--public-cidr", "198.51.100.0/24", "--dns-upstream", UPSTREAM)


@pytest.fixture(scope="module")
def net(server) -> Iterator[dict[str, str]]:
    ec2 = server.ec2()
    vpc = ec2.create_vpc(CidrBlock="10.91.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.91.1.0/24")["Subnet"]["SubnetId"]
    # a group that lets nothing in or out: the resolver must not care
    closed = ec2.create_security_group(GroupName="closed", Description="c",
                                       VpcId=vpc)["GroupId"]
    ec2.revoke_security_group_egress(GroupId=closed, IpPermissions=[
        {"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
    try:
        yield {"vpc": vpc, "subnet": subnet, "closed": closed}
    finally:
        lam = server.lambda_()
        for f in lam.list_functions()["Functions"]:
            lam.delete_function(FunctionName=f["FunctionName"])
        wait_until(lambda: ec2.describe_network_interfaces(Filters=[
            {"Name": "vpc-id", "Values": [vpc]}])["NetworkInterfaces"] == [], timeout_s=60)
        for g in ec2.describe_internet_gateways()["InternetGateways"]:
            for a in g.get("Attachments", []):
                if a["VpcId"] == vpc:
                    ec2.detach_internet_gateway(InternetGatewayId=g["InternetGatewayId"],
                                                VpcId=vpc)
                    ec2.delete_internet_gateway(InternetGatewayId=g["InternetGatewayId"])
        ec2.delete_security_group(GroupId=closed)
        ec2.delete_subnet(SubnetId=subnet)
        ec2.delete_vpc(VpcId=vpc)


def test_private_names_both_ways_from_a_resource(server, net) -> None:
    with resource(server, net["subnet"], [net["closed"]], ports=(80,)) as r:
        netns = r.netns
        dashed = r.ip.replace(".", "-")
        assert query(netns, "10.91.0.2", f"ip-{dashed}.ec2.internal") == f"A {r.ip}"
        assert query(netns, "10.91.0.2", f"ip-{dashed}.ec2.internal", tcp=True) == f"A {r.ip}"
        # the Route 53 Resolver's link-local alias answers like base + 2
        assert query(netns, "169.254.169.253", f"ip-{dashed}.ec2.internal") == f"A {r.ip}"
        assert query(netns, "169.254.169.253", f"ip-{dashed}.ec2.internal",
                     tcp=True) == f"A {r.ip}"
        assert query(netns, "10.91.0.2", "ip-10-91-7-9.ec2.internal") == "A 10.91.7.9"
        # outside the VPC, or not a name of the pattern: no such name
        assert query(netns, "10.91.0.2", "ip-10-92-1-9.ec2.internal") == "NXDOMAIN"
        assert query(netns, "10.91.0.2", "db.ec2.internal") == "NXDOMAIN"
        assert query(netns, "10.91.0.2", f"ip-{dashed}.ec2.internal", "AAAA") == "empty"
        reverse = ".".join(reversed(r.ip.split("."))) + ".in-addr.arpa"
        assert query(netns, "10.91.0.2", reverse, "PTR") == f"PTR ip-{dashed}.ec2.internal."
        # no path to the internet: other names are not forwarded
        assert query(netns, "10.91.0.2", "www.example.com") == "SERVFAIL"


def test_run_resources_use_the_vpc_resolver(server, net) -> None:
    out = subprocess.run([*run_args(server, net["subnet"], [net["closed"]]), "--",
                          "cat", "/etc/resolv.conf"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "nameserver 10.91.0.2" in out.stdout and "search ec2.internal" in out.stdout
    out = subprocess.run([*run_args(server, net["subnet"], [net["closed"]]), "--",
                          sys.executable, "-c", LOOKUP, "ip-10-91-1-77.ec2.internal",
                          "ip-10-91-1-78"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines == ["ip-10-91-1-77.ec2.internal 10.91.1.77",
                     "ip-10-91-1-78 10.91.1.78"]  # through the search domain
    # the host's own resolv.conf is untouched
    with open("/etc/resolv.conf") as f:
        assert "10.91.0.2" not in f.read()


def test_vpc_function_resolves_through_its_eni(server, net) -> None:
    lam = server.lambda_()
    create_python_function(lam, "dns-probe", FUNCTION, Timeout=30, VpcConfig={
        "SubnetIds": [net["subnet"]], "SecurityGroupIds": [net["closed"]]})
    event = {"names": ["ip-10-91-1-40.ec2.internal", "www.example.com"], "ptr": "10.91.1.41"}
    out = json.loads(lam.invoke(FunctionName="dns-probe",
                                Payload=json.dumps(event))["Payload"].read())
    assert "nameserver 10.91.0.2" in out.get("resolv.conf", ""), out
    assert out["ip-10-91-1-40.ec2.internal"] == "10.91.1.40"
    assert out["ptr"] == "ip-10-91-1-41.ec2.internal"
    assert out["alias"] == "10.91.1.40"  # 169.254.169.253 through the ENI as well
    assert out["www.example.com"] == "fails"  # no internet gateway: nothing forwarded

    ec2 = server.ec2()
    igw = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    ec2.attach_internet_gateway(InternetGatewayId=igw, VpcId=net["vpc"])
    out = json.loads(lam.invoke(FunctionName="dns-probe",
                                Payload=json.dumps(event))["Payload"].read())
    assert out["www.example.com"] == PUBLIC_ANSWER  # forwarded upstream now
    ec2.detach_internet_gateway(InternetGatewayId=igw, VpcId=net["vpc"])
    ec2.delete_internet_gateway(InternetGatewayId=igw)


def test_a_forked_sandbox_gets_the_resolver_too(server, net) -> None:
    """python3.12 is not pre-forked: its sandbox is built at the cold start (the other path)."""
    lam = server.lambda_()
    lam.create_function(FunctionName="dns-probe-312", Runtime="python3.12",
                        Handler="app.handler", Role="arn:aws:iam::000000000000:role/lambda",
                        Code={"ZipFile": make_zip({"app.py": FUNCTION})}, Timeout=30,
                        VpcConfig={"SubnetIds": [net["subnet"]],
                                   "SecurityGroupIds": [net["closed"]]})
    lam.get_waiter("function_active_v2").wait(FunctionName="dns-probe-312",
                                              WaiterConfig={"Delay": 0.2, "MaxAttempts": 100})
    event = {"names": ["ip-10-91-1-42.ec2.internal"], "ptr": "10.91.1.43"}
    out = json.loads(lam.invoke(FunctionName="dns-probe-312",
                                Payload=json.dumps(event))["Payload"].read())
    assert "nameserver 10.91.0.2" in out.get("resolv.conf", ""), out
    assert out["ip-10-91-1-42.ec2.internal"] == "10.91.1.42"
    assert out["ptr"] == "ip-10-91-1-43.ec2.internal"


def test_dns_support_off_means_no_answers(server, net) -> None:
    ec2 = server.ec2()
    vpc = net["vpc"]
    assert ec2.describe_vpc_attribute(VpcId=vpc, Attribute="enableDnsSupport")[
        "EnableDnsSupport"]["Value"] is True
    with resource(server, net["subnet"], [net["closed"]], ports=(80,)) as r:
        assert query(r.netns, "10.91.0.2", "ip-10-91-1-5.ec2.internal") == "A 10.91.1.5"
        ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsSupport={"Value": False})
        try:
            assert query(r.netns, "10.91.0.2", "ip-10-91-1-5.ec2.internal") == "timeout"
        finally:
            ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsSupport={"Value": True})
        assert query(r.netns, "10.91.0.2", "ip-10-91-1-5.ec2.internal") == "A 10.91.1.5"


def test_other_regions_use_compute_internal(server) -> None:
    ec2 = boto3.client("ec2", endpoint_url=server.endpoint, region_name="eu-west-1",
                       aws_access_key_id="test", aws_secret_access_key="test")
    vpc = ec2.create_vpc(CidrBlock="10.93.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.93.1.0/24")["Subnet"]["SubnetId"]
    try:
        out = subprocess.run([*run_args(server, subnet, []), "--region", "eu-west-1", "--",
                              sys.executable, "-c", LOOKUP,
                              "ip-10-93-1-8.eu-west-1.compute.internal",
                              "ip-10-93-1-8.ec2.internal"],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert out.stdout.splitlines() == ["ip-10-93-1-8.eu-west-1.compute.internal 10.93.1.8",
                                           "ip-10-93-1-8.ec2.internal fails"]
    finally:
        wait_until(lambda: ec2.describe_network_interfaces(Filters=[
            {"Name": "vpc-id", "Values": [vpc]}])["NetworkInterfaces"] == [], timeout_s=30)
        ec2.delete_subnet(SubnetId=subnet)
        ec2.delete_vpc(VpcId=vpc)


def test_resolver_survives_sigkill(server, net) -> None:
    server.kill()
    server.start()
    with resource(server, net["subnet"], [net["closed"]], ports=(80,)) as r:
        assert query(r.netns, "10.91.0.2", "ip-10-91-1-6.ec2.internal") == "A 10.91.1.6"
