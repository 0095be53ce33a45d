"""`lambdaplane agent-secret list|rotate|retire`: the operator's view of the cluster secrets
that sign requests to the agents' internal endpoint (store/agent_secrets.py,
service/agent_auth.py). Ids and ages only: a secret itself is never printed."""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any


def add_agent_secret_parser(sub: Any) -> None:
    p = sub.add_parser("agent-secret", help="list, rotate or retire the secret that signs "
                                            "requests to agents (docs/agents.md)")
    p.add_argument("action", choices=["list", "rotate", "retire"],
                   help="list: ids and ages; rotate: add a new secret (used for signing once "
                        "every process holds it); retire: drop all but the newest")
    p.add_argument("--database", required=True, metavar="URL",
                   help="the database `serve` and the agents share (postgresql://…)")
    p.add_argument("--force", action="store_true",
                   help="retire even if the newest secret may not be signing yet")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .service.agent_auth import ACTIVATE_S, RELOAD_S
    from .store.agent_secrets import AgentSecretStore
    from .store.db import Database, DatabaseUnavailable

    try:
        db = Database.open(Path("."), args.database)
    except DatabaseUnavailable as e:
        raise SystemExit(f"lambdaplane agent-secret: {e}") from None
    try:
        store = AgentSecretStore(db)
        now = time.time()
        if args.action == "rotate":
            made = store.rotate(now)
            print(f"made {made.id}: processes accept it within {RELOAD_S:g} s; serve signs "
                  f"with it from {ACTIVATE_S:g} s on; then run `agent-secret retire`")
        elif args.action == "retire":
            held = store.all()
            newest = held[-1] if held else None
            settled = ACTIVATE_S + RELOAD_S
            if newest is not None and now - newest.created_at < settled and not args.force:
                raise SystemExit(f"lambdaplane agent-secret: {newest.id} is "
                                 f"{now - newest.created_at:.0f} s old; serve may still sign "
                                 f"with an older one until it is {settled:g} s old (or --force)")
            for secret_id in store.retire():
                print(f"retired {secret_id}")
        else:
            held = store.all()
            for n, secret in enumerate(held):
                state = "newest" if n == len(held) - 1 else "older"
                print(f"{secret.id}\t{now - secret.created_at:.0f} s old\t{state}")
    finally:
        db.close()
    return 0
