"""Shared pieces of the fuzz suites: how big a run is (reduced by default, `LP_FUZZ_FULL=1` for
the full size), hypothesis strategies that build values for botocore shapes — right types, wrong
types, huge, unicode, missing — and a raw HTTP sender (no SDK: boto3 would refuse to send most
of these). Tallies what was sent so the suites can report it."""
from __future__ import annotations

import base64
import http.client
import json
import os
import string
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from botocore.model import Shape
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

FULL = os.environ.get("LP_FUZZ_FULL") == "1"


def fuzz_settings(reduced: int, full: int) -> settings:
    """Examples per test: `reduced` in the default run, `full` under LP_FUZZ_FULL=1."""
    return settings(max_examples=full if FULL else reduced, deadline=None, derandomize=not FULL,
                    database=None, suppress_health_check=list(HealthCheck),
                    report_multiple_bugs=False, print_blob=True)


@dataclass
class Tally:
    """What a suite sent and what came back, for the summary line."""
    sent: int = 0
    statuses: Counter = field(default_factory=Counter)
    codes: Counter = field(default_factory=Counter)

    def add(self, status: int, code: str | None) -> None:
        self.sent += 1
        self.statuses[status // 100 * 100] += 1
        if code:
            self.codes[code] += 1

    def summary(self, name: str) -> str:
        top = ", ".join(f"{c}×{n}" for c, n in self.codes.most_common(8))
        return (f"{name}: {self.sent} requests, statuses {dict(sorted(self.statuses.items()))}, "
                f"top errors: {top}")


# -- values ---------------------------------------------------------------------------------

WEIRD_STRINGS = ("", " ", "null", "None", "-1", "0", "1e309", "NaN", "true", "../../etc/passwd",
                 "%00", "\x00", "a\x00b", "\u202e", "🐍" * 40, "é" * 300, "$LATEST", "1",
                 "arn:aws:lambda:us-east-1:000000000000:function:f",
                 "arn:aws:lambda:us-east-1:000000000000:function:f:$LATEST",
                 "arn:aws:lambda:xx:1:function:" + "a" * 200, "f:1:2:3", "function:", "::",
                 "python3.11", "provided.al2023", "app.handler", "10.0.0.0/16", "10.0.0.0/33",
                 "300.1.1.1/8", "0.0.0.0/0", "vpc-12345678", "subnet-0", "sg-1", "eni-1",
                 "us-east-1", "us-east-1a", "Event", "DryRun", "RequestResponse", "Tail",
                 "<x/>", "]]>", "{", "'\"", "\\", "%s%s%n")
HUGE_SIZES = (257, 4097, 70_000, 1_100_000)


def huge_string() -> st.SearchStrategy[str]:
    return st.builds(lambda n, c: c * n, st.sampled_from(HUGE_SIZES),
                     st.sampled_from(["a", "é", "🐍", "\x00", "/"]))


def text_value() -> st.SearchStrategy[str]:
    return st.one_of(st.text(max_size=40), st.sampled_from(WEIRD_STRINGS), huge_string())


def int_value() -> st.SearchStrategy[int]:
    return st.one_of(st.integers(-5, 20_000), st.sampled_from([2**31, 2**63, -(2**63), 10**30]))


def any_json(depth: int = 2) -> st.SearchStrategy[Any]:
    leaf = st.one_of(st.none(), st.booleans(), int_value(),
                     st.floats(allow_nan=False, allow_infinity=False), text_value())
    return st.recursive(leaf, lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)),
        max_leaves=8 if depth else 1)


def typed_value(shape: Shape, depth: int = 0) -> st.SearchStrategy[Any]:
    """A value of the shape's JSON type (contents still hostile)."""
    kind = shape.type_name
    if depth > 3:
        return st.none()
    if kind == "structure":
        return structure_value(shape, depth + 1)
    if kind == "list":
        return st.lists(member_value(shape.member, depth + 1), max_size=4)
    if kind == "map":
        return st.dictionaries(text_value(), member_value(shape.value, depth + 1), max_size=4)
    if kind in ("integer", "long"):
        return int_value()
    if kind in ("float", "double"):
        return st.floats(allow_nan=False, allow_infinity=False)
    if kind == "boolean":
        return st.booleans()
    if kind == "blob":
        return st.one_of(st.binary(max_size=64).map(lambda b: base64.b64encode(b).decode()),
                         text_value())
    if kind == "string" and "enum" in shape.metadata:
        return st.one_of(st.sampled_from(shape.metadata["enum"]), text_value())
    return text_value()


def member_value(shape: Shape, depth: int = 0) -> st.SearchStrategy[Any]:
    """Mostly the right type, sometimes anything at all."""
    return st.one_of(typed_value(shape, depth), typed_value(shape, depth), any_json())


@st.composite
def structure_value(draw: st.DrawFn, shape: Shape, depth: int = 0,
                    exclude: frozenset[str] = frozenset()) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, member in shape.members.items():
        if name in exclude:
            continue
        # required members are usually there (to get past the first check), not always
        if draw(st.integers(0, 9)) < (8 if name in shape.required_members else 4):
            out[name] = draw(member_value(member, depth))
    if draw(st.integers(0, 9)) == 0:
        out[draw(st.text(max_size=12))] = draw(any_json())
    return out


def header_safe(value: str) -> bytes:
    """A header value http.client will send: UTF-8, no CR/LF/NUL, bounded."""
    return value.replace("\r", " ").replace("\n", " ").replace("\x00", " ").encode()[:8000]


PRINTABLE = string.ascii_letters + string.digits + "-_.~!$&'()*+,;=:@%/"


# -- sending --------------------------------------------------------------------------------

@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes


def send(port: int, method: str, path: str, body: bytes = b"",
         headers: dict[str, bytes | str] | None = None, host: str = "127.0.0.1",
         timeout_s: float = 60.0) -> Reply:
    conn = http.client.HTTPConnection(host, port, timeout=timeout_s)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        sent = {k.lower() for k in (headers or {})}
        for name, value in (headers or {}).items():
            conn.putheader(name, value)
        if "content-length" not in sent:
            conn.putheader("Content-Length", str(len(body)))
        try:
            conn.endheaders(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # answered (and closed) before reading all of a body it refuses: read the answer
        resp = conn.getresponse()
        data = resp.read()
        return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)
    finally:
        conn.close()


def http_level_refusal(reply: Reply) -> bool:
    """aiohttp's HTTP parser refused the bytes (a control character in a header, a request line
    past 8 KB) before any API code ran: a plain-text 400, like any HTTP front end's."""
    return reply.status == 400 and reply.headers.get("content-type", "").startswith(
        "text/plain") and "x-amzn-requestid" not in reply.headers


def json_body(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")


@st.composite
def malformed_json(draw: st.DrawFn, good: bytes) -> bytes:
    """Broken variants of a JSON document."""
    how = draw(st.sampled_from(["truncate", "garbage", "latin1", "surrogate", "nested", "bom",
                                "empty", "array"]))
    if how == "truncate":
        return good[: draw(st.integers(0, max(0, len(good) - 1)))]
    if how == "garbage":
        return good + draw(st.binary(min_size=1, max_size=20))
    if how == "latin1":
        return b'{"FunctionName": "\xe9\xff"}'
    if how == "surrogate":
        return b'{"FunctionName": "\\ud800"}'
    if how == "nested":
        return b"[" * 100_000 + b"]" * 100_000
    if how == "bom":
        return b"\xef\xbb\xbf" + good
    if how == "empty":
        return b""
    return b"[1, 2, 3]"
