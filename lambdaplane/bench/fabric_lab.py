"""What `lambdaplane bench fabric` measures in: a PostgreSQL of its own (bench/postgres.py), two
namespaces standing in for hosts (`lp<id>hA`, `lp<id>hB`) joined by an underlay veth (its
addresses only inside them), a `lambdaplane agent` in each with `--underlay-address` and its
own FRR, two API servers on the database with `--no-data-plane`, one pinning every invoke to
host A and one to host B, a VPC whose subnet holds a resource placed on host A (an interface
whose far end is agent A's resource namespace, as tests/e2e/test_agents_vpc.py does), and the
servers of bench/fabric_probe.py in that resource and in host A's namespace (the far end of
the direct veth). `fabric_lab()` removes all of it in `finally`, even on failure: every
process it started, the servers (stop + clean of their instance), the agents (SIGINT, `clean`
of their data dir, clean of their instance), the host namespaces, the database; what is left
of the agents' instances afterwards is in `Lab.leftovers`."""
from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .common import private_server

UNDERLAY = ("10.252.0.1", "10.252.0.2")  # the agents' --underlay-address, host A then B
TRANSFER = ("10.253.0.1", "10.253.0.2")  # the underlay veth's own ends: the direct path
VPC_CIDR, SUBNET_CIDR, RESOURCE = "10.61.0.0/16", "10.61.1.0/24", "10.61.1.10"
DRAIN_PORT, SINK_PORT = 5201, 5202
HOSTS = ("host-a", "host-b")
PROBE = Path(__file__).with_name("fabric_probe.py")


@dataclass
class HostAgent:
    name: str
    netns: str
    instance: str
    data_dir: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.data_dir.parent / f"{self.name}.log"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@dataclass
class Lab:
    database: str
    hosts: list[str]  # host namespaces, A then B
    agents: list[HostAgent]
    endpoints: dict[str, str] = field(default_factory=dict)  # host name → API server pinned
    subnet: str = ""
    group: str = ""
    resource_netns: str = ""
    procs: list[subprocess.Popen[str]] = field(default_factory=list)
    leftovers: list[str] = field(default_factory=list)


def wait_until(condition: Callable[[], object], timeout_s: float, what: str,
               interval_s: float = 0.2) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"bench fabric: {what} not after {timeout_s} s")
        time.sleep(interval_s)


def probe_server(netns: str, role: str, host: str, port: int) -> subprocess.Popen[str]:
    """bench/fabric_probe.py serving `role` on host:port in `netns`, listening when returned."""
    proc = subprocess.Popen(["ip", "netns", "exec", netns, sys.executable, "-u", str(PROBE),
                             json.dumps({"serve": role, "host": host, "port": port})],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "listening":
        proc.kill()
        proc.wait()
        raise RuntimeError(f"probe {role} on {host}:{port} in {netns} did not listen")
    return proc


def probe_client(netns: str, request: dict) -> dict:
    """bench/fabric_probe.py's measurement run as a plain process in `netns`."""
    done = subprocess.run(["ip", "netns", "exec", netns, sys.executable, str(PROBE),
                           json.dumps(request)], capture_output=True, text=True, check=True,
                          timeout=float(request.get("seconds", 5)) + 60)
    return dict(json.loads(done.stdout))


@contextlib.contextmanager
def fabric_lab(pool_size: int = 2) -> Iterator[Lab]:
    from lambdaplane.cleanup import fresh_instance

    from .postgres import postgres_server

    tid = fresh_instance("f")
    with postgres_server() as database, tempfile.TemporaryDirectory(prefix="lp-bench-fab-") as tmp:
        lab = Lab(database, [f"lp{tid}hA", f"lp{tid}hB"], [])
        lab.agents = [HostAgent(name, netns, fresh_instance("g"), Path(tmp) / name)
                      for name, netns in zip(HOSTS, lab.hosts)]
        try:
            with contextlib.ExitStack() as servers:
                _make_hosts(lab.hosts, f"lp{tid}")
                for name in HOSTS:
                    lab.endpoints[name] = servers.enter_context(private_server(
                        "--database", database, "--no-data-plane", "--placement", f"pin:{name}"))
                for n, agent in enumerate(lab.agents):
                    _start_agent(agent, database, n, pool_size)
                wait_until(lambda: all(_established(a, UNDERLAY[1 - n])
                                       for n, a in enumerate(lab.agents)), 120,
                           "the BGP EVPN sessions")
                _make_vpc_and_resource(lab)
                yield lab
        finally:
            for proc in lab.procs:
                proc.kill()
                proc.wait()
            _stop_agents(lab)
            for netns in lab.hosts:
                subprocess.run(["ip", "netns", "del", netns], capture_output=True)
            lab.leftovers += [f"netns {n}" for n in lab.hosts if Path(f"/run/netns/{n}").exists()]


def _make_hosts(namespaces: list[str], prefix: str) -> None:
    """Two host namespaces joined as by an underlay network (join_hosts)."""
    for netns in namespaces:
        subprocess.run(["ip", "netns", "add", netns], check=True)
    join_hosts(namespaces, prefix)


def join_hosts(namespaces: list[str], prefix: str) -> None:
    """A veth between the two host namespaces, and each host's route to the other's underlay
    address across it (what a real underlay network gives); the e2e tests use it too."""
    a, b = namespaces
    subprocess.run(["ip", "-n", a, "link", "add", f"{prefix}x", "type", "veth", "peer",
                    "name", f"{prefix}x", "netns", b], check=True)
    for n, netns in enumerate(namespaces):
        subprocess.run(["ip", "-n", netns, "link", "set", "lo", "up"], check=True)
        subprocess.run(["ip", "-n", netns, "addr", "add", f"{TRANSFER[n]}/30", "dev",
                        f"{prefix}x"], check=True)
        subprocess.run(["ip", "-n", netns, "link", "set", f"{prefix}x", "up"], check=True)
        subprocess.run(["ip", "-n", netns, "route", "add", f"{UNDERLAY[1 - n]}/32", "via",
                        TRANSFER[1 - n]], check=True)


def _start_agent(agent: HostAgent, database: str, n: int, pool_size: int) -> None:
    agent.data_dir.mkdir(parents=True)
    cmd = [sys.executable, "-m", "lambdaplane.cli", "agent", "--database", database,
           "--data-dir", str(agent.data_dir), "--instance", agent.instance, "--name",
           agent.name, "--host-netns", agent.netns, "--no-uplink", "--pool-size",
           str(pool_size), "--prefork", "1", "--underlay-address", f"{UNDERLAY[n]}/24"]
    with open(agent.log_path, "ab") as log:
        agent.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    wait_until(lambda: "agent ready" in agent.log() or agent.proc.poll() is not None,  # type: ignore[union-attr]
               90, f"agent {agent.name}", 0.1)
    if agent.proc.poll() is not None:
        raise RuntimeError(f"agent {agent.name} exited:\n{agent.log()[-3000:]}")


def _established(agent: HostAgent, peer: str) -> bool:
    from lambdaplane.net import frr
    from lambdaplane.net.names import Names

    daemons = frr.Daemons(agent.data_dir / "fabric", Names(agent.instance).fabric_netns)
    try:
        summary = json.loads(daemons.vtysh("show bgp l2vpn evpn summary json"))
    except (RuntimeError, ValueError):
        return False
    return bool(summary.get("peers", {}).get(peer, {}).get("state") == "Established")


def _make_vpc_and_resource(lab: Lab) -> None:
    """The VPC, its subnet and default group; the resource at RESOURCE placed on host A (its
    port and namespace built by agent A), serving the drain and the sink; the same servers on
    host A's end of the direct veth."""
    import psycopg

    from lambdaplane.net.names import Names

    from .common import aws_client

    ec2 = aws_client(lab.endpoints["host-a"], "ec2")
    vpc = ec2.create_vpc(CidrBlock=VPC_CIDR)["Vpc"]["VpcId"]
    lab.subnet = ec2.create_subnet(VpcId=vpc, CidrBlock=SUBNET_CIDR)["Subnet"]["SubnetId"]
    lab.group = ec2.describe_security_groups(Filters=[
        {"Name": "vpc-id", "Values": [vpc]}])["SecurityGroups"][0]["GroupId"]
    eni = ec2.create_network_interface(SubnetId=lab.subnet, Groups=[lab.group],
                                       PrivateIpAddress=RESOURCE)["NetworkInterface"][
        "NetworkInterfaceId"]
    names_a = Names(lab.agents[0].instance)
    lab.resource_netns = names_a.resource_netns(eni)
    with psycopg.connect(lab.database) as conn:
        conn.execute("UPDATE ec2_enis SET far_netns=%s, far_ifname='eth0', owns_netns=1 "
                     "WHERE id=%s", (lab.resource_netns, eni))

    def has_address() -> bool:
        out = subprocess.run(["ip", "-n", lab.resource_netns, "-j", "addr"],
                             capture_output=True, text=True)
        return out.returncode == 0 and f'"{RESOURCE}"' in out.stdout

    wait_until(has_address, 60, "the resource's namespace on host A")
    for netns, host in ((lab.resource_netns, RESOURCE), (lab.hosts[0], TRANSFER[0])):
        lab.procs.append(probe_server(netns, "drain", host, DRAIN_PORT))
        lab.procs.append(probe_server(netns, "sink", host, SINK_PORT))


def _stop_agents(lab: Lab) -> None:
    from lambdaplane.cleanup import clean_instance

    for agent in lab.agents:
        if agent.proc is not None and agent.proc.poll() is None:
            agent.proc.send_signal(signal.SIGINT)
            try:
                agent.proc.wait(60)
            except subprocess.TimeoutExpired:
                agent.proc.kill()
                agent.proc.wait()
    for agent in lab.agents:
        lab.leftovers += _agent_leftovers(agent)
        if agent.data_dir.exists():
            subprocess.run([sys.executable, "-m", "lambdaplane.cli", "clean", "--data-dir",
                            str(agent.data_dir)], capture_output=True, timeout=120)
        clean_instance(agent.instance)


def _agent_leftovers(agent: HostAgent) -> list[str]:
    """What of the agent remains after its stop: from the root namespace and its host's."""
    from lambdaplane.cleanup import leftovers_with_host

    try:
        return leftovers_with_host(agent.instance, agent.netns)
    except subprocess.CalledProcessError as e:
        return [f"in {agent.netns}: leftovers not read ({e})"]
