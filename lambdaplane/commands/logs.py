"""`lambdaplane logs NAME [--tail N] [--region R]`: print a function's captured log (its
stdout/stderr between START/END/REPORT lines), as the server keeps it."""
from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.parse
import urllib.request

DEFAULT_REGION = "us-east-1"


def fetch_lines(endpoint: str, region: str, name: str, tail: int) -> list[str]:
    path = "/_lambdaplane/logs/{}/{}?{}".format(
        urllib.parse.quote(region, safe=""), urllib.parse.quote(name, safe=""),
        urllib.parse.urlencode({"tail": tail}))
    with urllib.request.urlopen(endpoint.rstrip("/") + path, timeout=30) as resp:
        return list(json.loads(resp.read())["lines"])


def main(endpoint: str, args: argparse.Namespace) -> int:
    region = getattr(args, "region", None) or DEFAULT_REGION
    tail = getattr(args, "tail", None) or 200
    try:
        lines = fetch_lines(endpoint, region, args.name, tail)
    except urllib.error.HTTPError as e:
        try:
            message = json.loads(e.read()).get("message", e.reason)
        except ValueError:
            message = e.reason
        print(f"lambdaplane logs: {message}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"lambdaplane logs: cannot reach {endpoint}: {e}", file=sys.stderr)
        return 1
    for line in lines:
        print(line)
    return 0
