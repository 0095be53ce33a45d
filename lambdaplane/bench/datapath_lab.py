"""The namespaces `lambdaplane bench datapath` measures in (bench/datapath.py has the paths):
a private instance (`fresh_instance("d")`) with the real worker netns and sandboxes
(net/worker.py, sandbox/pool.py), the Hyperplane plane with two ENIs (net/hyperplane.py, with
the eBPF fast path of net/fastpath.py; ENI 2 narrowed to EXHAUST_PORTS source ports behind the
service's port guard) in a stand-in VPC (a routed netns, like tests/net/test_hyperplane.py)
with two resources and a sandbox with a veth of its own in the subnet, enforcing security
groups with the real renderer (net/security_groups.py: stateful, so conntrack runs in the VPC
namespace as in production). `lab()` removes all of it, and every agent process (`Lab.procs`,
datapath_agent.py) it started, in `finally`."""
from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field

ENI1, ENI2, GW, R1, R2 = "10.0.1.10", "10.0.1.11", "10.0.1.1", "10.0.1.20", "10.0.1.21"
DIRECT_VETH = "10.0.1.30"  # the direct-veth sandbox's own address in the subnet
IPERF_PORT, RATE_PORT, HOLD_PORT, EXHAUST_PORT = 5201, 8081, 8082, 8083
DIRECT_PORT = 9001  # the worker admits sandboxes to 169.254.1.1 on the Runtime API port
HOLD_PER_PROCESS = 10_000  # below the hard RLIMIT_NOFILE (20,000 here) with room to spare
EXHAUST_PORTS = 8  # ENI 2's narrowed SNAT range


@dataclass
class Lab:
    names: object
    worker: object
    boxes: list = field(default_factory=list)
    direct_box: object = None  # a sandbox with its own veth into the VPC router (direct_veth)
    spaces: list[str] = field(default_factory=list)  # stand-in namespaces to delete
    procs: list[subprocess.Popen] = field(default_factory=list)


def agent(netns: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen(["ip", "netns", "exec", netns, sys.executable, "-m",
                             "lambdaplane.bench.datapath_agent", "agent", *args],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


@contextlib.contextmanager
def lab(sandboxes: int) -> Iterator[Lab]:
    from lambdaplane.cleanup import clean_instance, fresh_instance
    from lambdaplane.net import hyperplane as hp
    from lambdaplane.net import nft, ns
    from lambdaplane.net.names import Names
    from lambdaplane.net.netlink import Netlink
    from lambdaplane.net.worker import WorkerNet
    from lambdaplane.sandbox.pool import build_sandbox

    names = Names(fresh_instance("d"))
    env = Lab(names, WorkerNet(names, uplink=False))
    try:
        env.worker.setup()
        with Netlink(names.worker_netns) as wl:
            env.boxes = [build_sandbox(names, wl, slot) for slot in range(sandboxes)]
            env.direct_box = build_sandbox(names, wl, sandboxes)
        hp.ensure_steering(names)
        hp.ensure_vpc_plane(names, "vpc-d")
        vpc, r1, r2 = names.vpc_netns("vpc-d"), names.resource_netns("r1"), \
            names.resource_netns("r2")
        for space in (vpc, r1, r2):
            ns.create(space)
            env.spaces.append(space)
        with ns.entered(vpc):
            ns.set_sysctl("net.ipv4.ip_forward", "1")
        ports = {"p1": ENI1, "p2": ENI2, "q1": R1, "q2": R2, "d1": DIRECT_VETH}
        direct_ns = env.direct_box.netns
        with Netlink(vpc) as v:
            for n in (1, 2):  # the ENIs' ports, whose peers are their transits
                v.add_veth(f"p{n}", names.transit_veth(n), peer_netns=names.worker_netns)
            v.add_veth("q1", "eth0", peer_netns=r1)
            v.add_veth("q2", "eth0", peer_netns=r2)
            v.add_veth("d1", "eni0", peer_netns=direct_ns)
        with ns.entered(vpc):
            for port in ports:  # the router answers ARP for the whole subnet
                ns.set_sysctl(f"net.ipv4.conf.{port}.proxy_arp", "1")
        with Netlink(vpc) as v:
            for port, host in ports.items():
                v.add_address(port, GW, 32)
                v.set_up(port)
                v.add_route(f"{host}/32", port, scope_link=True)
        for space, addr in ((r1, R1), (r2, R2)):
            with Netlink(space) as r:
                r.set_up("lo")
                r.add_address("eth0", addr, 24)
                r.set_up("eth0")
                r.add_route("0.0.0.0/0", "eth0", gateway=GW)
        # the direct-veth sandbox: its own interface in the subnet (what legacy VPC Lambda
        # gave an environment), so the subnet is reached without the worker or a NAT
        with Netlink(direct_ns) as d:
            d.add_address("eni0", DIRECT_VETH, 24)
            d.set_up("eni0")
        nft.apply(_security_groups(names), vpc)
        hp.ensure_eni(names, hp.HyperplaneEni(1, "vpc-d", ENI1, GW, "p1"))
        narrow = f"2000-{2000 + EXHAUST_PORTS - 1}"
        hp.ensure_eni(names, hp.HyperplaneEni(2, "vpc-d", ENI2, GW, "p2"), ports=narrow)
        hp.ensure_port_guard(names, "vpc-d", 2, narrow)  # as the service does for such a range
        yield env
    finally:
        for proc in env.procs:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait()
        hp.remove_all(names)
        for space in env.spaces:
            ns.delete(space)
        env.worker.teardown()
        clean_instance(names.instance)


def _security_groups(names) -> str:
    """The stand-in VPC enforces security groups as the real one does (net/security_groups.py:
    stateful, conntrack in the VPC namespace): functions' group `sg-fn` may send anywhere and
    accepts nothing; the resources' group `sg-db` accepts TCP from both groups' members."""
    from lambdaplane.net.security_groups import PortRules, render
    from lambdaplane.store.ec2 import SgRule

    rules = {"sg-fn": [SgRule("r1", "sg-fn", True, "-1", -1, -1, "0.0.0.0/0", None)],
             "sg-db": [SgRule("r2", "sg-db", True, "-1", -1, -1, "0.0.0.0/0", None),
                       SgRule("r3", "sg-db", False, "tcp", 0, 65535, None, "sg-fn"),
                       SgRule("r4", "sg-db", False, "tcp", 0, 65535, None, "sg-db")]}
    members = {"sg-fn": [ENI1, ENI2, DIRECT_VETH], "sg-db": [R1, R2]}
    ports = [PortRules("p1", ("sg-fn",), ENI1, nat=True),
             PortRules("p2", ("sg-fn",), ENI2, nat=True),
             PortRules("d1", ("sg-fn",), DIRECT_VETH)] \
        + [PortRules(q, ("sg-db",), ip) for q, ip in (("q1", R1), ("q2", R2))]
    return render(names.nft_table, ports, rules, members)
