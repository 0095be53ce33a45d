"""Function URLs over real HTTP on the API's own port, and their control-plane operations.

Serving: a request whose Host is `<url-id>.lambda-url.<region>.localhost[:port]` (AWS's form;
`*.localhost` is loopback), or whose path is `/_lambdaplane/url/<url-id>/...` (for clients that
cannot set Host), is a function URL request. The platform answers a CORS preflight itself when
the URL has a Cors configuration, checks AuthType (NONE: the resource policy must allow
lambda:InvokeFunctionUrl to "*", else 403; AWS_IAM: SigV4 for service `lambda` against the
server's credentials), turns the request into AWS's payload format 2.0 event, invokes the
function (an alias URL routes by the alias's weights) and maps the result back (statusCode,
headers, cookies, body, isBase64Encoded; any other JSON → 200 application/json), adding the
configured CORS headers. Control plane: Create/Get/Update/Delete/ListFunctionUrlConfigs."""
from __future__ import annotations

import base64
import json
import logging
import re
import time
import uuid
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web
from multidict import CIMultiDict

from ..errors import AwsError
from ..service.function_urls import UrlConfig
from ..service.invoke import SYNC_PAYLOAD_LIMIT
from .auth import (
    BODY_KEY,
    Endpoint,
    SigV4Verifier,
    load_credentials,
    parse_authorization,
    read_body,
)

log = logging.getLogger("lambdaplane.urls")

HOST = re.compile(r"^([a-z0-9]{32})\.lambda-url\.([a-z0-9-]+)\.localhost(?::\d+)?$")
PATH_PREFIX = "/_lambdaplane/url/"
TEXT_TYPES = ("text/", "application/json", "application/xml", "application/javascript",
              "application/x-www-form-urlencoded", "+json", "+xml")


# -- control plane ------------------------------------------------------------------------------

def url_configuration(api: Any, config: UrlConfig, with_modified: bool = True
                      ) -> dict[str, Any]:
    out: dict[str, Any] = {"FunctionUrl": api.platform.functions.urls.url(config),
                           "FunctionArn": config.function_arn, "AuthType": config.auth_type,
                           "CreationTime": config.creation_time,
                           "InvokeMode": config.invoke_mode}
    if config.cors:
        out["Cors"] = dict(config.cors)
    if with_modified:
        out["LastModifiedTime"] = config.last_modified_time
    return out


def handlers(api: Any) -> dict[str, Any]:
    """name → handler(call, params), bound to a LambdaApi."""

    def urls() -> Any:
        return api.platform.functions.urls

    async def create(call: Any, p: dict[str, Any]) -> dict[str, Any]:
        config = urls().create(call.region, p["FunctionName"], p.get("Qualifier"), p)
        return url_configuration(api, config, with_modified=False)

    async def get(call: Any, p: dict[str, Any]) -> dict[str, Any]:
        return url_configuration(api, urls().get(call.region, p["FunctionName"],
                                                 p.get("Qualifier")))

    async def update(call: Any, p: dict[str, Any]) -> dict[str, Any]:
        return url_configuration(api, urls().update(call.region, p["FunctionName"],
                                                    p.get("Qualifier"), p))

    async def delete(call: Any, p: dict[str, Any]) -> dict[str, Any]:
        urls().delete(call.region, p["FunctionName"], p.get("Qualifier"))
        return {}

    async def list_configs(call: Any, p: dict[str, Any]) -> dict[str, Any]:
        page, marker = urls().page(call.region, p["FunctionName"], p.get("Marker"),
                                   p.get("MaxItems"))
        return {"FunctionUrlConfigs": [url_configuration(api, c) for c in page],
                "NextMarker": marker}

    return {"CreateFunctionUrlConfig": create, "GetFunctionUrlConfig": get,
            "UpdateFunctionUrlConfig": update, "DeleteFunctionUrlConfig": delete,
            "ListFunctionUrlConfigs": list_configs}


# -- the event and the response ---------------------------------------------------------------

def _is_text(content_type: str) -> bool:
    content_type = content_type.lower()
    return any(t in content_type for t in TEXT_TYPES)


def build_event(request: web.Request, config: UrlConfig, raw_path: str, body: bytes,
                request_id: str, authorizer: dict[str, Any] | None) -> dict[str, Any]:
    """AWS's payload format 2.0 for one request."""
    headers: dict[str, str] = {}
    for name in request.headers:
        lower = name.lower()
        if lower in headers:
            continue
        headers[lower] = ",".join(request.headers.getall(name))
    cookies = [c.strip() for c in headers.pop("cookie", "").split(";") if c.strip()]
    headers.setdefault("x-forwarded-proto", request.scheme)
    headers.setdefault("x-forwarded-for", request.remote or "")
    raw_query = request.rel_url.raw_query_string
    query: dict[str, str] = {}
    for key, value in parse_qsl(raw_query, keep_blank_values=True):
        query[key] = f"{query[key]},{value}" if key in query else value
    now = time.time()
    domain = headers.get("host", "").split(":")[0]
    context: dict[str, Any] = {
        "accountId": "anonymous", "apiId": config.url_id, "domainName": domain,
        "domainPrefix": config.url_id,
        "http": {"method": request.method, "path": raw_path,
                 "protocol": f"HTTP/{request.version.major}.{request.version.minor}",
                 "sourceIp": request.remote or "", "userAgent": headers.get("user-agent", "")},
        "requestId": request_id, "routeKey": "$default", "stage": "$default",
        "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
        "timeEpoch": int(now * 1000)}
    if authorizer is not None:
        context["authorizer"] = {"iam": authorizer}
        context["accountId"] = authorizer["accountId"]
    event: dict[str, Any] = {"version": "2.0", "routeKey": "$default", "rawPath": raw_path,
                             "rawQueryString": raw_query, "headers": headers,
                             "requestContext": context, "isBase64Encoded": False}
    if cookies:
        event["cookies"] = cookies
    if query:
        event["queryStringParameters"] = query
    if body:
        text = None
        if _is_text(headers.get("content-type", "")):
            try:
                text = body.decode()
            except UnicodeDecodeError:
                text = None
        if text is None:
            event["body"], event["isBase64Encoded"] = base64.b64encode(body).decode(), True
        else:
            event["body"] = text
    return event


def map_response(payload: bytes) -> tuple[int, CIMultiDict[str], bytes]:
    """A function's result as the HTTP response: the structured form (statusCode, headers,
    cookies, body, isBase64Encoded) or any other JSON value as a 200 application/json."""
    headers: CIMultiDict[str] = CIMultiDict()
    try:
        value = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return 502, CIMultiDict({"Content-Type": "application/json"}), \
            b'{"Message":"Internal Server Error"}'
    if not (isinstance(value, dict) and "statusCode" in value):
        headers["Content-Type"] = "application/json"
        return 200, headers, payload
    try:
        status = int(value["statusCode"])
        for name, item in (value.get("headers") or {}).items():
            headers[str(name)] = str(item)
        for cookie in value.get("cookies") or []:
            headers.add("Set-Cookie", str(cookie))
        body = value.get("body")
        if body is None:
            data = b""
        elif isinstance(body, str):
            data = base64.b64decode(body, validate=True) if value.get("isBase64Encoded") \
                else body.encode()
        else:
            data = json.dumps(body).encode()
    except (ValueError, TypeError, AttributeError):
        return 502, CIMultiDict({"Content-Type": "application/json"}), \
            b'{"Message":"Internal Server Error"}'
    if not 100 <= status <= 599:
        return 502, CIMultiDict({"Content-Type": "application/json"}), \
            b'{"Message":"Internal Server Error"}'
    headers.setdefault("Content-Type", "application/json")
    return status, headers, data


# -- CORS -------------------------------------------------------------------------------------

def _origin_allowed(cors: dict[str, Any], origin: str) -> str | None:
    """The Access-Control-Allow-Origin to send, or None."""
    allowed = cors.get("AllowOrigins") or []
    if "*" in allowed:
        return origin if cors.get("AllowCredentials") else "*"
    return origin if origin in allowed else None


def cors_headers(cors: dict[str, Any], origin: str | None) -> dict[str, str]:
    if not cors or not origin:
        return {}
    allow = _origin_allowed(cors, origin)
    if allow is None:
        return {}
    out = {"Access-Control-Allow-Origin": allow, "Vary": "Origin"}
    if cors.get("AllowCredentials"):
        out["Access-Control-Allow-Credentials"] = "true"
    if cors.get("ExposeHeaders"):
        out["Access-Control-Expose-Headers"] = ",".join(cors["ExposeHeaders"])
    return out


def preflight(cors: dict[str, Any], request: web.Request) -> web.Response:
    """The platform's answer to OPTIONS + Origin + Access-Control-Request-Method."""
    origin = request.headers.get("Origin", "")
    method = request.headers.get("Access-Control-Request-Method", "").upper()
    methods = [m.upper() for m in cors.get("AllowMethods") or []]
    headers: dict[str, str] = {}
    allow = _origin_allowed(cors, origin)
    if allow is not None and ("*" in methods or method in methods):
        headers = {"Access-Control-Allow-Origin": allow, "Vary": "Origin",
                   "Access-Control-Allow-Methods": ",".join(methods)}
        requested = request.headers.get("Access-Control-Request-Headers", "")
        allowed_headers = [h.lower() for h in cors.get("AllowHeaders") or []]
        if "*" in allowed_headers and requested:
            headers["Access-Control-Allow-Headers"] = requested
        elif allowed_headers:
            headers["Access-Control-Allow-Headers"] = ",".join(allowed_headers)
        if cors.get("AllowCredentials"):
            headers["Access-Control-Allow-Credentials"] = "true"
        if cors.get("MaxAge") is not None:
            headers["Access-Control-Max-Age"] = str(cors["MaxAge"])
        if cors.get("ExposeHeaders"):
            headers["Access-Control-Expose-Headers"] = ",".join(cors["ExposeHeaders"])
    return web.Response(status=200, headers=headers)


# -- serving ----------------------------------------------------------------------------------

def _message(status: int, message: str, request_id: str) -> web.Response:
    return web.Response(status=status, body=json.dumps({"Message": message}).encode(),
                        content_type="application/json",
                        headers={"x-amzn-RequestId": request_id})


class FunctionUrlServer:
    def __init__(self, platform: Any) -> None:
        self.platform = platform
        settings = platform.settings
        self.verifier: SigV4Verifier | None = None
        if settings.auth == "sigv4" and settings.credentials_file is not None:
            self.verifier = SigV4Verifier(load_credentials(settings.credentials_file))

    def target(self, request: web.Request) -> tuple[str, str | None, str] | None:
        """(url id, region named by the host or None, raw path) if this is a URL request."""
        m = HOST.match(request.headers.get("Host", "").lower())
        if m is not None:
            return m[1], m[2], request.rel_url.raw_path
        raw = request.rel_url.raw_path
        if raw.startswith(PATH_PREFIX):
            url_id, _, tail = raw[len(PATH_PREFIX):].partition("/")
            return url_id, None, "/" + tail
        return None

    async def serve(self, request: web.Request, url_id: str, region: str | None,
                    raw_path: str) -> web.StreamResponse:
        request_id = str(uuid.uuid4())
        config = self.platform.functions.urls.by_id(url_id)
        if config is None or (region is not None and region != config.region):
            return _message(404, "Not Found", request_id)
        if request.method == "OPTIONS" and config.cors and request.headers.get("Origin") \
                and request.headers.get("Access-Control-Request-Method"):
            return preflight(config.cors, request)
        authorizer = None
        if config.auth_type == "NONE":
            if not self.platform.functions.permissions.allows_public_url(
                    config.region, config.function, config.qualifier):
                return _message(403, "Forbidden", request_id)
        else:
            refused, authorizer = await self._authorize(request)
            if refused:
                return _message(403, "Forbidden", request_id)
        body = request.get(BODY_KEY)
        if body is None:
            body = await read_body(request, SYNC_PAYLOAD_LIMIT)
        if body is None:
            return _message(413, f"Request must be smaller than {SYNC_PAYLOAD_LIMIT} bytes",
                            request_id)
        event = build_event(request, config, raw_path, body, request_id, authorizer)
        try:
            outcome = await self.platform.invoker.invoke(
                config.region, config.function, config.qualifier or None, "RequestResponse",
                json.dumps(event).encode())
        except AwsError as e:
            if e.code == "TooManyRequestsException":
                return _message(429, "Rate Exceeded.", request_id)
            if e.code == "ResourceNotFoundException":
                return _message(404, "Not Found", request_id)
            log.info("function URL %s: %s", url_id, e)
            return _message(502, "Internal Server Error", request_id)
        if outcome.function_error:
            return _message(502, "Internal Server Error", outcome.request_id)
        status, headers, data = map_response(outcome.payload)
        for name, value in cors_headers(config.cors, request.headers.get("Origin")).items():
            headers[name] = value
        headers["x-amzn-RequestId"] = outcome.request_id
        return web.Response(status=status, body=data, headers=headers)

    async def _authorize(self, request: web.Request) -> tuple[bool, dict[str, Any] | None]:
        """AWS_IAM: (refused, the requestContext.authorizer.iam of the caller)."""
        header = request.headers.get("Authorization", "")
        if self.verifier is not None:
            failure = await self.verifier.verify(request, Endpoint("lambda", "lambda"))
            if failure is not None:
                return True, None
        elif not header:
            return True, None  # unauthenticated server: a signature must still be present
        parsed = parse_authorization(header)
        if not hasattr(parsed, "access_key"):
            return True, None
        account = self.platform.settings.account_id
        return False, {"accessKey": parsed.access_key, "accountId": account,
                       "callerId": parsed.access_key,
                       "userArn": f"arn:aws:iam::{account}:root", "userId": account}


def install(app: web.Application, platform: Any) -> None:
    """Serve function URLs ahead of every other middleware (SigV4 on the control plane
    included: URLs have their own AuthType)."""
    server = FunctionUrlServer(platform)

    @web.middleware
    async def function_urls(request: web.Request, handler: Any) -> web.StreamResponse:
        found = server.target(request)
        if found is None:
            return await handler(request)
        try:
            return await server.serve(request, *found)
        except Exception:  # answered as AWS does, never a stack trace
            log.exception("function URL request %s %s failed", request.method, request.path)
            return _message(500, "Internal Server Error", str(uuid.uuid4()))

    app.middlewares.insert(0, function_urls)
