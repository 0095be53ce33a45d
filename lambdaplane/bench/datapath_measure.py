"""The measurements of `lambdaplane bench datapath` (also used by `bench nat`), each between
namespaces of a lab (datapath_lab.py) with agent processes (datapath_agent.py): TCP
throughput (iperf3, one stream), new connections/s (a Python connect+close loop against an
accept+close loop), many connections held open at once through ENI 1, and port exhaustion on
the narrowed ENI 2; then each path's medians over the rounds (`path_rows`) and the ratios of
two paths (`ratios`). Every process started is in `Lab.procs`, so the lab's `finally` ends it
even when a measurement fails."""
from __future__ import annotations

import contextlib
import json
import subprocess
import time

from .datapath_lab import EXHAUST_PORT, EXHAUST_PORTS, HOLD_PER_PROCESS, HOLD_PORT, R1, Lab, agent


def iperf(env: Lab, server_ns: str, client_ns: str, host: str, port: int,
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


def conn_rate(env: Lab, server_ns: str, client_ns: str, host: str, port: int,
               seconds: float) -> dict:
    server = agent(server_ns, "sink", host, str(port))
    env.procs.append(server)
    try:
        assert server.stdout is not None
        server.stdout.readline()  # "listening"
        client = agent(client_ns, "rate", host, str(port), str(seconds))
        env.procs.append(client)
        out, _ = client.communicate(timeout=seconds + 60)
        result = json.loads(out)
        result["per_s"] = round(result["connections"] / result["seconds"])
        return result
    finally:
        server.kill()
        server.wait()


def hold_open(env: Lab, total: int) -> dict:
    """`total` connections open at once from several sandboxes through ENI 1 to R1:HOLD_PORT."""
    from lambdaplane.net import hyperplane as hp

    names = env.names
    r1 = names.resource_netns("r1")
    procs = max(1, -(-total // HOLD_PER_PROCESS))
    servers = [agent(r1, "hold", R1, str(HOLD_PORT)) for _ in range(procs + 1)]
    env.procs += servers
    for s in servers:
        s.stdout.readline()
    boxes = env.boxes[:procs]
    for box in boxes:
        hp.attach(names, box.address, 1)
    share = [total // procs + (1 if i < total % procs else 0) for i in range(procs)]
    t0 = time.perf_counter()
    clients = [agent(box.netns, "open", R1, str(HOLD_PORT), str(k))
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


def exhaust(env: Lab) -> dict:
    """ENI 2 has EXHAUST_PORTS source ports and the service's port guard: one more connection
    than that to one destination is refused at once (connect error, counted); a sandbox on the
    further ENI 1 still connects."""
    from lambdaplane.net import hyperplane as hp

    names = env.names
    box, other = env.boxes[-1], env.boxes[-2]
    server = agent(names.resource_netns("r1"), "hold", R1, str(EXHAUST_PORT))
    env.procs.append(server)
    server.stdout.readline()
    before, errors_before = hp.eni_stats(names, "vpc-d", 2), _port_errors(names, "vpc-d", 2)
    hp.attach(names, box.address, 2)
    client = agent(box.netns, "open", R1, str(EXHAUST_PORT), str(EXHAUST_PORTS + 1), "2")
    env.procs.append(client)
    opened = json.loads(client.stdout.readline())
    after, errors_after = hp.eni_stats(names, "vpc-d", 2), _port_errors(names, "vpc-d", 2)
    hp.attach(names, other.address, 1)
    further = agent(other.netns, "open", R1, str(EXHAUST_PORT), "1", "2")
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


def ratios(rows: dict, path: str, base: str, prefix: str) -> dict[str, float]:
    return {f"{prefix}throughput_ratio": round(rows[path]["throughput_gbit_s"]
                                               / rows[base]["throughput_gbit_s"], 3),
            f"{prefix}conn_rate_ratio": round(rows[path]["connections"]["per_s"]
                                              / rows[base]["connections"]["per_s"], 3)}
