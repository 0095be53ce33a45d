"""`lambdaplane status`: what a running server is doing — its instance, functions per region,
the sandbox pool and execution environments by state."""
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
    rest = {k: v for k, v in execution.items() if k not in ("environments", "capacity")}
    print("execution  " + json.dumps(rest, sort_keys=True))
    return 0
