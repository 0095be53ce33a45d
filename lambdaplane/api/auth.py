"""AWS Signature Version 4 on the control plane (`serve --auth sigv4 --credentials FILE`).

Owns: reading the credentials file (the `~/.aws/credentials` INI format: one profile per
section with `aws_access_key_id` / `aws_secret_access_key`), and an aiohttp middleware that
verifies every Lambda, EC2 and `/_lambdaplane` admin request (except the health probe) before
any handler runs. The signature is recomputed with botocore's own `SigV4Auth` (canonical
request, string to sign, signing key) over the request as received, and compared in constant
time — the server never re-implements what the client library does.

Errors are each service's own (what boto3 maps to exception classes):
  Lambda (JSON, `x-amzn-ErrorType`, 403): MissingAuthenticationTokenException,
    IncompleteSignatureException, UnrecognizedClientException (unknown key),
    InvalidSignatureException (bad signature, clock skew over 5 minutes, wrong scope).
  EC2 (XML): MissingAuthenticationToken (401), IncompleteSignature (400), AuthFailure (401)
    for an unknown key or a bad signature, RequestExpired (400) for clock skew.
The Runtime API is not here: it lives in the worker netns and answers only the environment
whose sandbox address the request comes from (sandbox/runtime_api.py)."""
from __future__ import annotations

import configparser
import datetime as dt
import hashlib
import hmac
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from ..errors import AwsError
from . import query_xml, wire

SKEW = dt.timedelta(minutes=5)  # AWS's allowed clock difference for SigV4
SIGV4_TIMESTAMP = "%Y%m%dT%H%M%SZ"
# Bodies are hashed before any handler runs, so the signature check reads them first. The
# largest AWS accepts is a 50 MB zip as base64 in JSON; anything bigger is refused by the
# operation anyway (answered after the signature check by lambda_api's own limit).
MAX_SIGNED_BODY = 69_905_067 + 1
UNAUTHENTICATED_PATHS = frozenset({"/_lambdaplane/health"})
BODY_KEY = "lp_body"  # where the middleware leaves the body it hashed (lambda_api reads it)

_AUTH_RE = re.compile(
    r"^AWS4-HMAC-SHA256\s+Credential=(?P<credential>[^,\s]+)\s*,\s*"
    r"SignedHeaders=(?P<signed>[^,\s]+)\s*,\s*Signature=(?P<signature>[0-9a-fA-F]+)\s*$")
_BAD_SIGNATURE = ("The request signature we calculated does not match the signature you "
                  "provided. Check your AWS Secret Access Key and signing method. Consult the "
                  "service documentation for details.")


class CredentialsError(ValueError):
    pass


def load_credentials(path: Path) -> dict[str, str]:
    """access key id → secret, from every profile of an INI credentials file."""
    parser = configparser.ConfigParser(interpolation=None)
    try:
        with open(path) as f:
            parser.read_file(f)
    except (OSError, configparser.Error) as e:
        raise CredentialsError(f"cannot read credentials file {path}: {e}") from None
    keys: dict[str, str] = {}
    for section in parser.sections():
        key_id = parser.get(section, "aws_access_key_id", fallback="").strip()
        secret = parser.get(section, "aws_secret_access_key", fallback="").strip()
        if key_id and secret:
            keys[key_id] = secret
    if not keys:
        raise CredentialsError(f"{path} has no profile with aws_access_key_id and "
                               f"aws_secret_access_key")
    return keys


def profiles_of(path: Path) -> dict[str, str]:
    """access key id → the name of its profile (section) in the credentials file."""
    parser = configparser.ConfigParser(interpolation=None)
    try:
        with open(path) as f:
            parser.read_file(f)
    except (OSError, configparser.Error):
        return {}
    return {parser.get(section, "aws_access_key_id", fallback="").strip(): section
            for section in parser.sections()}


def access_key_of(request: web.Request) -> str:
    """The access key id the request was signed with ("" when unsigned)."""
    found = re.search(r"Credential=([^/,\s]+)/", request.headers.get("Authorization", ""))
    return found.group(1) if found else ""


@dataclass(frozen=True)
class Endpoint:
    """Which API a path belongs to: decides the error shape and the expected signing service."""
    kind: str  # "lambda" | "ec2" | "admin"
    service: str | None  # the credential scope's service, None = not checked (admin)


def endpoint_of(request: web.Request) -> Endpoint:
    path = request.path
    if path == "/" or path == "":  # EC2, STS, IAM, Logs…: api/dispatch.py knows whose
        if request.headers.get("X-Amz-Target", "").startswith("Logs_20140328."):
            return Endpoint("logs", "logs")  # CloudWatch Logs answers errors in JSON 1.1
        found = request.app.get("lp_dispatch")
        return Endpoint("ec2", found.signing_service(request) if found else "ec2")
    if path.startswith("/_lambdaplane/"):
        return Endpoint("admin", None)
    return Endpoint("lambda", "lambda")


# -- the errors, per service ------------------------------------------------------------------

@dataclass(frozen=True)
class Failure:
    """One reason to refuse, with the code each API uses for it."""
    lambda_code: str
    ec2_code: str
    ec2_status: int
    message: str
    ec2_message: str | None = None


def _missing() -> Failure:
    return Failure("MissingAuthenticationTokenException", "MissingAuthenticationToken", 401,
                   "Missing Authentication Token",
                   "The request must contain either a valid (registered) AWS access key ID "
                   "or X.509 certificate.")


def _incomplete(message: str) -> Failure:
    return Failure("IncompleteSignatureException", "IncompleteSignature", 400, message)


def _unknown_key() -> Failure:
    return Failure("UnrecognizedClientException", "AuthFailure", 401,
                   "The security token included in the request is invalid.",
                   "AWS was not able to validate the provided access credentials")


def _bad_signature(message: str = _BAD_SIGNATURE) -> Failure:
    return Failure("InvalidSignatureException", "AuthFailure", 401, message,
                   "AWS was not able to validate the provided access credentials")


def _skewed(message: str) -> Failure:
    return Failure("InvalidSignatureException", "RequestExpired", 400, message,
                   "Request has expired.")


def _too_large() -> Failure:
    return Failure("RequestTooLargeException", "RequestEntityTooLarge", 413,
                   f"Request must be smaller than {MAX_SIGNED_BODY - 1} bytes")


# IAM's and STS's codes (Query protocol, <ErrorResponse>) for the same failures
_QUERY_CODES = {"UnrecognizedClientException": ("InvalidClientTokenId", 403),
                "InvalidSignatureException": ("SignatureDoesNotMatch", 403),
                "MissingAuthenticationTokenException": ("MissingAuthenticationToken", 403),
                "IncompleteSignatureException": ("IncompleteSignature", 400),
                "RequestTooLargeException": ("RequestEntityTooLarge", 413)}


def _respond(endpoint: Endpoint, failure: Failure) -> web.Response:
    request_id = str(uuid.uuid4())
    if endpoint.service in ("iam", "sts"):
        from .query_protocol import error_xml, service_model
        code, status = _QUERY_CODES[failure.lambda_code]
        err = AwsError(code, failure.message, status, "Sender")
        return web.Response(text=error_xml(service_model(endpoint.service), err, request_id),
                            status=status, content_type="text/xml")
    if endpoint.kind == "ec2":
        err = AwsError(failure.ec2_code, failure.ec2_message or failure.message,
                       failure.ec2_status, "Sender")
        return web.Response(text=query_xml.error_xml(err, request_id), status=err.status,
                            content_type="text/xml")
    status = {"IncompleteSignatureException": 400, "RequestTooLargeException": 413}.get(
        failure.lambda_code, 403)
    if endpoint.kind == "logs":  # JSON 1.1: the code is the body's __type
        return web.json_response({"__type": failure.lambda_code, "message": failure.message},
                                 status=status, headers={"x-amzn-RequestId": request_id},
                                 content_type="application/x-amz-json-1.1")
    wire_response = wire.error_response(AwsError(failure.lambda_code, failure.message, status))
    return web.Response(status=wire_response.status, body=wire_response.body,
                        headers={"x-amzn-RequestId": request_id, **wire_response.headers},
                        content_type=wire.JSON_TYPE)


# -- verification -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Authorization:
    access_key: str
    date: str
    region: str
    service: str
    signed_headers: tuple[str, ...]
    signature: str


def parse_authorization(header: str) -> Authorization | Failure:
    m = _AUTH_RE.match(header.strip())
    if m is None:
        if not header.startswith("AWS4-HMAC-SHA256"):
            return _incomplete("Unsupported authorization type")
        return _incomplete("Authorization header requires 'Credential', 'Signature' and "
                           "'SignedHeaders' parameters.")
    parts = m["credential"].split("/")
    if len(parts) != 5 or parts[4] != "aws4_request" or not re.fullmatch(r"\d{8}", parts[1]):
        return _incomplete(f"Credential should be scoped to a valid region, not "
                           f"'{m['credential'][:100]}'.")
    signed = tuple(h.lower() for h in m["signed"].split(";") if h)
    if "host" not in signed:
        return _incomplete("Signature must include 'host' as a signed header.")
    return Authorization(parts[0], parts[1], parts[2], parts[3], signed, m["signature"].lower())


def _timestamp(request: web.Request) -> str | None:
    value = request.headers.get("X-Amz-Date")
    if value:
        return value
    date = request.headers.get("Date")
    if not date:
        return None
    try:
        parsed = dt.datetime.strptime(date, "%a, %d %b %Y %H:%M:%S GMT")
    except ValueError:
        return None
    return parsed.strftime(SIGV4_TIMESTAMP)


def check_skew(stamp: str, now: dt.datetime) -> Failure | None:
    try:
        when = dt.datetime.strptime(stamp, SIGV4_TIMESTAMP).replace(tzinfo=dt.timezone.utc)
    except ValueError:
        return _incomplete(f"Date must be in ISO-8601 'basic format'. Got '{stamp[:40]}'. See "
                           f"http://en.wikipedia.org/wiki/ISO_8601")
    fmt = lambda t: t.strftime(SIGV4_TIMESTAMP)  # noqa: E731
    if when < now - SKEW:
        return _skewed(f"Signature expired: {stamp} is now earlier than {fmt(now - SKEW)} "
                       f"({fmt(now)} - 5 min.)")
    if when > now + SKEW:
        return _skewed(f"Signature not yet current: {stamp} is still later than "
                       f"{fmt(now + SKEW)} ({fmt(now)} + 5 min.)")
    return None


def expected_signature(request: web.Request, auth: Authorization, secret: str, stamp: str,
                       body: bytes) -> str:
    """botocore's SigV4 over the request as received: only the headers the client signed,
    the raw path and query as they came over the wire, the body's sha256."""
    headers = {}
    for name in auth.signed_headers:
        values = request.headers.getall(name, [])
        headers[name] = ",".join(values)
    url = f"http://{request.headers.get('Host', '')}{request.rel_url.raw_path}"
    if request.rel_url.raw_query_string:
        url += "?" + request.rel_url.raw_query_string
    aws_request = AWSRequest(method=request.method, url=url, headers=headers, data=body)
    aws_request.context["timestamp"] = stamp
    signer = SigV4Auth(Credentials(auth.access_key, secret), auth.service, auth.region)
    canonical = signer.canonical_request(aws_request)
    # headers_to_sign() adds `host` from the URL when absent and would let an unsigned header
    # set slip in; the signed list itself is part of the canonical request, so it must match.
    if signer.signed_headers(signer.headers_to_sign(aws_request)) != ";".join(
            sorted(auth.signed_headers)):
        return ""
    return signer.signature(signer.string_to_sign(aws_request, canonical), aws_request)


async def read_body(request: web.Request, limit: int = MAX_SIGNED_BODY) -> bytes | None:
    """The whole body (None once past `limit`); kept on the request for the handlers."""
    chunks, size = [], 0
    while chunk := await request.content.read(1 << 20):
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


class SigV4Verifier:
    def __init__(self, keys: dict[str, str], clock: Callable[[], dt.datetime] | None = None
                 ) -> None:
        self.keys = keys
        self.clock = clock or (lambda: dt.datetime.now(dt.timezone.utc))
        # temporary keys sts:AssumeRole handed out: access key → (secret, expiry); in memory
        self.sessions: dict[str, tuple[str, dt.datetime]] = {}

    def secret_of(self, access_key: str) -> str | None:
        secret = self.keys.get(access_key)
        if secret is None and access_key in self.sessions:
            session_secret, expires = self.sessions[access_key]
            if self.clock() < expires:
                return session_secret
            del self.sessions[access_key]
        return secret

    async def verify(self, request: web.Request, endpoint: Endpoint) -> Failure | None:
        header = request.headers.get("Authorization")
        if not header:
            return _missing()
        auth = parse_authorization(header)
        if isinstance(auth, Failure):
            return auth
        stamp = _timestamp(request)
        if stamp is None:
            return _incomplete("Authorization header requires existence of either a "
                               "'X-Amz-Date' or a 'Date' header.")
        secret = self.secret_of(auth.access_key)
        if secret is None:
            return _unknown_key()
        skew = check_skew(stamp, self.clock())
        if skew is not None:
            return skew
        if stamp[:8] != auth.date:
            return _bad_signature(f"Date in Credential scope does not match YYYYMMDD from "
                                  f"ISO-8601 version of date from HTTP: '{auth.date}' != "
                                  f"'{stamp[:8]}', from '{stamp}'.")
        if endpoint.service is not None and auth.service != endpoint.service:
            return _bad_signature(f"Credential should be scoped to correct service: "
                                  f"'{endpoint.service}'. ")
        body = await read_body(request)
        if body is None:
            return _too_large()
        request[BODY_KEY] = body
        # aiohttp's own cache of the body: request.read()/post()/json() answer from it now
        # that the stream itself has been consumed here.
        request._read_bytes = body  # noqa: SLF001
        claimed = request.headers.get("X-Amz-Content-SHA256")
        if claimed and claimed != "UNSIGNED-PAYLOAD" and not hmac.compare_digest(
                claimed.lower(), hashlib.sha256(body).hexdigest()):
            return _bad_signature("The provided 'x-amz-content-sha256' header does not match "
                                  "what was computed.")
        expected = expected_signature(request, auth, secret, stamp, body)
        if not hmac.compare_digest(expected.encode(), auth.signature.encode()):
            return _bad_signature()
        return None


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def sigv4_middleware(verifier: SigV4Verifier) -> Callable[..., Awaitable[web.StreamResponse]]:
    @web.middleware
    async def sigv4(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in UNAUTHENTICATED_PATHS:
            return await handler(request)
        endpoint = endpoint_of(request)
        failure = await verifier.verify(request, endpoint)
        if failure is not None:
            return _respond(endpoint, failure)
        return await handler(request)
    return sigv4


def install(app: web.Application, credentials_file: Path) -> None:
    """Make `app` verify SigV4 on every request but the health probe (first middleware)."""
    verifier = SigV4Verifier(load_credentials(credentials_file))
    app.middlewares.insert(0, sigv4_middleware(verifier))
    app[SIGV4_ON] = True
    app[SESSIONS] = verifier.sessions  # api/sts_api.py adds the keys AssumeRole issues


SIGV4_ON = "lp_sigv4"  # set on the app when signatures are verified (api/dispatch.py reads it)
SESSIONS = "lp_sigv4_sessions"


def wrong_scope(service: str, json_protocol: bool) -> web.Response:
    """A request to `/` whose body names one service but whose signature is scoped to another:
    refused as that service refuses a wrong scope (api/dispatch.py knows only after routing)."""
    endpoint = Endpoint("lambda" if json_protocol else "ec2", service)
    return _respond(endpoint, _bad_signature(
        f"Credential should be scoped to correct service: '{service}'. "))
