"""`lambdaplane logs NAME [--tail N] [--region R]`: print a function's captured log (its
stdout/stderr between START/END/REPORT lines), as the server keeps it."""
from __future__ import annotations

import argparse
import sys
import urllib.parse

from .admin_client import ServerError, call

DEFAULT_REGION = "us-east-1"


def main(endpoint: str, args: argparse.Namespace) -> int:
    region = getattr(args, "region", None) or DEFAULT_REGION
    tail = getattr(args, "tail", None) or 200
    path = "logs/{}/{}?{}".format(urllib.parse.quote(region, safe=""),
                                  urllib.parse.quote(args.name, safe=""),
                                  urllib.parse.urlencode({"tail": tail}))
    try:
        lines = call(endpoint, "GET", path)["lines"]
    except ServerError as e:
        print(f"lambdaplane logs: {e.message}", file=sys.stderr)
        return 1
    for line in lines:
        print(line)
    return 0
