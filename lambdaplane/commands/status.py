"""`lambdaplane status`: what a running server is doing — its instance, functions per region,
the sandbox pool, execution environments by state and each runtime's pre-started pool (its hit
ratio: cold starts that found node ready)."""
from __future__ import annotations

import argparse
import json
import sys

from .admin_client import ServerError, call


def main(endpoint: str, args: argparse.Namespace) -> int:
    try:
        status = call(endpoint, "GET", "status", timeout=10)
    except ServerError as e:
        print(f"lambdaplane status: {e.message}", file=sys.stderr)
        return 1
    execution = status["execution"]
    print(f"server     {endpoint}  (instance {status['instance']}, data {status['data_dir']})")
    print(f"vpc mode   {status['vpc_mode']}   uplink {'on' if status['uplink'] else 'off'}")
    functions = status["functions"] or {}
    print("functions  " + (", ".join(f"{n} in {r}" for r, n in sorted(functions.items()))
                           or "none"))
    envs = execution.get("environments", {})
    print("envs       " + ", ".join(f"{n} {state}" for state, n in sorted(envs.items())))
    capacity = execution.get("capacity")
    if capacity:
        print(f"capacity   {capacity['mode']}: pool {capacity['pool_target']} "
              f"({capacity['pool_bound']}), prefork {capacity['prefork_target']} "
              f"({capacity['prefork_bound']}); learnt peak {capacity['learnt_peak']} "
              f"{json.dumps(capacity['learnt_peaks'], sort_keys=True)}; floors "
              f"{capacity['pool_floor']}/{capacity['prefork_floor']}, cap {capacity['cap']}, "
              f"MemAvailable {capacity['memory_available_mb']} MB")
    for runtime, pool in sorted((execution.get("prestarted") or {}).items()):
        ratio = pool.get("hit_ratio")
        print(f"prestart   {runtime}: {pool.get('runtime_ready', 0)} ready, "
              f"{pool.get('booting', 0)} booting, target {pool.get('prewarmed_target', 0)}; "
              f"cold starts found node ready {pool.get('taken_ready', 0)}, starting "
              f"{pool.get('taken_starting', 0)}, none {pool.get('taken_none', 0)} (hit ratio "
              f"{'-' if ratio is None else f'{ratio:.2f}'}); boot {pool.get('boot_ms', 0)} ms, "
              f"{pool.get('cold_start_rate', 0)} cold starts/s")
    rest = {k: v for k, v in execution.items()
            if k not in ("environments", "capacity", "prestarted")}
    print("execution  " + json.dumps(rest, sort_keys=True))
    return 0
