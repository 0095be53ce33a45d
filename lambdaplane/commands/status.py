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
    rest = {k: v for k, v in execution.items() if k != "environments"}
    print("execution  " + json.dumps(rest, sort_keys=True))
    return 0
