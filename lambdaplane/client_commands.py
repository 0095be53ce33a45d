"""Client-side CLI commands: each lives in lambdaplane/commands/<name>.py with
`main(endpoint: str, args: argparse.Namespace) -> int` and talks to a running server."""
from __future__ import annotations

import argparse
import importlib


def run(command: str, endpoint: str, args: argparse.Namespace) -> int:
    module = importlib.import_module(f"lambdaplane.commands.{command}")
    return int(module.main(endpoint, args) or 0)
