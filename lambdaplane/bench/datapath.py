"""`lambdaplane bench datapath`: the Hyperplane NAT data path against a direct veth and against
resource-to-resource traffic inside the VPC, in one run, on namespaces of its own (no server).

Builds a private instance (`fresh_instance("d")`): the real worker netns and sandboxes
(net/worker.py, sandbox/pool.py), the Hyperplane plane with two ENIs (net/hyperplane.py, with
the eBPF fast path of net/fastpath.py) in a stand-in VPC (a routed netns, like
tests/net/test_hyperplane.py) with two resources, enforcing
security groups with the real renderer (net/security_groups.py: stateful, so conntrack runs in
the VPC namespace as in production). Paths (PATHS, also written to the JSON):
  direct_veth:  sandbox with its own veth in the subnet → VPC router → resource (what a legacy
                VPC function's own interface gives: one routed, conntracked hop)
  eni:          sandbox → worker (eBPF redirect) → VPC router (SNAT) → resource (one hop)
  in_vpc:       resource → VPC router → resource (one hop)
  runtime_api:  sandbox → worker 169.254.1.1:9001 over its veth (untracked, local, no routing;
                this benchmark's baseline, called "direct", until 2026-11-27)
`ratios` are ENI / direct_veth, the issue's goal (≥ 0.9 for both); `ratios_vs_runtime_api`
keep the old baseline's figures.
For each: TCP throughput (iperf3, one stream) and new connections/s (a Python connect+close
loop in one process against a Python accept+close loop: both bound the rate, equally on every
path); the paths take turns for several rounds and the median counts. Then up to 60,000
connections held open at once from several sandboxes through ENI 1 to
one destination (every process stays under the host's hard limit of open files, so clients and
servers are split over processes; the server side shares one port with SO_REUSEPORT), and port
exhaustion: ENI 2 narrowed to a few source ports and guarded as the service guards such a
range (net/hyperplane.py's port guard), one connection more than it has, the error the
function sees (a refusal at once), the count the service makes of it, and a sandbox steered to
ENI 1 (the further ENI the service moves new environments to) connecting fine.

Measured here (2 shared cores, 2026-12-06, full run, medians of 5 interleaved rounds):
direct_veth 15.2 Gbit/s and 17.8k conn/s, eni 15.2 Gbit/s and 17.0k conn/s, in_vpc 15.4 Gbit/s
and 17.0k conn/s: ENI / direct veth 0.999 (throughput) and 0.955 (new connections/s); four full
runs of this code gave 0.88–1.04 and 0.90–0.96. Each connection loop waits on a ping-pong of
client, server and kernel sharing two cores (the client's process also pays the softirq work
of the whole path), so every microsecond of kernel work per connection shows. Until
2026-12-06 the ENI path crossed a hyperplane namespace per VPC as well (0.78 / 0.64):
docs/design.md has the variants measured and why the path now has one conntrack and skips the
worker's stack. What is left is NAT:
without SNAT the ENI path matched the direct veth (1.01, six paired rounds).

Writes datapath.json and datapath.png. Everything is removed in `finally`."""
from __future__ import annotations

import argparse
import contextlib
import json
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .common import machine, write_json

ENI1, ENI2, GW, R1, R2 = "10.0.1.10", "10.0.1.11", "10.0.1.1", "10.0.1.20", "10.0.1.21"
DIRECT_VETH = "10.0.1.30"  # the direct-veth sandbox's own address in the subnet
IPERF_PORT, RATE_PORT, HOLD_PORT, EXHAUST_PORT = 5201, 8081, 8082, 8083
DIRECT_PORT = 9001  # the worker admits sandboxes to 169.254.1.1 on the Runtime API port
HOLD_PER_PROCESS = 10_000  # below the hard RLIMIT_NOFILE (20,000 here) with room to spare
EXHAUST_PORTS = 8  # ENI 2's narrowed SNAT range


PATHS = {
    "direct_veth": "sandbox with its own veth in the subnet -> VPC router (security groups, "
                   "conntrack) -> resource: one routed hop",
    "eni": "sandbox -> worker (eBPF redirect into the ENI's port, no routing) -> VPC router "
           "(security groups, conntrack, SNAT to the ENI address) -> resource: one routed hop",
    "in_vpc": "resource -> VPC router (security groups, conntrack) -> resource: one routed hop",
    "runtime_api": "sandbox -> worker 169.254.1.1:9001 over its veth, untracked, no routing "
                   "(the Runtime API path; this benchmark's baseline until 2026-11-27)"}


@dataclass
class Lab:
    names: object
    worker: object
    boxes: list = field(default_factory=list)
    direct_box: object = None  # a sandbox with its own veth into the VPC router (direct_veth)
    spaces: list[str] = field(default_factory=list)  # stand-in namespaces to delete
    procs: list[subprocess.Popen] = field(default_factory=list)


def _agent(netns: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen(["ip", "netns", "exec", netns, sys.executable, "-m",
                             "lambdaplane.bench.datapath", "agent", *args],
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


# measurements ---------------------------------------------------------------------------------
def _iperf(env: Lab, server_ns: str, client_ns: str, host: str, port: int,
           seconds: float) -> float:
    server = subprocess.Popen(["ip", "netns", "exec", server_ns, "iperf3", "-s", "-1", "-B",
                               host, "-p", str(port)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    env.procs.append(server)
    try:
        for _ in range(50):  # until it listens
            done = subprocess.run(["ip", "netns", "exec", client_ns, "iperf3", "-c", host, "-p",
                                   str(port), "-t", str(max(1, round(seconds))), "-J"],
                                  capture_output=True, text=True, timeout=seconds + 30,
                                  check=False)
            with contextlib.suppress(ValueError):
                data = json.loads(done.stdout)
                if "sum_received" in data.get("end", {}):
                    return data["end"]["sum_received"]["bits_per_second"] / 1e9
            time.sleep(0.1)  # the server was not listening yet (iperf3 exits 0 even so)
        raise RuntimeError(f"iperf3 to {host}:{port} failed: {done.stdout[-500:]}")
    finally:
        server.kill()
        server.wait()


def _conn_rate(env: Lab, server_ns: str, client_ns: str, host: str, port: int,
               seconds: float) -> dict:
    server = _agent(server_ns, "sink", host, str(port))
    env.procs.append(server)
    try:
        assert server.stdout is not None
        server.stdout.readline()  # "listening"
        client = _agent(client_ns, "rate", host, str(port), str(seconds))
        env.procs.append(client)
        out, _ = client.communicate(timeout=seconds + 60)
        result = json.loads(out)
        result["per_s"] = round(result["connections"] / result["seconds"])
        return result
    finally:
        server.kill()
        server.wait()


def _hold(env: Lab, total: int) -> dict:
    """`total` connections open at once from several sandboxes through ENI 1 to R1:HOLD_PORT."""
    from lambdaplane.net import hyperplane as hp

    names = env.names
    r1 = names.resource_netns("r1")
    procs = max(1, -(-total // HOLD_PER_PROCESS))
    servers = [_agent(r1, "hold", R1, str(HOLD_PORT)) for _ in range(procs + 1)]
    env.procs += servers
    for s in servers:
        s.stdout.readline()
    boxes = env.boxes[:procs]
    for box in boxes:
        hp.attach(names, box.address, 1)
    share = [total // procs + (1 if i < total % procs else 0) for i in range(procs)]
    t0 = time.perf_counter()
    clients = [_agent(box.netns, "open", R1, str(HOLD_PORT), str(k))
               for box, k in zip(boxes, share)]
    env.procs += clients
    opened = [json.loads(c.stdout.readline()) for c in clients]  # all still held
    open_s = time.perf_counter() - t0
    flows = _established_to(names.vpc_netns("vpc-d"), HOLD_PORT)
    for c in clients:
        c.communicate("", timeout=120)
    for s in servers:
        s.kill()
        s.wait()
    for box in boxes:
        hp.detach(names, box.address)
    return {"wanted": total, "environments": procs,
            "established": sum(o["ok"] for o in opened),
            "errors": sum(o["errors"] for o in opened),
            "error_kinds": sorted({k for o in opened for k in o["kinds"]}),
            "established_flows_in_plane_while_held": flows, "open_s": round(open_s, 2)}


def _established_to(netns: str, port: int) -> int:
    """Established flows to `port` in a namespace's conntrack table."""
    done = subprocess.run(["ip", "netns", "exec", netns, "conntrack", "-L", "-p", "tcp",
                           "--dport", str(port), "--state", "ESTABLISHED"],
                          capture_output=True, text=True, check=True)
    return len(done.stdout.splitlines())


def _port_errors(names, vpc_id: str, n: int) -> int:
    """ENI n's port-allocation errors as the service counts them (service/hyperplane.py): new
    flows its port guard refused, plus flows NAT found no port for (the plane's)."""
    from lambdaplane.net import hyperplane as hp

    ports = hp.plane_ports(names, vpc_id)
    return ports.refused.get(n, 0) + ports.insert_failed


def _exhaust(env: Lab) -> dict:
    """ENI 2 has EXHAUST_PORTS source ports and the service's port guard: one more connection
    than that to one destination is refused at once (connect error, counted); a sandbox on the
    further ENI 1 still connects."""
    from lambdaplane.net import hyperplane as hp

    names = env.names
    box, other = env.boxes[-1], env.boxes[-2]
    server = _agent(names.resource_netns("r1"), "hold", R1, str(EXHAUST_PORT))
    env.procs.append(server)
    server.stdout.readline()
    before, errors_before = hp.eni_stats(names, "vpc-d", 2), _port_errors(names, "vpc-d", 2)
    hp.attach(names, box.address, 2)
    client = _agent(box.netns, "open", R1, str(EXHAUST_PORT), str(EXHAUST_PORTS + 1), "2")
    env.procs.append(client)
    opened = json.loads(client.stdout.readline())
    after, errors_after = hp.eni_stats(names, "vpc-d", 2), _port_errors(names, "vpc-d", 2)
    hp.attach(names, other.address, 1)
    further = _agent(other.netns, "open", R1, str(EXHAUST_PORT), "1", "2")
    env.procs.append(further)
    further_opened = json.loads(further.stdout.readline())
    for c in (client, further):
        c.communicate("", timeout=30)
    server.kill()
    server.wait()
    hp.detach(names, box.address)
    hp.detach(names, other.address)
    return {"snat_ports": EXHAUST_PORTS, "attempted": EXHAUST_PORTS + 1,
            "established": opened["ok"], "errors": opened["errors"],
            "function_sees": opened["kinds"],
            "port_allocation_errors_counted": errors_after - errors_before,
            "new_connections_counted": after["new_connections"] - before["new_connections"],
            "further_eni_connects": further_opened["ok"] == 1}


def path_rows(samples: dict[str, list[tuple[float, dict]]]) -> dict[str, dict]:
    """Each path's (throughput, connection rate) rounds → its medians and the rounds."""
    rows = {}
    for label, got in samples.items():
        gbits = sorted(g for g, _r in got)
        rates = sorted((r for _g, r in got), key=lambda r: r["per_s"])
        rows[label] = {"throughput_gbit_s": round(gbits[len(gbits) // 2], 2),
                       "throughput_rounds_gbit_s": [round(g, 2) for g, _r in got],
                       "connections": rates[len(rates) // 2],
                       "connections_rounds_per_s": [r["per_s"] for _g, r in got]}
    return rows


def run(out_dir: Path, quick: bool) -> dict:
    seconds, rounds, hold = (1.0, 1, 300) if quick else (3.0, 5, 60_000)
    from lambdaplane.net.worker import GATEWAY

    with lab(sandboxes=max(4, -(-hold // HOLD_PER_PROCESS) + 2)) as env:
        names, box = env.names, env.boxes[0]
        from lambdaplane.net import hyperplane as hp
        hp.attach(names, box.address, 1)
        r1, r2 = names.resource_netns("r1"), names.resource_netns("r2")
        paths = {"direct_veth": (r1, env.direct_box.netns, R1, None),
                 "eni": (r1, box.netns, R1, None),
                 "in_vpc": (r1, r2, R1, None),
                 "runtime_api": (names.worker_netns, box.netns, GATEWAY, DIRECT_PORT)}
        # paths interleaved, several rounds, median: two shared cores make single runs noisy
        samples: dict[str, list[tuple[float, dict]]] = {label: [] for label in paths}
        for _round in range(rounds):
            for label, (server_ns, client_ns, host, port) in paths.items():
                gbit = _iperf(env, server_ns, client_ns, host, port or IPERF_PORT, seconds)
                rate = _conn_rate(env, server_ns, client_ns, host, port or RATE_PORT, seconds)
                samples[label].append((gbit, rate))
        rows = path_rows(samples)
        hp.detach(names, box.address)
        held = _hold(env, hold)
        exhaustion = _exhaust(env)
    result = {
        "machine": machine(), "quick": quick, "seconds_per_measurement": seconds,
        "rounds": rounds,
        "tools": {"throughput": "iperf3, one TCP stream",
                  "connections": "Python connect+close(RST) loop vs Python accept+close loop "
                                 "(one process each; bounds the rate on every path alike)"},
        "paths": rows,
        "path_definitions": PATHS,
        # the goal: ENI path >= 0.9 of a direct veth, for both
        "ratios": {**_ratios(rows, "eni", "direct_veth", ""),
                   **_ratios(rows, "in_vpc", "direct_veth", "in_vpc_")},
        # the first baseline of this benchmark (before 2026-11-27 it was called "direct"):
        # a local, untracked connection to the worker, not a veth into the subnet
        "ratios_vs_runtime_api": {**_ratios(rows, "eni", "runtime_api", ""),
                                  **_ratios(rows, "in_vpc", "runtime_api", "in_vpc_"),
                                  **_ratios(rows, "direct_veth", "runtime_api",
                                            "direct_veth_")},
        "concurrent": held,
        "port_exhaustion": exhaustion,
    }
    write_json(out_dir, "datapath", result)
    _plot(out_dir, result)
    return result


def _ratios(rows: dict, path: str, base: str, prefix: str) -> dict[str, float]:
    return {f"{prefix}throughput_ratio": round(rows[path]["throughput_gbit_s"]
                                               / rows[base]["throughput_gbit_s"], 3),
            f"{prefix}conn_rate_ratio": round(rows[path]["connections"]["per_s"]
                                              / rows[base]["connections"]["per_s"], 3)}


def _plot(out_dir: Path, result: dict) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(result["paths"])
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 4))
    a.bar(labels, [result["paths"][k]["throughput_gbit_s"] for k in labels])
    a.set_ylabel("Gbit/s (iperf3, 1 stream)")
    a.set_title("TCP throughput")
    b.bar(labels, [result["paths"][k]["connections"]["per_s"] for k in labels])
    b.set_ylabel("connections/s")
    b.set_title("new TCP connections/s")
    for ax in (a, b):
        ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    path = out_dir / "datapath.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# agents: one role each, run inside a namespace by `ip netns exec` ----------------------------
def _listen(host: str, port: int, reuseport: bool = False) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuseport:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(4096)
    print("listening", flush=True)
    return sock


def _agent_main(argv: list[str]) -> None:
    import resource

    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    role, host, port = argv[0], argv[1], int(argv[2])
    if role == "sink":  # accept and close
        sock = _listen(host, port)
        while True:
            sock.accept()[0].close()
    elif role == "hold":  # accept and keep, several processes on one port
        sock = _listen(host, port, reuseport=True)
        held = []
        while True:
            held.append(sock.accept()[0])
    elif role == "rate":  # connect+close for `seconds`
        seconds = float(argv[3])
        count = errors = 0
        end = time.perf_counter() + seconds
        t0 = time.perf_counter()
        # closing with RST (linger 0): no TIME_WAIT piles up in the client's port range,
        # which would slow every later connect (and later rounds) on every path
        linger = struct.pack("ii", 1, 0)
        while time.perf_counter() < end:
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
            try:
                s.connect((host, port))
                count += 1
            except OSError:
                errors += 1
            finally:
                s.close()
        print(json.dumps({"connections": count, "errors": errors,
                          "seconds": round(time.perf_counter() - t0, 3)}), flush=True)
    elif role == "open":  # open N, report, hold until stdin closes
        n, timeout = int(argv[3]), float(argv[4]) if len(argv) > 4 else 10.0
        held, errors, kinds = [], 0, set()
        for _ in range(n):
            s = socket.socket()
            s.settimeout(timeout)
            try:
                s.connect((host, port))
                held.append(s)
            except OSError as e:
                errors += 1
                kinds.add(type(e).__name__)
                s.close()
        print(json.dumps({"ok": len(held), "errors": errors, "kinds": sorted(kinds)}),
              flush=True)
        sys.stdin.read()


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["agent"])
    p.add_argument("args", nargs=argparse.REMAINDER)
    ns_args = p.parse_args()
    _agent_main(ns_args.args)
