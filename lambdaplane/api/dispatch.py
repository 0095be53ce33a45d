"""Which AWS service a request to `/` is for, decided by the request's own protocol markers, and
the one clear answer for what lambdaplane does not serve.

Owns the `GET /` and `POST /` routes. Services register here (`serve_query` for the Query
protocol by API Version — EC2, STS, IAM; `serve_json` for JSON 1.0/1.1 by X-Amz-Target
prefix — e.g. CloudWatch Logs' `Logs_20140328`). A request is routed by, in this order:
  1. `X-Amz-Target: Prefix.Operation` → the service registered for that prefix;
  2. the Query `Version` (form body or query string) → the service with that API version;
  3. a Query `Action` without a known Version → the service named by the SigV4 credential
     scope when it is served here, else EC2 (which answers with its own errors, as before);
  4. nothing that names a service → the credential scope's service, when served here.
A target, version or scope that belongs to a service lambdaplane does not serve (botocore's
models say whose it is), or a request that names no service at all, is answered with a JSON
error (`UnknownServiceException`, 404) that names what was asked for and lists what is served —
never another protocol's XML. `not_served` also answers paths no route has."""
from __future__ import annotations

import gzip
import json
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_SCOPE = re.compile(r"Credential=[^/,\s]+/\d{8}/[a-z0-9-]+/([a-z0-9-]+)/")
LAMBDA_LINE = "lambda: REST-JSON under /2015-03-31/ (any path starting with an API date)"
NOT_SERVED = "UnknownServiceException"
FORM_ERROR = "lp_form_error"  # why the body was not form encoding, for the Query handlers


@dataclass(frozen=True)
class Served:
    name: str  # botocore's service name: ec2, sts, iam, logs
    protocol: str  # query | json
    marker: str  # the API Version (query) or the X-Amz-Target prefix (json)
    signing_name: str
    handler: Handler

    def line(self) -> str:
        if self.protocol == "query":
            return f"{self.name}: Query protocol on POST / (Version={self.marker})"
        return f"{self.name}: JSON on POST / (X-Amz-Target: {self.marker}.*)"


@dataclass
class Dispatcher:
    by_version: dict[str, Served] = field(default_factory=dict)
    by_target: dict[str, Served] = field(default_factory=dict)
    by_signing_name: dict[str, Served] = field(default_factory=dict)

    def add(self, served: Served) -> None:
        table = self.by_version if served.protocol == "query" else self.by_target
        table[served.marker] = served
        self.by_signing_name[served.signing_name] = served

    def served_lines(self) -> list[str]:
        every = [*self.by_version.values(), *self.by_target.values()]
        return [LAMBDA_LINE] + [s.line() for s in sorted(every, key=lambda s: s.name)]

    def signing_service(self, request: web.Request) -> str | None:
        """The credential-scope service a request to `/` must be signed for (api/auth.py):
        the target's service, else the scope's own when served here, else ec2; None (not
        checked) when it is for a service not served here, which `route` then answers."""
        target = request.headers.get("X-Amz-Target", "")
        if target:
            found = self.by_target.get(target.split(".", 1)[0])
            return found.signing_name if found else None
        scoped = scope_service(request)
        if scoped in self.by_signing_name:
            return scoped
        return None if scoped in catalog().signing_names else "ec2"

    async def route(self, request: web.Request) -> web.StreamResponse:
        target = request.headers.get("X-Amz-Target", "")
        if target:
            prefix = target.split(".", 1)[0]
            found = self.by_target.get(prefix)
            if found is not None:
                return await self._serve(found, request)
            owner = catalog().by_target.get(prefix)
            return not_served(self, f"X-Amz-Target {target!r}"
                                    + (f" (service {owner})" if owner else ""))
        form = await _form_or_none(request)
        ec2 = self.by_version.get("2016-11-15")
        if form is None:  # not form encoding at all: the Query services' own error
            return await self._serve(ec2, request) if ec2 else not_served(self, "this request")
        version, action = form.get("Version", ""), form.get("Action", "")
        scoped = scope_service(request)
        if version in self.by_version:
            return await self._serve(self.by_version[version], request)
        owners = catalog().by_version.get(version, [])
        if version and owners:
            return not_served(self, f"API Version {version!r} (service "
                                    f"{' or '.join(owners)}, Action {action!r})")
        if scoped and scoped not in self.by_signing_name and \
                scoped in catalog().signing_names:
            return not_served(self, f"service {scoped!r} (from the request's credential scope)")
        if scoped in self.by_signing_name:
            return await self._serve(self.by_signing_name[scoped], request)
        if action and ec2 is not None:
            return await self._serve(ec2, request)
        return not_served(self, f"{request.method} {request.path} (no Action, Version or "
                                f"X-Amz-Target names a service)")


    @staticmethod
    async def _serve(served: Served, request: web.Request) -> web.StreamResponse:
        """Hand over; under `--auth sigv4`, only a request signed for this very service (the
        middleware checked the scope before the body said which service it is for)."""
        from .auth import SIGV4_ON, wrong_scope

        scoped = scope_service(request)
        if request.app.get(SIGV4_ON) and scoped and scoped != served.signing_name:
            return wrong_scope(served.signing_name, served.protocol == "json")
        return await served.handler(request)


def scope_service(request: web.Request) -> str:
    found = _SCOPE.search(request.headers.get("Authorization", ""))
    return found.group(1) if found else ""


async def _form_or_none(request: web.Request) -> dict[str, str] | None:
    try:
        posted = await request.post()
    except (ValueError, UnicodeDecodeError, AssertionError, web.HTTPException,
            HttpProcessingError) as e:  # the body is gone now: the service reports this
        request[FORM_ERROR] = e
        return None
    form = {**request.query, **posted}
    if not all(isinstance(v, str) for v in form.values()):  # a multipart file part
        return None
    if request.content_type.startswith("multipart/"):  # not the Query protocol's encoding
        return None
    return form  # type: ignore[return-value]


def not_served(dispatcher: "Dispatcher | None", what: str) -> web.Response:
    lines = dispatcher.served_lines() if dispatcher else [LAMBDA_LINE]
    body = {"__type": NOT_SERVED,
            "message": f"lambdaplane does not serve {what}. It serves: " + "; ".join(lines)
                       + ". Every operation, done or not: docs/api-coverage.md",
            "served": lines}
    return web.Response(status=404, text=json.dumps(body), content_type="application/json",
                        headers={"x-amzn-ErrorType": NOT_SERVED,
                                 "x-amzn-RequestId": str(uuid.uuid4())})


def dispatcher(app: web.Application) -> Dispatcher:
    """The app's dispatcher; the first call adds the `/` routes."""
    found = app.get("lp_dispatch")
    if found is None:
        found = Dispatcher()
        app["lp_dispatch"] = found
        app.router.add_post("/", found.route)
        app.router.add_get("/", found.route)  # the Query protocol also comes as GET /?Action=…
    return found


def serve_query(app: web.Application, name: str, version: str, handler: Handler,
                signing_name: str | None = None) -> None:
    dispatcher(app).add(Served(name, "query", version, signing_name or name, handler))


def serve_json(app: web.Application, name: str, target_prefix: str, handler: Handler,
               signing_name: str | None = None) -> None:
    dispatcher(app).add(Served(name, "json", target_prefix, signing_name or name, handler))


# --- botocore's models: whose marker is it? ----------------------------------------------------

@dataclass(frozen=True)
class Catalog:
    by_version: dict[str, list[str]]  # Query API version → services (query/ec2 protocol)
    by_target: dict[str, str]  # JSON target prefix → service
    signing_names: frozenset[str]


@lru_cache(maxsize=1)
def catalog() -> Catalog:
    """Each service's metadata, read from the head of its botocore model (~0.2 s, once)."""
    import botocore

    by_version: dict[str, list[str]] = {}
    by_target: dict[str, str] = {}
    signing: set[str] = set()
    data = Path(botocore.__file__).parent / "data"
    for path in sorted(data.glob("*/*/service-2.json*")):
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt") as f:  # type: ignore[operator]
            head = f.read(2000)
        meta = dict(re.findall(r'"(apiVersion|protocol|targetPrefix|signingName|'
                               r'endpointPrefix)"\s*:\s*"([^"]*)"', head))
        service = path.parent.parent.name
        if meta.get("protocol") in ("query", "ec2") and meta.get("apiVersion"):
            by_version.setdefault(meta["apiVersion"], []).append(service)
        if meta.get("targetPrefix"):
            by_target.setdefault(meta["targetPrefix"], service)
        signing.add(meta.get("signingName") or meta.get("endpointPrefix") or service)
    return Catalog(by_version, by_target, frozenset(signing))
