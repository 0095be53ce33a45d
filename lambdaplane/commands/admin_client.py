"""The small JSON client the CLI commands (logs, status, run, ps, net, demo) use to talk to the
server's /_lambdaplane/ endpoints. Requests are signed with AWS Signature V4 when credentials
are configured (environment, ~/.aws), so they also work against `serve --auth sigv4`."""
from __future__ import annotations

import functools
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
    url = endpoint.rstrip("/") + "/_lambdaplane/" + path
    headers = _signed_headers(method, url, data, {"Content-Type": "application/json"})
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
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


@functools.cache
def _session() -> Any:
    """One botocore session per process (a follower, `logs -f`, signs a request every half
    second; making a session each time cost more than the request)."""
    import botocore.session

    session = botocore.session.get_session()
    # only credentials the user configured (environment, ~/.aws files, a credential process):
    # never the instance metadata or container endpoints, which are network calls to
    # link-local addresses the CLI has no business making
    resolver = session.get_component("credential_provider")
    for provider in ("iam-role", "container-role"):
        resolver.remove(provider)
    return session


def _signed_headers(method: str, url: str, data: bytes | None,
                    headers: dict[str, str]) -> dict[str, str]:
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest

    session = _session()
    credentials = session.get_credentials()
    if credentials is None:
        return headers
    region = session.get_config_variable("region") or "us-east-1"
    request = AWSRequest(method=method, url=url, data=data or b"", headers=headers)
    SigV4Auth(credentials.get_frozen_credentials(), "lambda", region).add_auth(request)
    return dict(request.headers.items())


def short_command(argv: str | None, width: int = 60) -> str:
    """A command line for one table cell: its first line, cut to `width`."""
    text = (argv or "").strip().splitlines()[0] if (argv or "").strip() else ""
    return text if len(text) <= width else text[:width - 1] + "…"
