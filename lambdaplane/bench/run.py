"""Entry point of `lambdaplane bench`: runs the chosen benchmarks against a private server
(or --endpoint) and prints each JSON result."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from . import invoke
from .common import private_server


def main(args: argparse.Namespace) -> int:
    out_dir = Path(args.out)
    cold_n, warm_n = (5, 20) if args.quick else (200, 1000)
    which = ["invoke", "vpc"] if args.which == "all" else [args.which]
    results = {}
    if args.endpoint:
        results = _run(which, args.endpoint, out_dir, cold_n, warm_n, args.quick)
    else:
        with private_server() as endpoint:
            results = _run(which, endpoint, out_dir, cold_n, warm_n, args.quick)
    print(json.dumps({k: {kk: vv for kk, vv in v.items() if kk != "samples_ms"}
                      for k, v in results.items()}, indent=2))
    return 0


def _run(which: list[str], endpoint: str, out_dir: Path, cold_n: int, warm_n: int,
         quick: bool) -> dict:
    results = {}
    if "invoke" in which:
        results["invoke"] = invoke.run(endpoint, out_dir, cold_n, warm_n)
    if "vpc" in which:
        from . import vpc
        results["vpc"] = vpc.run(endpoint, out_dir, quick)
    return results
