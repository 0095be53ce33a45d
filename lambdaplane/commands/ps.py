"""`lambdaplane ps`: the programs started with `lambdaplane run` and their interfaces."""
from __future__ import annotations

import argparse
import sys

from .admin_client import ServerError, call, short_command


def main(endpoint: str, args: argparse.Namespace) -> int:
    try:
        resources = call(endpoint, "GET", "ps")["resources"]
    except ServerError as e:
        print(f"lambdaplane ps: {e}", file=sys.stderr)
        return 1
    rows = [("ENI", "ADDRESS", "SUBNET", "GROUPS", "PID", "NAME", "COMMAND")]
    for r in resources:
        rows.append((r["id"], r["ip"], r["subnet"], ",".join(g["name"] for g in r["groups"]),
                     str(r["process_pid"] or r["owner_pid"] or "-"), r["name"] or "-",
                     short_command(r["argv"])))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1])
    return 0
