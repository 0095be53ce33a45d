"""The Lambda REST-JSON endpoint (API 2015-03-31): every path under a date version is routed
by botocore's model (api/wire.py), parsed and validated there, handed to the function service
or the invoker, and the result serialised as the operation's output shape. Every failure leaves
as AWS's error shape — never a 500 page or a stack trace. `LambdaApi.answer` is the one path
for both HTTP fronts: aiohttp's request (`handle`) and the Invoke front's (api/invoke_front.py).
Also serves the code download URL that GetFunction returns, and a small view of
queued/finished Event invocations."""
from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from aiohttp import web

from ..errors import AwsError, RequestTooLarge, ServiceError
from ..service.invoke import SYNC_PAYLOAD_LIMIT
from ..store.functions import FunctionRecord
from . import function_urls, lambda_settings, lambda_versions
from .invoke_params import InvokeParams
from .lambda_event_invoke_config import event_invoke_config_handlers
from .lambda_layers import layer_handlers
from .wire import (JSON_TYPE, Router, WireResponse, error_response, lambda_model, parse_input,
                   region_from_authorization, serialize_output)

log = logging.getLogger("lambdaplane.api")

CODE_REQUEST_LIMIT = 69_905_067  # AWS: a 50 MB zip, base64 in JSON
DRAIN_LIMIT = 128 * 1024 * 1024  # read (and drop) this much of an oversized body, then give up
CODE_PATH = "/_lambdaplane/code/"
_DATED_PATH = re.compile(r"^/\d\d\d\d-\d\d-\d\d(/|$)")  # where Lambda's API lives


@dataclass(frozen=True)
class Call:
    region: str
    base_url: str  # scheme://host the request came to: for the URLs an answer hands out


Handler = Callable[[Call, dict[str, Any]], Awaitable[dict[str, Any]]]


def unknown_operation(method: str, path: str) -> AwsError:
    return AwsError("UnknownOperationException",
                    f"Unknown operation: {method} {path}", 404)


def not_implemented(operation: str, method: str, path: str) -> AwsError:
    """An operation of the Lambda model that lambdaplane does not serve: named, not a 404."""
    return AwsError("UnknownOperationException",
                    f"The Lambda operation {operation} ({method} {path}) is not implemented "
                    f"by lambdaplane.", 400)


class LambdaApi:
    def __init__(self, platform: Any) -> None:
        self.platform = platform
        self.settings = platform.settings
        self.router = Router(lambda_model())
        self.invoke_params = InvokeParams(lambda_model().operation_model("Invoke"))
        self.handlers: dict[str, Handler] = {
            "CreateFunction": self.create_function,
            "GetFunction": self.get_function,
            "GetFunctionConfiguration": self.get_function_configuration,
            "ListFunctions": self.list_functions,
            "UpdateFunctionCode": self.update_function_code,
            "UpdateFunctionConfiguration": self.update_function_configuration,
            "DeleteFunction": self.delete_function,
            "Invoke": self.invoke,
            "PutFunctionConcurrency": self.put_function_concurrency,
            "GetFunctionConcurrency": self.get_function_concurrency,
            "DeleteFunctionConcurrency": self.delete_function_concurrency,
            "GetAccountSettings": self.get_account_settings,
            **layer_handlers(platform),
            **event_invoke_config_handlers(platform),
        }
        self.handlers.update(lambda_versions.handlers(self))  # versions and aliases
        self.handlers.update(lambda_settings.handlers(self))  # tags and settings around
        self.handlers.update(lambda_settings.permission_handlers(self))  # resource policies
        self.handlers.update(function_urls.handlers(self))  # function URL configurations

    # -- the one entry point ------------------------------------------------------------------
    async def handle(self, request: web.Request) -> web.Response:
        query = {k: request.query[k] for k in request.query}
        wire, request_id = await self.answer(
            request.method, request.rel_url.raw_path, query, request.headers,
            lambda operation: _read_body(request, operation),
            f"{request.scheme}://{request.host}")
        return _response(wire, request_id)

    async def answer(self, method: str, raw_path: str, query: dict[str, str],
                     headers: Mapping[str, str], read_body: Callable[[str], Awaitable[bytes]],
                     base_url: str) -> tuple[WireResponse, str]:
        """One request, whichever HTTP front read it (aiohttp, or api/invoke_front.py for
        Invoke, which has no aiohttp request to give): the wire answer and its request id."""
        request_id = ""  # Invoke brings the invocation's own id: make one only when needed
        try:
            match = self.router.match(method, raw_path, query)
            if match is None:
                raise unknown_operation(method, _path(raw_path))
            if match.operation.name not in self.handlers:
                raise not_implemented(match.operation.name, method, _path(raw_path))
            op = match.operation
            body = await read_body(op.name)
            if op.name == "Invoke":  # checked once per target, the payload added (invoke_params)
                params = self.invoke_params.parse(raw_path, match.labels, query, headers, body)
            else:
                params = parse_input(op, match.labels, query, headers, body)
            region = region_from_authorization(headers.get("Authorization"),
                                               self.settings.default_region)
            output = await self.handlers[op.name](Call(region, base_url), params)
            request_id = output.pop("_RequestId", "")
            wire = serialize_output(op, output)
        except AwsError as err:
            wire = error_response(err)
        except Exception:
            request_id = request_id or str(uuid.uuid4())
            log.exception("%s %s failed (request %s)", method, _path(raw_path), request_id)
            wire = error_response(ServiceError("An internal error occurred in lambdaplane; "
                                               f"see the server log for request {request_id}."))
        return wire, request_id or str(uuid.uuid4())

    # -- functions ----------------------------------------------------------------------------
    async def create_function(self, call: Call, p: dict[str, Any]) -> dict[str, Any]:
        record = await self.platform.functions.create(call.region, p)
        return configuration(record)

    async def get_function(self, call: Call, p: dict[str, Any]) -> dict[str, Any]:
        record = self.platform.functions.get(call.region, p["FunctionName"], p.get("Qualifier"))
        location = f"{call.base_url}{CODE_PATH}{record.code_hex}.zip"
        out: dict[str, Any] = {"Configuration": configuration(record),
                               "Code": {"RepositoryType": "S3", "Location": location}}
        if record.tags:
            out["Tags"] = dict(record.tags)
        if record.reserved_concurrency is not None:
            out["Concurrency"] = {"ReservedConcurrentExecutions": record.reserved_concurrency}
        return out

    async def get_function_configuration(self, call: Call, p: dict[str, Any]) -> dict[str, Any]:
        return configuration(self.platform.functions.get(call.region, p["FunctionName"],
                                                         p.get("Qualifier")))

    async def list_functions(self, call: Call, p: dict[str, Any]) -> dict[str, Any]:
        page, marker = self.platform.functions.list(call.region, p.get("Marker"),
                                                    p.get("MaxItems"))
        if p.get("FunctionVersion") == "ALL":  # each function's published versions follow it
            page = [v for r in page for v in
                    [r, *self.platform.functions.versions.all_of(r.region, r.name)]]
        return {"Functions": [configuration(r) for r in page], "NextMarker": marker}

    async def update_function_code(self, call: Call, p: dict[str, Any]) -> dict[str, Any]:
        return configuration(await self.platform.functions.update_code(call.region, p))

    async def update_function_configuration(self, call: Call,
                                            p: dict[str, Any]) -> dict[str, Any]:
        return configuration(await self.platform.functions.update_configuration(call.region, p))

    async def delete_function(self, call: Call, p: dict[str, Any]) -> dict[str, Any]:
        await self.platform.functions.delete(call.region, p["FunctionName"], p.get("Qualifier"))
        return {"StatusCode": 204}

    # -- invoke -------------------------------------------------------------------------------
    async def invoke(self, call: Call, p: dict[str, Any]) -> dict[str, Any]:
        outcome = await self.platform.invoker.invoke(
            call.region, p["FunctionName"], p.get("Qualifier"),
            p.get("InvocationType", "RequestResponse"), p.get("Payload", b""),
            p.get("LogType", "None"), p.get("ClientContext"))
        return {"StatusCode": outcome.status, "Payload": outcome.payload,
                "FunctionError": outcome.function_error, "LogResult": outcome.log_result,
                "ExecutedVersion": outcome.executed_version, "_RequestId": outcome.request_id}

    # -- concurrency and account ------------------------------------------------------------
    async def put_function_concurrency(self, call: Call, p: dict[str, Any]) -> dict[str, Any]:
        reserved = self.platform.functions.put_concurrency(
            call.region, p["FunctionName"], p["ReservedConcurrentExecutions"])
        return {"ReservedConcurrentExecutions": reserved}

    async def get_function_concurrency(self, call: Call, p: dict[str, Any]) -> dict[str, Any]:
        record = self.platform.functions.get(call.region, p["FunctionName"])
        return {"ReservedConcurrentExecutions": record.reserved_concurrency}

    async def delete_function_concurrency(self, call: Call,
                                          p: dict[str, Any]) -> dict[str, Any]:
        self.platform.functions.delete_concurrency(call.region, p["FunctionName"])
        return {}

    async def get_account_settings(self, call: Call, p: dict[str, Any]) -> dict[str, Any]:
        return self.platform.functions.account_settings(call.region)

    # -- not AWS: code download and event view ------------------------------------------------
    async def download_code(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["file"]
        data = self.platform.functions.code_zip(name.removesuffix(".zip"))
        if data is None or not name.endswith(".zip"):
            return _response(error_response(AwsError("NoSuchKey", "The specified key does not "
                                                     "exist.", 404)), str(uuid.uuid4()))
        return web.Response(body=data, content_type="application/zip")

    async def list_events(self, request: web.Request) -> web.Response:
        events = self.platform.invoker.events.recent(request.query.get("region"),
                                                     request.query.get("function"))
        return web.json_response([
            {"RequestId": e.request_id, "Region": e.region, "FunctionName": e.name,
             "Status": e.status, "Attempts": e.attempts, "ErrorType": e.error_type}
            for e in events])


LAMBDA_API = web.AppKey("lp_lambda_api", LambdaApi)  # the Invoke front answers through it


def configuration(record: FunctionRecord) -> dict[str, Any]:
    """A FunctionRecord as Lambda's FunctionConfiguration shape."""
    out: dict[str, Any] = {
        "FunctionName": record.name,
        "FunctionArn": record.arn,
        "Runtime": record.runtime,
        "Role": record.role,
        "Handler": record.handler,
        "CodeSize": record.code_size,
        "Description": record.description,
        "Timeout": record.timeout,
        "MemorySize": record.memory_size,
        "LastModified": record.last_modified,
        "CodeSha256": record.code_sha256,
        "Version": record.version,
        "TracingConfig": {"Mode": record.tracing_mode},
        "RevisionId": record.revision_id,
        "State": record.state,
        "StateReason": record.state_reason,
        "StateReasonCode": record.state_reason_code,
        "LastUpdateStatus": record.last_update_status,
        "LastUpdateStatusReason": record.last_update_status_reason,
        "LastUpdateStatusReasonCode": record.last_update_status_reason_code,
        "PackageType": record.package_type,
        "Architectures": list(record.architectures),
        "EphemeralStorage": {"Size": record.ephemeral_storage_mb},
        "SnapStart": {"ApplyOn": "None", "OptimizationStatus": "Off"},
        "LoggingConfig": {"LogFormat": "Text", "LogGroup": f"/aws/lambda/{record.name}",
                          **record.logging_config},
    }
    if record.environment:
        out["Environment"] = {"Variables": dict(record.environment)}
    if record.vpc_config is not None:
        out["VpcConfig"] = record.vpc_config.to_wire()
    if record.dead_letter_target:
        out["DeadLetterConfig"] = {"TargetArn": record.dead_letter_target}
    if record.kms_key_arn:
        out["KMSKeyArn"] = record.kms_key_arn
    if record.layers:
        out["Layers"] = [{"Arn": e["Arn"], "CodeSize": e["CodeSize"]} for e in record.layers]
    return out


async def _read_body(request: web.Request, operation: str) -> bytes:
    """Read the body ourselves so each operation has AWS's own limit (the app-wide
    client_max_size would answer a bare 413 page instead)."""
    limit = CODE_REQUEST_LIMIT if operation in ("CreateFunction", "UpdateFunctionCode",
                                                "PublishLayerVersion") \
        else SYNC_PAYLOAD_LIMIT
    verified = request.get("lp_body")  # api/auth.py read it already to check the signature
    if verified is not None:
        if len(verified) > limit:
            name = "InvokeFunction" if operation == "Invoke" else operation
            raise RequestTooLarge(
                f"Request must be smaller than {limit} bytes for the {name} operation")
        return verified
    chunks, size = [], 0
    while chunk := await request.content.read(1 << 20):
        size += len(chunk)
        if size > limit:
            # Drain so the client sees our answer rather than a reset mid-upload.
            while size < DRAIN_LIMIT and (chunk := await request.content.read(1 << 20)):
                size += len(chunk)
            name = "InvokeFunction" if operation == "Invoke" else operation
            raise RequestTooLarge(
                f"Request must be smaller than {limit} bytes for the {name} operation")
        chunks.append(chunk)
    return b"".join(chunks)


def _path(raw_path: str) -> str:
    """The path as aiohttp's `request.path` gives it (percent-decoded), for messages."""
    return unquote(raw_path)


def _response(wire: WireResponse, request_id: str) -> web.Response:
    headers = {"x-amzn-RequestId": request_id, **wire.headers}
    return web.Response(status=wire.status, body=wire.body, headers=headers,
                        content_type=JSON_TYPE if wire.body or wire.status >= 400 else None)


@web.middleware
async def unknown_route_to_aws(request: web.Request, handler: Any) -> web.StreamResponse:
    """No route matched at all: answer as AWS does (404 UnknownOperationException), not with
    aiohttp's text page. Handlers that raise their own 404s are left alone."""
    if getattr(request.match_info, "http_exception", None) is not None:
        if not _DATED_PATH.match(request.path):  # not a Lambda path at all
            from .dispatch import not_served
            return not_served(request.app.get("lp_dispatch"), f"{request.method} {request.path}")
        return _response(error_response(unknown_operation(request.method, request.path)),
                         str(uuid.uuid4()))
    return await handler(request)


def add_routes(app: web.Application, platform: Any) -> None:
    api = app[LAMBDA_API] = LambdaApi(platform)  # also the Invoke front's (api/invoke_front.py)
    app.router.add_route("*", r"/{version:\d\d\d\d-\d\d-\d\d}/{rest:.*}", api.handle)
    app.router.add_get(CODE_PATH + "{file}", api.download_code)
    app.router.add_get("/_lambdaplane/events", api.list_events)
    app.middlewares.append(unknown_route_to_aws)
