"""Authentication of every request to an agent's internal endpoint (lambdaplane/agent.py,
service/agent_wire.py), on TCP and on the Unix socket alike: `serve` signs each request with a
cluster secret kept in the shared database (store/agent_secrets.py) and the agent verifies it
before anything runs.

The `Authorization` header is `LP1-HMAC-SHA256 Key=<id>, Time=<unix seconds>, Nonce=<32 hex>,
Signature=<hex>`: an HMAC-SHA256, under the secret `Key` names, of the method, the path, the
time, the nonce and the sha256 of the body. The agent refuses (401: no or malformed header, an
unknown key; 403: a time outside ±SKEW_S of its clock, a wrong signature, a nonce already
seen) and counts and logs what it refused. Nonces are kept for twice the window, so a captured
request cannot be replayed while its time is still accepted. Comparison is constant-time.

Rotation: a new secret (store/agent_secrets.py `rotate`) is accepted by verifiers once they
reload (every RELOAD_S, or at once when a request names a key they do not hold) and used for
signing only ACTIVATE_S after it was made — by then every verifier holds it; `retire` then
drops the old ones."""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import re
import secrets
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from ..store.agent_secrets import AgentSecret

log = logging.getLogger("lambdaplane.agent_auth")

SCHEME = "LP1-HMAC-SHA256"
HEADER = "Authorization"
SKEW_S = 30.0  # a request's time may differ from the verifier's clock by this much
RELOAD_S = 10.0  # how often signers and verifiers re-read the secrets
ACTIVATE_S = 3 * RELOAD_S  # a new secret signs only once every verifier has reloaded
MAX_NONCES = 1_000_000  # nonces held within the window (≈ 16,000 requests a second)
HASH_IN_THREAD = 1 << 20  # bodies this large are hashed off the event loop
LOG_EVERY_S = 10.0  # refusals are logged at most this often (with the counts since)

_FIELDS = re.compile(r"(Key|Time|Nonce|Signature)=([^,\s]+)")
_NONCE = re.compile(r"[0-9a-f]{32}")
_HEX64 = re.compile(r"[0-9a-f]{64}")


class AuthRefused(Exception):
    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason  # the counter's name: missing, malformed, unknown-key, …
        self.message = message


def body_digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


async def body_digest_async(body: bytes) -> str:
    """The body's sha256; a large one in a thread (hashlib lets go of the GIL)."""
    if len(body) >= HASH_IN_THREAD:
        return await asyncio.to_thread(body_digest, body)
    return body_digest(body)


def string_to_sign(method: str, path: str, stamp: str, nonce: str, digest: str) -> bytes:
    return "\n".join((SCHEME, method.upper(), path, stamp, nonce, digest)).encode()


def signature(secret: bytes, method: str, path: str, stamp: str, nonce: str,
              digest: str) -> str:
    return hmac.new(secret, string_to_sign(method, path, stamp, nonce, digest),
                    hashlib.sha256).hexdigest()


def authorization(secret: AgentSecret, method: str, path: str, digest: str,
                  now: float | None = None, nonce: str | None = None) -> str:
    """The header value signing one request."""
    stamp = f"{time.time() if now is None else now:.3f}"
    nonce = secrets.token_hex(16) if nonce is None else nonce
    sig = signature(secret.secret, method, path, stamp, nonce, digest)
    return f"{SCHEME} Key={secret.id}, Time={stamp}, Nonce={nonce}, Signature={sig}"


@dataclass(frozen=True)
class Credential:
    key: str
    stamp: str
    time: float
    nonce: str
    signature: str


def parse(header: str) -> Credential:
    if not header:
        raise AuthRefused(401, "missing", "the request is not signed")
    scheme, _, rest = header.partition(" ")
    found = _FIELDS.findall(rest)
    fields = dict(found)
    try:
        if scheme != SCHEME or len(fields) != 4 or len(found) != 4:
            raise ValueError(scheme)
        stamp = fields["Time"]
        when = float(stamp)
        if when != when or not _NONCE.fullmatch(fields["Nonce"]) \
                or not _HEX64.fullmatch(fields["Signature"]):
            raise ValueError(stamp)
    except (KeyError, ValueError):
        raise AuthRefused(401, "malformed", f"the {HEADER} header is not {SCHEME}") from None
    return Credential(fields["Key"], stamp, when, fields["Nonce"], fields["Signature"])


class Signer:
    """`serve`'s side: signs with the newest secret every verifier already holds."""

    def __init__(self, held: list[AgentSecret], now: float | None = None) -> None:
        self.secrets: list[AgentSecret] = []
        self.loaded_at = 0.0
        self.set_secrets(held, now)

    def set_secrets(self, held: list[AgentSecret], now: float | None = None) -> None:
        if not held:
            raise ValueError("no agent secret in the database")
        self.secrets = sorted(held, key=lambda s: (s.created_at, s.id))
        self.loaded_at = time.time() if now is None else now

    def due(self, now: float) -> bool:
        return now - self.loaded_at >= RELOAD_S

    def signing_secret(self, now: float) -> AgentSecret:
        active = [s for s in self.secrets if s.created_at <= now - ACTIVATE_S]
        return active[-1] if active else self.secrets[0]

    def authorization(self, method: str, path: str, digest: str,
                      now: float | None = None) -> str:
        now = time.time() if now is None else now
        return authorization(self.signing_secret(now), method, path, digest, now)


class Verifier:
    """The agent's side: every secret in the database is accepted; nonces seen are refused
    until their time has left the window."""

    def __init__(self, held: list[AgentSecret], skew_s: float = SKEW_S,
                 max_nonces: int = MAX_NONCES, now: float | None = None) -> None:
        self.skew_s = skew_s
        self.max_nonces = max_nonces
        self.secrets: dict[str, AgentSecret] = {}
        self.loaded_at = 0.0
        self.reload_wanted = False  # a request named a key not held: re-read soon
        self.refused: Counter[str] = Counter()
        self.accepted = 0
        self._nonces: dict[str, float] = {}  # nonce → when it may be forgotten (in order)
        self._unlogged: Counter[str] = Counter()
        self._logged_at = 0.0
        self.set_secrets(held, now)

    def set_secrets(self, held: list[AgentSecret], now: float | None = None) -> None:
        self.secrets = {s.id: s for s in held}  # one assignment: safe from the lease thread
        self.loaded_at = time.time() if now is None else now
        self.reload_wanted = False

    def due(self, now: float) -> bool:
        return self.reload_wanted or now - self.loaded_at >= RELOAD_S

    def precheck(self, header: str, now: float | None = None) -> Credential:
        """What can be refused before the body is read: the header, the key, the time."""
        now = time.time() if now is None else now
        cred = parse(header)
        if cred.key not in self.secrets:
            self.reload_wanted = True
            raise AuthRefused(401, "unknown-key", f"unknown key {cred.key[:40]!r}")
        if abs(now - cred.time) > self.skew_s:
            raise AuthRefused(403, "skew", f"the request's time is {now - cred.time:+.1f} s "
                              f"from this agent's clock (±{self.skew_s:g} s accepted)")
        return cred

    def verify(self, method: str, path: str, header: str, digest: str,
               now: float | None = None) -> str:
        """Accept the request (its key id) or raise AuthRefused; counts either way."""
        now = time.time() if now is None else now
        try:
            cred = self.precheck(header, now)
            expected = signature(self.secrets[cred.key].secret, method, path, cred.stamp,
                                 cred.nonce, digest)
            if not hmac.compare_digest(expected, cred.signature):
                raise AuthRefused(403, "bad-signature", "the signature does not match")
            self._remember(cred.nonce, now)
        except AuthRefused as e:
            self.refused[e.reason] += 1
            raise
        self.accepted += 1
        return cred.key

    def _remember(self, nonce: str, now: float) -> None:
        nonces = self._nonces
        while nonces:
            oldest = next(iter(nonces))
            if nonces[oldest] > now:
                break
            del nonces[oldest]
        if nonce in nonces:
            raise AuthRefused(403, "replay", "the request's nonce was already used")
        if len(nonces) >= self.max_nonces:
            raise AuthRefused(503, "nonces-full", "too many requests within the time window")
        nonces[nonce] = now + 2 * self.skew_s

    def log_refusal(self, error: AuthRefused, peer: str, now: float | None = None) -> None:
        """Log a refusal: the first at once, then at most every LOG_EVERY_S with the counts."""
        now = time.time() if now is None else now
        self._unlogged[error.reason] += 1
        if now - self._logged_at < LOG_EVERY_S:
            return
        counts = ", ".join(f"{n} {reason}" for reason, n in sorted(self._unlogged.items()))
        log.warning("refused unauthenticated requests to the internal endpoint (%s); the "
                    "last from %s: %s", counts, peer or "?", error.message)
        self._unlogged.clear()
        self._logged_at = now


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def middleware(verifier: Verifier,
               refused: Callable[[AuthRefused], web.StreamResponse]) -> Callable[..., object]:
    """The agent's aiohttp middleware: the header and time checked before the body is read,
    then the signature over the body's digest; `refused` makes the error response."""

    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        header = request.headers.get(HEADER, "")
        try:
            try:
                verifier.precheck(header)
            except AuthRefused as e:
                verifier.refused[e.reason] += 1
                raise
            digest = await body_digest_async(await request.read())
            verifier.verify(request.method, request.raw_path, header, digest)
        except AuthRefused as e:
            verifier.log_refusal(e, request.remote or "")
            return refused(e)
        return await handler(request)

    return authenticate
