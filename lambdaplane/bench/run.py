"""Entry point of `lambdaplane bench`: runs the chosen benchmarks against a private server
(or --endpoint) and prints each JSON result."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import burst, invoke, report, scale, throughput
from .common import private_server, write_json

# `bench all` runs these, in this order; each gets a private server of its own (unless
# --endpoint), sized by the benchmark's `server_args` where it has one.
ALL = ["invoke", "throughput", "burst", "scale", "neighbours", "vpc", "datapath", "default-server",
       "nat", "fabric"]
SIZED = {"burst": burst.server_args, "scale": scale.server_args}


_RUNTIMES: list[str] = []  # bench invoke --runtimes
# `bench all` measures invoke in these runtimes side by side (the README's Node.js row), those
# of them installed here; the top-level invoke figures are the first's (python3.11).
ALL_INVOKE_RUNTIMES = ("python3.11", "nodejs22.x")


def _all_invoke_runtimes() -> list[str]:
    from ..sandbox.runtimes import registry
    found = registry.installed()
    chosen = [rt for rt in ALL_INVOKE_RUNTIMES if rt in found]
    return chosen if len(chosen) > 1 else []


def _all() -> list[str]:
    """ALL, less fabric where its PostgreSQL or FRR is not installed (said on stderr)."""
    from ..net import frr
    from . import postgres
    if frr.installed() and postgres.available():
        return ALL
    print("lambdaplane bench all: fabric left out (it needs Debian's frr and PostgreSQL)",
          file=sys.stderr)
    return [name for name in ALL if name != "fabric"]


def main(args: argparse.Namespace) -> int:
    out_dir = Path(args.out)
    _RUNTIMES[:] = [r for r in (getattr(args, "runtimes", "") or "").split(",") if r]
    if args.which == "all" and not _RUNTIMES:
        _RUNTIMES[:] = _all_invoke_runtimes()
    if args.which == "report":
        files = {name.replace("-", "_"): out_dir / f"{name.replace('-', '_')}.json"
                 for name in ALL}
        found = {name: json.loads(path.read_text()) for name, path in files.items()
                 if path.exists()}
        print(f"summary of {sorted(found)}: {report.write(out_dir, found)}")
        if args.readme:
            from . import readme
            try:
                names = readme.update(Path(args.readme), out_dir, found)
            except readme.MissingMarkers as e:
                raise SystemExit(f"lambdaplane bench report: {args.readme}: {e}") from None
            print(f"{args.readme}: wrote {', '.join(names)}")
        return 0
    cold_n, warm_n = (5, 20) if args.quick else (200, 1000)
    which = _all() if args.which == "all" else [args.which]
    results = {}
    for name in which:
        if name == "logs":  # the log store in-process: no server to measure
            from . import logs
            results["logs"] = logs.run(out_dir, args.quick)
            continue
        if name == "default-server":  # two private servers of its own: fixed and adaptive
            from . import default_server
            results["default_server"] = default_server.run(out_dir, args.quick)
            continue
        if name == "neighbours" and not args.endpoint:  # the default slice vs the kernel's
            from . import neighbours
            with private_server() as endpoint, \
                    private_server("--cpu-slice-us", "0") as kernel_default:
                results["neighbours"] = neighbours.run(
                    endpoint, out_dir, args.quick, {"cpu-slice-us 0": kernel_default})
            continue
        if name == "datapath":  # namespaces of its own, no server to measure
            from . import datapath
            results["datapath"] = datapath.run(out_dir, args.quick)
            continue
        if name == "fabric":  # PostgreSQL, two namespace-hosts, agents and servers of its own
            from . import fabric
            results["fabric"] = fabric.run(out_dir, args.quick)
            continue
        if name == "nat":  # namespaces of its own, no server to measure
            from . import nat
            results["nat"] = nat.run(out_dir, args.quick)
            continue
        if args.endpoint:
            results.update(_run([name], args.endpoint, out_dir, cold_n, warm_n, args.quick))
            continue
        if name in SIZED:
            extra = SIZED[name](args.quick)
        else:
            # the VPC bench bursts up to 200 cold starts: keep that many sandboxes ready
            extra = ("--pool-size", "256") if name == "vpc" and not args.quick else ()
        with private_server(*extra) as endpoint:
            results.update(_run([name], endpoint, out_dir, cold_n, warm_n, args.quick))
        if extra:  # the figure says how its server differs from the default (report.py)
            key = name.replace("-", "_")
            results[key]["server_args"] = list(extra)
            write_json(out_dir, key, results[key])
    if args.which == "all":
        print(f"summary: {report.write(out_dir, results)}")
    print(json.dumps({k: {kk: vv for kk, vv in v.items() if kk != "samples_ms"}
                      for k, v in results.items()}, indent=2))
    return 0


def _run(which: list[str], endpoint: str, out_dir: Path, cold_n: int, warm_n: int,
         quick: bool) -> dict:
    results = {}
    if "invoke" in which:
        results["invoke"] = invoke.run(endpoint, out_dir, cold_n, warm_n,
                                       _RUNTIMES or None)
    if "throughput" in which:
        results["throughput"] = throughput.run(endpoint, out_dir, quick)
    if "burst" in which:
        results["burst"] = burst.run(endpoint, out_dir, quick)
    if "scale" in which:
        results["scale"] = scale.run(endpoint, out_dir, quick)
    if "neighbours" in which:
        from . import neighbours
        results["neighbours"] = neighbours.run(endpoint, out_dir, quick)
    if "vpc" in which:
        from . import vpc
        results["vpc"] = vpc.run(endpoint, out_dir, quick)
    return results
