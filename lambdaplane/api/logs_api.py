"""The CloudWatch Logs API (service `logs`) on the platform's endpoint: AWS's JSON 1.1
protocol — `POST /` with `X-Amz-Target: Logs_20140328.<Operation>` and a JSON body — parsed,
type-checked and validated from botocore's `logs` model (with api/wire.py's checks), handed to
service/logs.py, and serialised from the model's output shape. Errors in JSON 1.1's shape:
`{"__type": code, "message": ...}`; bad input is InvalidParameterException as Logs answers."""
from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import botocore.session
from aiohttp import web
from botocore.model import OperationModel, ServiceModel

from ..errors import AwsError
from ..service.logs import LogsService
from .wire import (
    decode_json_member,
    encode_json_member,
    region_from_authorization,
    validate_shape,
)

log = logging.getLogger("lambdaplane.logs")

TARGET_PREFIX = "Logs_20140328."
CONTENT_TYPE = "application/x-amz-json-1.1"
MAX_BODY = 2 * 1024 * 1024  # PutLogEvents takes 1 MB of events, JSON-escaped

Handler = Callable[[LogsService, str, dict[str, Any]], dict[str, Any]]

HANDLERS: dict[str, Handler] = {
    "CreateLogGroup": LogsService.create_log_group,
    "DeleteLogGroup": LogsService.delete_log_group,
    "DescribeLogGroups": LogsService.describe_log_groups,
    "CreateLogStream": LogsService.create_log_stream,
    "DeleteLogStream": LogsService.delete_log_stream,
    "DescribeLogStreams": LogsService.describe_log_streams,
    "PutLogEvents": LogsService.put_log_events,
    "GetLogEvents": LogsService.get_log_events,
    "FilterLogEvents": LogsService.filter_log_events,
    "PutRetentionPolicy": LogsService.put_retention_policy,
    "DeleteRetentionPolicy": LogsService.delete_retention_policy,
    "TagLogGroup": LogsService.tag_log_group,
    "UntagLogGroup": LogsService.untag_log_group,
    "ListTagsLogGroup": LogsService.list_tags_log_group,
    "TagResource": LogsService.tag_resource,
    "UntagResource": LogsService.untag_resource,
    "ListTagsForResource": LogsService.list_tags_for_resource,
}


@lru_cache(maxsize=1)
def logs_model() -> ServiceModel:
    return botocore.session.get_session().get_service_model("logs")


def _operation(target: str) -> OperationModel:
    name = target[len(TARGET_PREFIX):]
    if name not in HANDLERS or name not in logs_model().operation_names:
        raise AwsError("UnknownOperationException",
                       f"lambdaplane does not implement the Logs operation {name or target}")
    return logs_model().operation_model(name)


def parse_request(op: OperationModel, body: bytes) -> dict[str, Any]:
    """The operation's input members from a JSON 1.1 body, checked against the model."""
    try:
        document = json.loads(body) if body.strip() else {}
    except (ValueError, RecursionError):
        raise AwsError("SerializationException", "Failed to parse the request body as "
                                                 "JSON") from None
    shape = op.input_shape
    if shape is None:
        return {}
    try:
        params = decode_json_member(shape, document, "")
    except AwsError as e:  # a member of the wrong JSON type
        raise AwsError("SerializationException", e.message) from None
    problems: list[str] = []
    validate_shape(shape, params, "", problems)
    if problems:
        count = len(problems)
        raise AwsError("InvalidParameterException",
                       f"{count} validation error{'s' if count > 1 else ''} detected: "
                       + "; ".join(problems))
    return params


def serialize(op: OperationModel, output: dict[str, Any]) -> bytes:
    shape = op.output_shape
    if shape is None:
        return b"{}"
    return json.dumps(encode_json_member(shape, output)).encode()


def _respond(status: int, body: bytes, request_id: str) -> web.Response:
    return web.Response(status=status, body=body, headers={
        "x-amzn-RequestId": request_id, "Content-Type": CONTENT_TYPE})


def error_body(err: AwsError) -> bytes:
    return json.dumps({"__type": err.code, "message": err.message}).encode()


async def handle(service: LogsService, default_region: str,
                 request: web.Request) -> web.Response:
    request_id = str(uuid.uuid4())
    target = request.headers.get("X-Amz-Target", "")
    try:
        op = _operation(target)
        body = request.get("lp_body")  # api/auth.py read it to check the signature
        if body is None:
            body = await request.content.read(MAX_BODY + 1)
        if len(body) > MAX_BODY:
            raise AwsError("InvalidParameterException",
                           f"Request must be smaller than {MAX_BODY} bytes")
        params = parse_request(op, body)
        region = region_from_authorization(request.headers.get("Authorization"),
                                           default_region)
        output = HANDLERS[op.name](service, region, params)
        return _respond(200, serialize(op, output), request_id)
    except AwsError as err:
        return _respond(err.status if err.status != 404 else 400, error_body(err), request_id)
    except Exception:
        log.exception("Logs %s failed (request %s)", target, request_id)
        err = AwsError("ServiceUnavailableException",
                       f"An internal error occurred in lambdaplane; see the server log for "
                       f"request {request_id}.", 500)
        return _respond(500, error_body(err), request_id)


def add_routes(app: web.Application, platform: Any) -> None:
    """CloudWatch Logs shares POST / with the Query services: api/dispatch.py routes a request
    here by its X-Amz-Target prefix."""
    from .dispatch import serve_json

    async def logs(request: web.Request) -> web.Response:
        return await handle(platform.logs, platform.settings.default_region, request)

    serve_json(app, "logs", TARGET_PREFIX.rstrip("."), logs)
