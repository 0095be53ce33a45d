"""What the console shows, as one JSON-ready document: functions with their numbers, execution
environments, and the VPC map (VPCs → subnets → interfaces, the Hyperplane ENIs with the
functions that share them, their sandboxes and live flow counts, `lambdaplane run` resources,
each VPC's attached internet gateways, its NAT gateways in their subnets and the Elastic IPs of
the interfaces that have one).

Owns only the assembling: every fact is read through the services' public methods and the
metrics module's counts, never from private state."""
from __future__ import annotations

import time
from typing import Any

from ..metrics import Metrics, eni_levels
from ..store.hyperplane import group_key
from ..api.vpc_admin import network_tree

LATEST = "$LATEST"
COUNTERS_EVERY_S = 2.0  # the ENIs' kernel counters (an nft read per ENI) are read this often


class EniCounters:
    """The Hyperplane ENIs' packet counters (metrics.eni_levels), read at most every
    COUNTERS_EVERY_S however often the console's state is built."""

    def __init__(self) -> None:
        self._levels: dict[str, dict[str, Any]] = {}
        self._read_at = float("-inf")

    async def get(self, platform: Any, hyperplane: Any) -> dict[str, dict[str, Any]]:
        if time.monotonic() - self._read_at >= COUNTERS_EVERY_S:
            self._levels = {item["eni"]: item for item in await eni_levels(platform, hyperplane)}
            self._read_at = time.monotonic()
        return self._levels


def _functions(platform: Any, metrics: Metrics | None,
               envs_by_function: dict[tuple[str, str], int]) -> list[dict[str, Any]]:
    service = platform.functions
    environments = platform.environments
    out = []
    for record in sorted(service.store.all(), key=lambda r: (r.region, r.name)):
        versions = [v.version for v in service.versions.all_of(record.region, record.name)]
        aliases, _ = service.aliases.page(record.region, record.name, None, None, 10_000)
        counts = metrics.function_counts(record.name) if metrics is not None else None
        keys = [(record.region, record.name)] + [(record.region, f"{record.name}:{v}")
                                                   for v in versions]
        vpc = record.vpc_config
        out.append({
            "region": record.region, "name": record.name, "arn": record.arn,
            "state": record.state, "state_reason": record.state_reason,
            "last_update_status": record.last_update_status,
            "runtime": record.runtime, "memory_mb": record.memory_size,
            "versions": versions,
            "aliases": [{"name": a.name, "version": a.function_version,
                         "weights": a.weights} for a in aliases],
            "invocations": counts.invocations if counts else 0,
            "errors": counts.errors if counts else 0,
            "throttles": counts.throttles if counts else 0,
            "cold_starts": counts.cold_starts if counts else 0,
            "p50_ms": counts.percentile(0.50) if counts else None,
            "p99_ms": counts.percentile(0.99) if counts else None,
            "concurrency": sum(environments.in_flight(k) for k in keys),
            "reserved_concurrency": record.reserved_concurrency,
            "environments": envs_by_function.get((record.region, record.name), 0),
            "vpc": {"vpc_id": vpc.vpc_id or None, "subnets": list(vpc.subnet_ids),
                    "groups": list(vpc.security_group_ids)} if vpc is not None and vpc.attached
            else None,
        })
    return out


def _environments(platform: Any, eni_of_address: dict[str, str]) -> list[dict[str, Any]]:
    # a moment rather than a duration, so that the document changes only when something does
    now = time.time()
    return [{"id": e.env_id, "region": e.region, "function": e.function, "version": e.version,
             "state": e.state, "sandbox": e.sandbox_address, "log_stream": e.log_stream,
             "idle_since": int(now - e.idle_s), "eni": eni_of_address.get(e.sandbox_address)}
            for e in sorted(platform.environments.environments(),
                            key=lambda e: (e.region, e.function, e.env_id))]


async def _hyperplane(platform: Any, functions: list[dict[str, Any]], counters: EniCounters
                      ) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """Per Hyperplane ENI id: its functions, sandboxes and counters; sandbox → ENI id."""
    hyperplane = getattr(platform, "hyperplane", None)
    if hyperplane is None:
        return {}, {}
    rows = hyperplane.enis()
    by_n = {r.n: r for r in rows}
    flows = hyperplane.flows()
    levels = await counters.get(platform, hyperplane)
    sandboxes: dict[str, list[str]] = {}
    eni_of_address: dict[str, str] = {}
    for address, n in hyperplane.attachments().items():
        if n in by_n:
            sandboxes.setdefault(by_n[n].eni_id, []).append(address)
            eni_of_address[address] = by_n[n].eni_id
    by_key: dict[tuple[str, str, str], list[str]] = {}
    for f in functions:
        if f["vpc"] is None:
            continue
        groups = group_key(f["vpc"]["groups"])
        for subnet in f["vpc"]["subnets"]:
            by_key.setdefault((f["region"], subnet, groups), []).append(f["name"])
    info = {}
    for row in rows:
        counters = levels.get(row.eni_id, {})
        info[row.eni_id] = {
            "hyperplane": True, "n": row.n, "created_for": row.created_for,
            "functions": sorted(by_key.get((row.key.region, row.key.subnet_id,
                                            row.key.groups), [])),
            "sandboxes": sorted(sandboxes.get(row.eni_id, [])),
            "flows": flows.get(row.n, counters.get("active_connections", 0)),
            **{k: v for k, v in counters.items()
               if k not in ("eni", "n", "vpc", "subnet", "active_connections")}}
    return info, eni_of_address


def _add_gateways(vpc_service: Any, tree: dict[str, Any]) -> None:
    """Into the network tree: per VPC its attached internet gateways, per subnet its NAT
    gateways (state, addresses), per interface its Elastic IP — read through the EC2
    Describe* reads, as a client would see them."""
    for region in tree["regions"]:
        name = region["region"]
        igws = vpc_service.describe_internet_gateways(name, [], [])
        nats = [n for n in vpc_service.describe_nat_gateways(name, {}) if n.state != "deleted"]
        eips = {a.eni_id: a.public_ip for a in vpc_service.describe_addresses(name, {})
                if a.eni_id}
        for vpc in region["vpcs"]:
            vpc["internet_gateways"] = [{"id": g.id} for g in igws if g.vpc_id == vpc["id"]]
            for subnet in vpc["subnets"]:
                subnet["nat_gateways"] = [
                    {"id": n.id, "state": n.state, "connectivity": n.connectivity,
                     "public_ip": n.public_ip, "private_ip": n.private_ip,
                     "interface": n.eni_id} for n in nats if n.subnet_id == subnet["id"]]
                for eni in subnet["interfaces"]:
                    eni["elastic_ip"] = eips.get(eni["id"])


async def console_state(platform: Any, metrics: Metrics | None,
                        counters: EniCounters) -> dict[str, Any]:
    env_list = platform.environments.environments()
    envs_by_function: dict[tuple[str, str], int] = {}
    for e in env_list:
        envs_by_function[(e.region, e.function)] = envs_by_function.get(
            (e.region, e.function), 0) + 1
    functions = _functions(platform, metrics, envs_by_function)
    hyperplane, eni_of_address = await _hyperplane(platform, functions, counters)
    tree = network_tree(platform.vpc)
    resources = {e.id for e in platform.vpc.resources()}
    for region in tree["regions"]:
        for vpc in region["vpcs"]:
            for subnet in vpc["subnets"]:
                for eni in subnet["interfaces"]:
                    eni["run_resource"] = eni["id"] in resources
                    eni.update(hyperplane.get(eni["id"], {"hyperplane": False}))
    _add_gateways(platform.vpc, tree)
    stats = platform.environments.stats()
    return {
        "instance": f"lp{platform.names.instance}",
        "vpc_mode": platform.settings.vpc_mode,
        "functions": functions,
        "environments": _environments(platform, eni_of_address),
        "execution": {"in_flight": stats.get("in_flight", 0),
                      "environments": stats.get("environments", {}),
                      **{k: v for k, v in stats.items()
                         if k.startswith(("pool_", "sandboxes_")) and isinstance(v, int)}},
        "network": tree,
    }
