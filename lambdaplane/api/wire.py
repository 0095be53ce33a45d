"""Lambda's REST-JSON wire format, driven entirely by botocore's service model (the contract):
routing by each operation's `http.method` + `requestUri`, turning a request into the input
shape's members (uri labels, query string, headers, JSON body or raw payload), validating them
against the shapes (types, required, min/max, enums, patterns) with AWS's messages, serialising
output shapes, and AWS's error body. No business rules here."""
from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import unquote

import botocore.session
from botocore.model import OperationModel, ServiceModel, Shape

from ..errors import AwsError, InvalidRequestContent, ValidationError

JSON_TYPE = "application/json"
_ROUTE_CACHE_SIZE = 4096


@dataclass(frozen=True)
class Route:
    operation: OperationModel
    method: str
    regex: re.Pattern[str]
    fixed_query: tuple[tuple[str, str], ...]
    literal_len: int


@dataclass(frozen=True)
class Match:
    operation: OperationModel
    labels: dict[str, str]


@lru_cache(maxsize=1)
def lambda_model() -> ServiceModel:
    return botocore.session.get_session().get_service_model("lambda")


def _compile(uri: str) -> tuple[re.Pattern[str], tuple[tuple[str, str], ...], int]:
    path, _, query = uri.partition("?")
    fixed = tuple((k, v) for k, _, v in (p.partition("=") for p in query.split("&") if p))
    pattern, literal, pos = "", 0, 0
    for m in re.finditer(r"\{([A-Za-z0-9_]+)(\+?)\}", path):
        pattern += re.escape(path[pos:m.start()])
        literal += m.start() - pos
        pattern += f"(?P<{m.group(1)}>{'.+' if m.group(2) else '[^/]+'})"
        pos = m.end()
    pattern += re.escape(path[pos:].rstrip("/"))
    literal += len(path[pos:])
    # botocore may or may not send a trailing slash (ListFunctions: /2015-03-31/functions/)
    return re.compile(pattern + "/?"), fixed, literal


class Router:
    """method + path → operation, from the model's requestUri templates."""

    def __init__(self, model: ServiceModel) -> None:
        routes = []
        for name in model.operation_names:
            op = model.operation_model(name)
            regex, fixed, literal = _compile(op.http["requestUri"])
            routes.append(Route(op, op.http["method"], regex, fixed, literal))
        # The most specific template wins: fixed query parts first, then more literal text.
        routes.sort(key=lambda r: (-len(r.fixed_query), -r.literal_len))
        self.routes = routes
        # Invoke comes back to the same few paths again and again; trying every template's
        # regex each time was a visible share of a warm invoke.
        self._seen: dict[tuple[str, str, tuple[tuple[str, str], ...]], Match | None] = {}

    def match(self, method: str, raw_path: str, query: Mapping[str, str]) -> Match | None:
        key = (method, raw_path, tuple(sorted(query.items())))
        try:
            return self._seen[key]
        except KeyError:
            pass
        if len(self._seen) >= _ROUTE_CACHE_SIZE:
            self._seen.clear()
        found = self._seen[key] = self._match(method, raw_path, query)
        return found

    def _match(self, method: str, raw_path: str, query: Mapping[str, str]) -> Match | None:
        for route in self.routes:
            if route.method != method:
                continue
            m = route.regex.fullmatch(raw_path)
            if m is None or any(query.get(k) != v for k, v in route.fixed_query):
                continue
            return Match(route.operation, {k: unquote(v) for k, v in m.groupdict().items()})
        return None


# -- request → input dict -------------------------------------------------------------------

def _camel(name: str) -> str:
    return name[:1].lower() + name[1:]


def _type_error(path: str, expected: str, value: object) -> AwsError:
    shown = json.dumps(value)[:100] if not isinstance(value, (bytes, bytearray)) else "<binary>"
    return InvalidRequestContent(
        f"Could not parse request body into json: Could not parse payload into json: "
        f"Cannot deserialize value of type `{expected}` from {shown} at '{path}'")


def _from_text(shape: Shape, text: str, path: str) -> object:
    """A uri/query/header value as the shape's type."""
    if shape.type_name in ("integer", "long"):
        try:
            return int(text)
        except ValueError:
            raise ValidationError(
                f"1 validation error detected: Value '{text}' at '{path}' failed to satisfy "
                f"constraint: Member must be a number") from None
    if shape.type_name == "boolean":
        return text.lower() == "true"
    return text


def _decode_json(shape: Shape, value: Any, path: str) -> Any:
    """Check JSON types against the shape and decode blobs (base64)."""
    if value is None:
        return None
    kind = shape.type_name
    if kind == "structure":
        if not isinstance(value, dict):
            raise _type_error(path, shape.name, value)
        out = {}
        for key, item in value.items():
            member = shape.members.get(key)
            if member is not None:  # AWS ignores unknown members
                decoded = _decode_json(member, item, f"{path}.{key}" if path else key)
                if decoded is not None:
                    out[key] = decoded
        return out
    if kind == "list":
        if not isinstance(value, list):
            raise _type_error(path, "list", value)
        return [_decode_json(shape.member, v, path) for v in value]
    if kind == "map":
        if not isinstance(value, dict):
            raise _type_error(path, "map", value)
        return {k: _decode_json(shape.value, v, path) for k, v in value.items()}
    if kind in ("integer", "long"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise _type_error(path, "int", value)
        return value
    if kind in ("float", "double"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _type_error(path, "double", value)
        return value
    if kind == "boolean":
        if not isinstance(value, bool):
            raise _type_error(path, "boolean", value)
        return value
    if kind == "blob":
        if not isinstance(value, str):
            raise _type_error(path, "byte[]", value)
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidRequestContent(
                f"Could not parse request body into json: Could not parse payload into json: "
                f"Failed to decode the base64 value at '{path}'") from None
    if kind == "string":
        if not isinstance(value, str):
            raise _type_error(path, "String", value)
        return value
    return value  # timestamps and documents pass through


def parse_input(op: OperationModel, labels: Mapping[str, str], query: Mapping[str, str],
                headers: Mapping[str, str], body: bytes) -> dict[str, Any]:
    """Build the operation's input dict, then validate it (raises AwsError)."""
    shape = op.input_shape
    if shape is None:
        return {}
    params: dict[str, Any] = {}
    payload_name, located, body_members = _input_plan(op)
    for name, member, location, wire_name in located:
        source = labels if location == "uri" else query if location == "querystring" \
            else headers
        if wire_name in source:
            params[name] = _from_text(member, source[wire_name], _camel(name))
    if payload_name:
        member = shape.members[payload_name]
        if member.type_name == "blob":
            if body:
                params[payload_name] = bytes(body)
        elif body:
            params[payload_name] = _decode_json(member, _load_json(body), payload_name)
    elif body_members and body.strip():
        document = _load_json(body)
        if not isinstance(document, dict):
            raise _type_error("", shape.name, document)
        for name, member in body_members.items():
            if name in document:
                decoded = _decode_json(member, document[name], name)
                if decoded is not None:
                    params[name] = decoded
    problems: list[str] = []
    _validate(shape, params, "", problems)
    if problems:
        count = len(problems)
        raise ValidationError(f"{count} validation error{'s' if count > 1 else ''} detected: "
                              + "; ".join(problems))
    return params


@lru_cache(maxsize=1024)
def _input_plan(op: OperationModel) -> tuple[str | None, tuple[tuple[str, Shape, str, str], ...],
                                             dict[str, Shape]]:
    """Where each input member of an operation comes from, worked out once per operation:
    (payload member, (name, shape, location, wire name) of the uri/querystring/header members,
    the JSON body's members)."""
    shape = op.input_shape
    assert shape is not None
    payload_name = shape.serialization.get("payload")
    located: list[tuple[str, Shape, str, str]] = []
    body_members: dict[str, Shape] = {}
    for name, member in shape.members.items():
        location = member.serialization.get("location")
        if location in ("uri", "querystring", "header"):
            located.append((name, member, location, member.serialization.get("name", name)))
        elif location is None and name != payload_name:
            body_members[name] = member
    return payload_name, tuple(located), body_members


def _load_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except RecursionError:  # e.g. 100,000 nested arrays: the caller's fault, not ours
        raise InvalidRequestContent(
            "Could not parse request body into json: Could not parse payload into json: "
            "the document is nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise InvalidRequestContent(
            f"Could not parse request body into json: Could not parse payload into json: {e}"
        ) from None


@lru_cache(maxsize=512)
def _regex(pattern: str) -> re.Pattern[str] | None:
    try:
        return re.compile(pattern)
    except re.error:  # a Java-only construct: leave that check to the service
        return None


def _shown(shape: Shape, value: Any) -> str:
    """AWS leaves sensitive values out of its messages."""
    if shape.metadata.get("sensitive"):
        return "Value"
    if isinstance(value, (bytes, bytearray)):
        return "Value"
    return f"Value '{value}'"


def _validate(shape: Shape, value: Any, path: str, problems: list[str]) -> None:
    meta = shape.metadata
    kind = shape.type_name
    lo, hi = meta.get("min"), meta.get("max")
    if kind == "structure":
        for name in shape.required_members:
            if value.get(name) is None:
                problems.append(f"Value null at '{_join(path, name)}' failed to satisfy "
                                f"constraint: Member must not be null")
        for name, item in value.items():
            _validate(shape.members[name], item, _join(path, name), problems)
        return
    def prefix() -> str:  # made only for a problem: every valid request checks many values
        return f"{_shown(shape, value)} at '{path}' failed to satisfy constraint: "

    if kind in ("string", "list", "map", "blob"):
        size = len(value)
        if lo is not None and size < lo:
            problems.append(prefix() + f"Member must have length greater than or equal to {lo}")
        if hi is not None and size > hi:
            problems.append(prefix() + f"Member must have length less than or equal to {hi}")
    elif kind in ("integer", "long", "float", "double"):
        if lo is not None and value < lo:
            problems.append(prefix() + f"Member must have value greater than or equal to {lo}")
        if hi is not None and value > hi:
            problems.append(prefix() + f"Member must have value less than or equal to {hi}")
    if kind == "string":
        if "enum" in meta and value not in meta["enum"]:
            problems.append(prefix() + f"Member must satisfy enum value set: "
                                       f"[{', '.join(meta['enum'])}]")
        pattern = meta.get("pattern")
        regex = _regex(pattern) if pattern else None
        if regex is not None and regex.fullmatch(value) is None:
            problems.append(prefix() + "Member must satisfy regular expression pattern: "
                            + pattern)
    elif kind == "list":
        for item in value:
            _validate(shape.member, item, path, problems)
    elif kind == "map":
        key_problems: list[str] = []
        for key, item in value.items():
            _validate(shape.key, key, path, key_problems)
            _validate(shape.value, item, path, problems)
        if key_problems:
            # AWS reports map keys once, as "Map keys must satisfy constraint: [...]"
            reasons = sorted({p.split("failed to satisfy constraint: ", 1)[1]
                              for p in key_problems})
            problems.append(f"Value at '{path}' failed to satisfy constraint: Map keys must "
                            f"satisfy constraint: [{', '.join(reasons)}]")


def _join(path: str, name: str) -> str:
    return f"{path}.{_camel(name)}" if path else _camel(name)


# -- output dict → response -----------------------------------------------------------------

@dataclass
class WireResponse:
    status: int
    headers: dict[str, str]
    body: bytes


def _encode_json(shape: Shape, value: Any) -> Any:
    kind = shape.type_name
    if kind == "structure":
        return {k: _encode_json(shape.members[k], v) for k, v in value.items()
                if v is not None and k in shape.members}
    if kind == "list":
        return [_encode_json(shape.member, v) for v in value]
    if kind == "map":
        return {k: _encode_json(shape.value, v) for k, v in value.items()}
    if kind == "blob":
        return base64.b64encode(value).decode()
    return value


def serialize_output(op: OperationModel, output: Mapping[str, Any]) -> WireResponse:
    status = int(op.http.get("responseCode", 200))
    headers: dict[str, str] = {}
    shape = op.output_shape
    if shape is None:
        return WireResponse(status, headers, b"")
    payload_name = shape.serialization.get("payload")
    document: dict[str, Any] = {}
    body: bytes | None = None
    for name, value in output.items():
        if value is None or name not in shape.members:
            continue
        member = shape.members[name]
        location = member.serialization.get("location")
        if location == "statusCode":
            status = int(value)
        elif location == "header":
            headers[member.serialization.get("name", name)] = str(value)
        elif name == payload_name:
            body = value if member.type_name == "blob" else json.dumps(
                _encode_json(member, value)).encode()
        else:
            document[name] = _encode_json(member, value)
    if body is None:
        body = json.dumps(document).encode() if (document or not payload_name) else b""
    return WireResponse(status, headers, body)


def error_response(err: AwsError) -> WireResponse:
    """Lambda's error shape: botocore reads the code from x-amzn-ErrorType."""
    document: dict[str, Any] = {"Type": err.error_kind, "message": err.message, **err.extra}
    headers = {"x-amzn-ErrorType": err.code, **err.headers}
    return WireResponse(err.status, headers, json.dumps(document).encode())


def region_from_authorization(header: str | None, default: str) -> str:
    """SigV4: Credential=AKID/yyyymmdd/REGION/lambda/aws4_request."""
    if header:
        m = re.search(r"Credential=[^/,\s]+/\d{8}/([a-z0-9-]+)/", header)
        if m:
            return m.group(1)
    return default


# Shared with the JSON 1.1 protocol of the Logs API (api/logs_api.py): the same type checks,
# constraint messages and blob encoding, on a JSON document's members.
decode_json_member = _decode_json
validate_shape = _validate
encode_json_member = _encode_json
