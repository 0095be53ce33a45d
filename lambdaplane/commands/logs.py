"""`lambdaplane logs NAME [--tail N] [--region R] [-f]`: print a function's log (its
stdout/stderr between START/END/REPORT lines) from the server's Logs store — the function's
log group, every environment's stream, in time order — or, for a function whose output never
reached the store, from its log file as before. `-f` follows: new lines as they are written,
until Ctrl-C."""
from __future__ import annotations

import argparse
import sys
import time
import urllib.parse

from .admin_client import ServerError, call

DEFAULT_REGION = "us-east-1"
FOLLOW_INTERVAL_S = 0.5


def main(endpoint: str, args: argparse.Namespace) -> int:
    region = getattr(args, "region", None) or DEFAULT_REGION
    tail = getattr(args, "tail", None) or 200
    base = "logs/{}/{}".format(urllib.parse.quote(region, safe=""),
                               urllib.parse.quote(args.name, safe=""))
    query: dict[str, object] = {"tail": tail}
    try:
        while True:
            answer = call(endpoint, "GET", f"{base}?{urllib.parse.urlencode(query)}")
            for line in answer["lines"]:
                print(line, flush=True)
            if not getattr(args, "follow", False):
                return 0
            if answer.get("next"):
                query = {"tail": 1000, "after": answer["next"]}
            time.sleep(FOLLOW_INTERVAL_S)
    except ServerError as e:
        print(f"lambdaplane logs: {e.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
