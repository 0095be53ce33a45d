"""What must hold after a server restarts from a SIGKILL: the store is whole and consistent,
the reconcilers converge, and the kernel holds exactly what the running server accounts for —
no namespace, link, nft table, cgroup or process of ours beyond it. Each check returns a list
of violations (empty = held) so a test can report all of them at once."""
from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import os
import sqlite3
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

from lambdaplane.cleanup import CGROUP_ROOT, CONTROLLERS, _pids_in
from lambdaplane.net import nft, ns
from lambdaplane.net.names import Names
from lambdaplane.net.netlink import Netlink
from lambdaplane.sandbox import cgroups

from tests.faults.ledger import ABSENT
from tests.faults.workload import token_of


# -- the store ---------------------------------------------------------------------------------
def database_problems(data_dir: Path) -> list[str]:
    """SQLite's own integrity and foreign-key checks, read-only beside the running server."""
    uri = f"file:{data_dir / 'lambdaplane.sqlite3'}?mode=ro"
    conn = sqlite3.connect(uri, uri=True, timeout=10)
    try:
        problems = [r[0] for r in conn.execute("PRAGMA integrity_check") if r[0] != "ok"]
        problems += [f"foreign key: {tuple(r)}" for r in conn.execute("PRAGMA foreign_key_check")]
        return problems
    finally:
        conn.close()


def event_rows(data_dir: Path) -> dict[str, tuple[str, int, str | None]]:
    """request id → (status, attempts, error type) of every Event invocation the store holds."""
    conn = sqlite3.connect(f"file:{data_dir / 'lambdaplane.sqlite3'}?mode=ro", uri=True,
                           timeout=10)
    try:
        return {r[0]: (r[1], r[2], r[3]) for r in conn.execute(
            "SELECT request_id, status, attempts, error_type FROM event_invocations")}
    finally:
        conn.close()


def observed_functions(lam: Any) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for page in lam.get_paginator("list_functions").paginate():
        for f in page["Functions"]:
            out[f["FunctionName"]] = f
    return out


def function_problems(lam: Any, endpoint: str, functions: dict[str, dict[str, Any]],
                      settle_s: float = 20.0) -> list[str]:
    """Every function settles (a transition cut short by the kill is resumed) and its code blob
    is there with the advertised CodeSha256."""
    problems: list[str] = []
    deadline = time.monotonic() + settle_s
    for name in functions:
        while True:
            conf = lam.get_function(FunctionName=name)
            c = conf["Configuration"]
            if c["State"] == "Active" and c["LastUpdateStatus"] == "Successful":
                break
            if time.monotonic() > deadline:
                problems.append(f"function {name} did not settle: State={c['State']} "
                                f"LastUpdateStatus={c['LastUpdateStatus']} "
                                f"{c.get('LastUpdateStatusReason')}")
                break
            time.sleep(0.1)
        location = conf["Code"]["Location"]
        try:
            with urllib.request.urlopen(location, timeout=10) as r:
                blob = r.read()
        except OSError as e:
            problems.append(f"function {name}: code at {location} unreadable: {e}")
            continue
        sha = base64.b64encode(hashlib.sha256(blob).digest()).decode()
        if sha != c["CodeSha256"]:
            problems.append(f"function {name}: code blob sha {sha} != {c['CodeSha256']}")
    return problems


def ec2_observed(ec2: Any) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """(kind → token → state) for the ledger, and the store's consistency problems."""
    vpcs = ec2.describe_vpcs()["Vpcs"]
    subnets = ec2.describe_subnets()["Subnets"]
    groups = ec2.describe_security_groups()["SecurityGroups"]
    enis = ec2.describe_network_interfaces()["NetworkInterfaces"]
    vpc_ids = {v["VpcId"] for v in vpcs}
    subnet_by_id = {s["SubnetId"]: s for s in subnets}
    problems: list[str] = []
    for s in subnets:
        if s["VpcId"] not in vpc_ids:
            problems.append(f"subnet {s['SubnetId']} in missing VPC {s['VpcId']}")
    for g in groups:
        if g.get("VpcId") and g["VpcId"] not in vpc_ids:
            problems.append(f"group {g['GroupId']} in missing VPC {g['VpcId']}")
    used: Counter[str] = Counter()
    for e in enis:
        subnet = subnet_by_id.get(e["SubnetId"])
        if subnet is None:
            problems.append(f"ENI {e['NetworkInterfaceId']} in missing subnet {e['SubnetId']}")
            continue
        if subnet["VpcId"] != e["VpcId"]:
            problems.append(f"ENI {e['NetworkInterfaceId']} VPC {e['VpcId']} != its subnet's")
        used[e["SubnetId"]] += 1
    for s in subnets:
        size = ipaddress.IPv4Network(s["CidrBlock"]).num_addresses
        if s["AvailableIpAddressCount"] != size - 5 - used[s["SubnetId"]]:
            problems.append(f"subnet {s['SubnetId']}: {s['AvailableIpAddressCount']} available, "
                            f"but {size} - 5 reserved - {used[s['SubnetId']]} ENIs")
    token_of_subnet = {s["SubnetId"]: token_of(s) for s in subnets}
    observed: dict[str, dict[str, Any]] = {"vpc": {}, "subnet": {}, "sg": {}, "rules": {},
                                           "eni": {}}
    for v in vpcs:
        if (t := token_of(v)) is not None:
            observed["vpc"][t] = v["CidrBlock"]
    for s in subnets:
        if (t := token_of(s)) is not None:
            observed["subnet"][t] = s["CidrBlock"]
    for g in groups:
        if (t := token_of(g)) is not None:
            observed["sg"][t] = g["VpcId"]
            observed["rules"][t] = frozenset(p["FromPort"] for p in g["IpPermissions"])
    for e in enis:
        if (t := token_of(e)) is not None:
            observed["eni"][t] = token_of_subnet.get(e["SubnetId"], ABSENT)
    return observed, problems


def hyperplane_enis(ec2: Any) -> list[dict[str, Any]]:
    return [e for e in ec2.describe_network_interfaces()["NetworkInterfaces"]
            if e.get("InterfaceType") == "lambda"]


def hyperplane_problems(functions: dict[str, dict[str, Any]],
                        lambda_enis: list[dict[str, Any]]) -> list[str]:
    """Exactly one Hyperplane ENI per (subnet, group set) some function is configured with."""
    wanted: set[tuple[str, tuple[str, ...]]] = set()
    for f in functions.values():
        config = f.get("VpcConfig") or {}
        for subnet in config.get("SubnetIds") or []:
            wanted.add((subnet, tuple(sorted(config.get("SecurityGroupIds") or []))))
    have = Counter((e["SubnetId"], tuple(sorted(g["GroupId"] for g in e["Groups"])))
                   for e in lambda_enis)
    problems = [f"no Hyperplane ENI for {k}" for k in sorted(wanted - set(have))]
    problems += [f"Hyperplane ENI for {k} that no function uses" for k in sorted(set(have) - wanted)]
    problems += [f"{n} Hyperplane ENIs for {k} (one expected: flows are few)"
                 for k, n in have.items() if n > 1]
    return problems


# -- the reconcilers -----------------------------------------------------------------------------
def reconcile(endpoint: str) -> dict[str, list[str]]:
    req = urllib.request.Request(endpoint + "/_lambdaplane/reconcile", data=b"{}",
                                 method="POST")
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.loads(r.read())["changes"]


# -- the kernel ------------------------------------------------------------------------------------
def descendants(root_pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out, todo = set(), [root_pid]
    while todo:
        pid = todo.pop()
        for child in children.get(pid, []):
            if child not in out:
                out.add(child)
                todo.append(child)
    return out


def kernel_problems(instance: str, server_pid: int, status: dict[str, Any],
                    vpc_ids: set[str], hyperplane_enis: int) -> list[str]:
    """The kernel objects of `instance` are exactly those the live server accounts for."""
    names = Names(instance)
    p = names.prefix
    problems: list[str] = []
    execution = status["execution"]
    sandbox_ns, other_ns = set(), set()
    for n in ns.list_named(p + "-"):
        rest = n[len(p) + 1:]
        if rest.startswith("s") and rest[1:].isdigit():
            sandbox_ns.add(int(rest[1:]))
        else:
            other_ns.add(rest)
    expected_sandboxes = execution["pool_ready"] + execution["sandboxes_in_use"]
    if len(sandbox_ns) != expected_sandboxes:
        problems.append(f"{len(sandbox_ns)} sandbox namespaces, server accounts for "
                        f"{expected_sandboxes} (ready {execution['pool_ready']}, in use "
                        f"{execution['sandboxes_in_use']})")
    wanted_other = {"w"} | set(vpc_ids)
    stray = other_ns - wanted_other
    if stray or "w" not in other_ns or not set(vpc_ids) <= other_ns:
        problems.append(f"namespaces: stray {sorted(stray)}, missing "
                        f"{sorted(({'w'} | set(vpc_ids)) - other_ns)}")
    with Netlink(names.worker_netns) as worker:
        veths = {int(link.name[len(p) + 1:]) for link in worker.links(p + "s")
                 if link.name[len(p) + 1:].isdigit()}
        transits = [link.name for link in worker.links(p + "t")
                    if link.name[len(p) + 1:].isdigit()]
    if len(transits) != hyperplane_enis:
        problems.append(f"{len(transits)} Hyperplane transit links in the worker for "
                        f"{hyperplane_enis} Hyperplane ENIs")
    if veths != sandbox_ns:
        problems.append(f"worker sandbox veths {sorted(veths ^ sandbox_ns)} without a "
                        "namespace (or the other way round)")
    with Netlink() as root:
        root_links = [link.name for link in root.links(p)]
    if root_links:
        problems.append(f"root-namespace links {root_links} (uplink is off)")
    root_tables = [t for _f, t in nft.tables(names.nft_table)]
    if root_tables:
        problems.append(f"root-namespace nft tables {root_tables} (uplink is off)")
    # environments, and pre-forked sandboxes (each with an env-* cgroup before it is assigned)
    envs = sum(execution["environments"].values()) + execution.get("prewarmed_ready", 0) + \
        execution.get("prewarmed_other", 0)
    ours = descendants(server_pid)
    for controller in CONTROLLERS:
        base = CGROUP_ROOT / controller / names.cgroup_dir
        env_dirs = [d for d in base.glob("env-*")] if base.is_dir() else []
        # cpu: an assigned environment's group is in its function's top-level group
        functions = cgroups.function_cpu_dirs(names) if controller == "cpu" else []
        env_dirs += [d for fn in functions for d in fn.glob("env-*")]
        if len(env_dirs) != envs:
            problems.append(f"{controller}: {len(env_dirs)} environment cgroups, server "
                            f"accounts for {envs} environments")
        foreign = set().union(*(_pids_in(d) for d in [base, *functions])) - ours
        if foreign:
            problems.append(f"{controller}: processes {sorted(foreign)} in our cgroups are not "
                            "the server's descendants (left by the killed server)")
    return problems


def settled_kernel_problems(instance: str, server_pid: int, endpoint: str, vpc_ids: set[str],
                            hyperplane_enis: int, attempts: int = 30) -> list[str]:
    """kernel_problems once the server is idle (pool refilled, teardowns done)."""
    problems: list[str] = []
    for _ in range(attempts):
        with urllib.request.urlopen(endpoint + "/_lambdaplane/status", timeout=10) as r:
            status = json.loads(r.read())
        problems = kernel_problems(instance, server_pid, status, vpc_ids, hyperplane_enis)
        if not problems:
            return []
        time.sleep(0.2)
    return problems
