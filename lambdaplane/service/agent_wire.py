"""The internal invoke endpoint between `serve --no-data-plane` and an agent
(lambdaplane/agent.py): how a FunctionSpec, an Invocation, an InvocationResult and an AwsError
travel as JSON, and where an agent's address points (`unix:/path` — HTTP over a Unix socket,
reachable across network namespaces — or `http://host:port`). Both sides import this module;
nothing here does I/O.

Requests: `POST /invoke`, the body one line of JSON {"spec_id", "spec" (only when the server
has not sent this spec to this agent yet), "invocation" (without the payload)}, a newline, then
the payload's raw bytes (no base64, no JSON escaping) → 200, the same framing: {"result"}
without the payload, a newline, the payload; 409 {"need_spec": id} when the agent does not
hold the spec named (restarted: the server repeats the invoke with the spec), 409
{"need_code": hex} when it lacks the function's code zip or one of its layers' (the server
then sends it: `PUT /code/<hex>`, the zip as the body, and repeats the invoke), or an error
status with {"error"};
`GET /health`. A spec id is the sha256 of the spec's JSON: the same spec, the same id."""
from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

from ..errors import AwsError
from ..sandbox.types import FunctionSpec, Invocation, InvocationResult, VpcAttachment

INVOKE_PATH = "/invoke"
CODE_PATH = "/code/{hex}"
HEALTH_PATH = "/health"
MAX_BODY = 72 * 1024 * 1024  # a 50 MB zip, or a 6 MB payload as base64 JSON, with room
FRAMED = "application/x-lambdaplane-invoke"  # a JSON line, a newline, the payload's bytes


def spec_to_json(spec: FunctionSpec) -> dict[str, Any]:
    """What the agent needs of a function (the paths are its own); a VPC function's attachment
    as "vpc" (the agent steers its sandboxes to the stored ENIs); its layers' digests in order
    as "layers" (the agent asks for each zip it lacks and merges its own /opt)."""
    doc = {"region": spec.region, "name": spec.name, "arn": spec.arn,
            "version": spec.version, "runtime": spec.runtime, "handler": spec.handler,
            "memory_mb": spec.memory_mb, "timeout_s": spec.timeout_s,
            "environment": dict(spec.environment), "code_sha256": spec.code_sha256,
            "revision_id": spec.revision_id,
            "reserved_concurrency": spec.reserved_concurrency,
            "custom_log_group": spec.custom_log_group,
            "logging_config": dict(spec.logging_config), "etc_files": dict(spec.etc_files)}
    if spec.vpc is not None:  # absent otherwise: a non-VPC spec keeps its id
        doc["vpc"] = {"vpc_id": spec.vpc.vpc_id, "subnet_ids": list(spec.vpc.subnet_ids),
                      "security_group_ids": list(spec.vpc.security_group_ids),
                      "ipv6": spec.vpc.ipv6}
    if spec.layer_hexes:  # likewise
        doc["layers"] = list(spec.layer_hexes)
    return doc


def spec_from_json(doc: dict[str, Any], code_dir: Path) -> FunctionSpec:
    return FunctionSpec(
        region=doc["region"], name=doc["name"], arn=doc["arn"], version=doc["version"],
        runtime=doc["runtime"], handler=doc["handler"], memory_mb=int(doc["memory_mb"]),
        timeout_s=int(doc["timeout_s"]), environment=dict(doc["environment"]),
        code_sha256=doc["code_sha256"], code_dir=code_dir, revision_id=doc["revision_id"],
        reserved_concurrency=doc.get("reserved_concurrency"),
        custom_log_group=doc.get("custom_log_group"),
        logging_config=dict(doc.get("logging_config") or {}),
        etc_files=dict(doc.get("etc_files") or {}), vpc=_vpc_from_json(doc.get("vpc")),
        layer_hexes=tuple(str(h) for h in doc.get("layers") or ()))


def _vpc_from_json(doc: dict[str, Any] | None) -> VpcAttachment | None:
    if doc is None:
        return None
    return VpcAttachment(str(doc["vpc_id"]), tuple(str(s) for s in doc["subnet_ids"]),
                         tuple(str(g) for g in doc["security_group_ids"]),
                         bool(doc.get("ipv6", False)))


def invocation_to_json(inv: Invocation) -> dict[str, Any]:
    return {"request_id": inv.request_id, "payload": base64.b64encode(inv.payload).decode(),
            "client_context": inv.client_context, "cognito_identity": inv.cognito_identity,
            "trace_id": inv.trace_id, "function_arn": inv.function_arn}


def invocation_from_json(doc: dict[str, Any]) -> Invocation:
    return Invocation(doc["request_id"], base64.b64decode(doc["payload"]),
                      doc.get("client_context"), doc.get("cognito_identity"),
                      doc.get("trace_id") or "", doc.get("function_arn") or "")


def result_to_json(result: InvocationResult) -> dict[str, Any]:
    return {"payload": base64.b64encode(result.payload).decode(),
            "function_error": result.function_error, "error_type": result.error_type,
            "log_text": result.log_text, "duration_ms": result.duration_ms,
            "init_duration_ms": result.init_duration_ms, "cold_start": result.cold_start,
            "extra": dict(result.extra)}


def result_from_json(doc: dict[str, Any]) -> InvocationResult:
    return InvocationResult(
        base64.b64decode(doc["payload"]), doc.get("function_error"), doc.get("error_type"),
        doc.get("log_text") or "", float(doc.get("duration_ms") or 0.0),
        doc.get("init_duration_ms"), bool(doc.get("cold_start")),
        {k: float(v) for k, v in (doc.get("extra") or {}).items()})


def error_to_json(error: AwsError) -> dict[str, Any]:
    return {"code": error.code, "message": error.message, "status": error.status,
            "kind": error.error_kind, "headers": dict(error.headers),
            "extra": dict(error.extra)}


def error_from_json(doc: dict[str, Any]) -> AwsError:
    return AwsError(doc["code"], doc["message"], int(doc["status"]), doc.get("kind", "Service"),
                    headers=dict(doc.get("headers") or {}), extra=dict(doc.get("extra") or {}))


def unix_socket_of(address: str) -> str | None:
    """The socket path of a `unix:/path` address; None for an http:// one."""
    return address[len("unix:"):] if address.startswith("unix:") else None


def base_url(address: str) -> str:
    """The URL requests to `address` are made against (a Unix socket's host is a dummy)."""
    return "http://agent" if unix_socket_of(address) is not None else address.rstrip("/")


def spec_id(spec_doc: dict[str, Any]) -> str:
    """The id a spec travels under once the agent holds it: its JSON's sha256."""
    return hashlib.sha256(json.dumps(spec_doc, sort_keys=True).encode()).hexdigest()


def _frame(head: dict[str, Any], payload: bytes) -> bytes:
    return b"".join((json.dumps(head, separators=(",", ":")).encode(), b"\n", payload))


def _unframe(body: bytes) -> tuple[dict[str, Any], bytes]:
    head, newline, payload = body.partition(b"\n")
    if not newline:
        raise ValueError("a framed body needs a JSON line and a newline")
    doc = json.loads(head)
    if not isinstance(doc, dict):
        raise ValueError("the JSON line must be an object")
    return doc, payload


def invoke_body(spec_id_: str, spec_doc: dict[str, Any] | None, inv: Invocation) -> bytes:
    """`POST /invoke`'s body; `spec_doc` None when the agent already holds `spec_id_`."""
    head: dict[str, Any] = {"spec_id": spec_id_, "invocation": {
        "request_id": inv.request_id, "client_context": inv.client_context,
        "cognito_identity": inv.cognito_identity, "trace_id": inv.trace_id,
        "function_arn": inv.function_arn}}
    if spec_doc is not None:
        head["spec"] = spec_doc
    return _frame(head, inv.payload)


def read_invoke_body(body: bytes) -> tuple[str, dict[str, Any] | None, Invocation]:
    """The spec id, the spec (None when not sent) and the invocation of an invoke's body."""
    head, payload = _unframe(body)
    doc = head["invocation"]
    inv = Invocation(doc["request_id"], payload, doc.get("client_context"),
                     doc.get("cognito_identity"), doc.get("trace_id") or "",
                     doc.get("function_arn") or "")
    return str(head["spec_id"]), head.get("spec"), inv


def result_body(result: InvocationResult) -> bytes:
    doc = result_to_json(result)
    del doc["payload"]
    return _frame({"result": doc}, result.payload)


def read_result_body(body: bytes) -> InvocationResult:
    head, payload = _unframe(body)
    doc = dict(head["result"])
    result = result_from_json({**doc, "payload": ""})
    return InvocationResult(payload, result.function_error, result.error_type,
                            result.log_text, result.duration_ms, result.init_duration_ms,
                            result.cold_start, result.extra)
