"""The small JSON client the VPC commands (run, ps, net) use to talk to the server's
/_lambdaplane/ endpoints."""
from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any


class ServerError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def call(endpoint: str, method: str, path: str, body: dict[str, Any] | None = None,
         timeout: float = 60.0) -> dict[str, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(endpoint.rstrip("/") + "/_lambdaplane/" + path, data=data,
                                     method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            return json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as e:
        try:
            err = json.loads(e.read())
        except ValueError:
            err = {}
        raise ServerError(err.get("code", str(e.code)), err.get("message", e.reason)) from None
    except OSError as e:
        raise ServerError("Unreachable", f"cannot reach {endpoint}: {e}") from None


def short_command(argv: str | None, width: int = 60) -> str:
    """A command line for one table cell: its first line, cut to `width`."""
    text = (argv or "").strip().splitlines()[0] if (argv or "").strip() else ""
    return text if len(text) <= width else text[:width - 1] + "…"
