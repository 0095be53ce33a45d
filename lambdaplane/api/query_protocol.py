"""The AWS Query protocol of IAM and STS (botocore's `query` protocol, not EC2's variant in
api/query_xml.py), driven by the service's botocore model: form parameters in → a nested dict
keyed by member names; a result dict → the `<OpResponse><OpResult>…</OpResult>
<ResponseMetadata>` document botocore's QueryParser reads; an AwsError → `<ErrorResponse>`.

Naming follows botocore's QuerySerializer/QueryParser: a member is named by its `locationName`
else its member name; a list is `Name.member.N` (`Name.N` when flattened), a map
`Name.entry.N.key/value`; on output a list wraps its items as `<member>`, a map as
`<entry><key/><value/></entry>`."""
from __future__ import annotations

import datetime as dt
import uuid
from functools import lru_cache
from typing import Any

import botocore.session
from aiohttp import web
from botocore.model import ListShape, MapShape, OperationModel, ServiceModel, Shape, StructureShape

from ..errors import AwsError
from .query_xml import xml_text


@lru_cache(maxsize=None)
def service_model(name: str) -> ServiceModel:
    return botocore.session.get_session().get_service_model(name)


def query_error(code: str, message: str, status: int = 400) -> AwsError:
    return AwsError(code, message, status, "Sender")


def operation(model: ServiceModel, action: str) -> OperationModel:
    if action in model.operation_names:
        return model.operation_model(action)
    raise query_error("InvalidAction", f"Could not find operation {action} for version "
                                       f"{model.api_version}")


# --- input -------------------------------------------------------------------------------------

def parse_params(op: OperationModel, form: dict[str, str]) -> dict[str, Any]:
    shape = op.input_shape
    return _structure(shape, form, "") if shape is not None else {}


def _name(shape: Shape, default: str) -> str:
    return shape.serialization.get("name", default)


def _present(form: dict[str, str], prefix: str) -> bool:
    dotted = prefix + "."
    return any(k == prefix or k.startswith(dotted) for k in form)


def _structure(shape: StructureShape, form: dict[str, str], prefix: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, member in shape.members.items():
        full = (prefix + "." if prefix else "") + _name(member, name)
        if _present(form, full):
            out[name] = _parse(member, form, full)
    return out


def _parse(shape: Shape, form: dict[str, str], prefix: str) -> Any:
    if isinstance(shape, StructureShape):
        return _structure(shape, form, prefix)
    if isinstance(shape, ListShape):
        base = prefix if shape.serialization.get("flattened") else \
            f"{prefix}.{_name(shape.member, 'member')}"
        items, i = [], 1
        while _present(form, f"{base}.{i}"):
            items.append(_parse(shape.member, form, f"{base}.{i}"))
            i += 1
        if not items and form.get(prefix) == "":  # an explicitly empty list
            return []
        return items
    if isinstance(shape, MapShape):
        base = prefix if shape.serialization.get("flattened") else f"{prefix}.entry"
        key_name, value_name = _name(shape.key, "key"), _name(shape.value, "value")
        out, i = {}, 1
        while _present(form, f"{base}.{i}"):
            out[form.get(f"{base}.{i}.{key_name}", "")] = \
                _parse(shape.value, form, f"{base}.{i}.{value_name}")
            i += 1
        return out
    raw = form.get(prefix)
    if raw is None:
        return None
    try:
        if shape.type_name in ("integer", "long"):
            return int(raw)
        if shape.type_name in ("float", "double"):
            return float(raw)
    except ValueError:
        raise query_error("ValidationError", f"1 validation error detected: Value '{raw}' at "
                          f"'{prefix}' failed to satisfy constraint: Member must be a number")
    if shape.type_name == "boolean":
        return raw.lower() == "true"
    return raw


# --- output ------------------------------------------------------------------------------------

def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return xml_text(str(value))


def _serialize(shape: Shape, value: Any, out: list[str]) -> None:
    if isinstance(shape, StructureShape):
        for name, member in shape.members.items():
            if value.get(name) is None:
                continue
            if isinstance(member, ListShape) and member.serialization.get("flattened"):
                tag = _name(member, name)
                for item in value[name]:
                    out.append(f"<{tag}>")
                    _serialize(member.member, item, out)
                    out.append(f"</{tag}>")
                continue
            tag = _name(member, name)
            out.append(f"<{tag}>")
            _serialize(member, value[name], out)
            out.append(f"</{tag}>")
    elif isinstance(shape, ListShape):
        tag = _name(shape.member, "member")
        for item in value:
            out.append(f"<{tag}>")
            _serialize(shape.member, item, out)
            out.append(f"</{tag}>")
    elif isinstance(shape, MapShape):
        key_tag, value_tag = _name(shape.key, "key"), _name(shape.value, "value")
        for key, item in value.items():
            out.append(f"<entry><{key_tag}>{xml_text(str(key))}</{key_tag}><{value_tag}>")
            _serialize(shape.value, item, out)
            out.append(f"</{value_tag}></entry>")
    else:
        out.append(_scalar(value))


def namespace(model: ServiceModel) -> str:
    return model.metadata.get("xmlNamespace") or \
        f"https://{model.endpoint_prefix}.amazonaws.com/doc/{model.api_version}/"


def response_xml(model: ServiceModel, op: OperationModel, result: dict[str, Any],
                 request_id: str) -> str:
    out = [f'<{op.name}Response xmlns="{namespace(model)}">']
    if op.output_shape is not None:
        wrapper = op.output_shape.serialization.get("resultWrapper", f"{op.name}Result")
        out.append(f"<{wrapper}>")
        _serialize(op.output_shape, result, out)
        out.append(f"</{wrapper}>")
    out.append(f"<ResponseMetadata><RequestId>{request_id}</RequestId></ResponseMetadata>"
               f"</{op.name}Response>")
    return "".join(out)


def error_xml(model: ServiceModel, error: AwsError, request_id: str) -> str:
    kind = "Receiver" if error.status >= 500 else "Sender"
    return (f'<ErrorResponse xmlns="{namespace(model)}"><Error><Type>{kind}</Type>'
            f"<Code>{xml_text(error.code)}</Code><Message>{xml_text(error.message)}</Message>"
            f"</Error><RequestId>{request_id}</RequestId></ErrorResponse>")


def xml_response(text: str, status: int = 200) -> web.Response:
    return web.Response(text=text, status=status, content_type="text/xml")


def new_request_id() -> str:
    return str(uuid.uuid4())


# --- one request -------------------------------------------------------------------------------

async def read_form(request: web.Request) -> dict[str, str]:
    """Query string and form body together; a body that is not form encoding is the caller's
    fault (MalformedQueryString), not a 500."""
    from .dispatch import FORM_ERROR

    try:
        if FORM_ERROR in request:
            raise request[FORM_ERROR]
        form = {**request.query, **(await request.post())}
    except Exception as e:  # noqa: BLE001 - whatever the form parser refuses
        raise query_error("MalformedQueryString",
                          f"The query string contains a syntax error: {type(e).__name__}") \
            from None
    if not all(isinstance(v, str) for v in form.values()):
        raise query_error("MalformedQueryString", "The query string contains a syntax error: "
                                                  "a parameter is not a string")
    return form  # type: ignore[return-value]


async def handle(service: str, actions: dict[str, Any], request: web.Request,
                 *context: Any) -> web.Response:
    """Parse, call `actions[Action](*context, params)`, serialise; every failure as the
    service's error XML."""
    import logging

    model = service_model(service)
    request_id = new_request_id()
    action = ""
    try:
        form = await read_form(request)
        action = form.get("Action", "")
        if not action:
            raise query_error("MissingAction", "Missing Action")
        op = operation(model, action)
        handler = actions.get(action)
        if handler is None:
            raise query_error("InvalidAction", f"lambdaplane does not implement {service} "
                                               f"{action} (docs/api-coverage.md)")
        params = parse_params(op, form)
        for name in (op.input_shape.required_members if op.input_shape else []):
            if params.get(name) in (None, ""):
                raise query_error("ValidationError", f"1 validation error detected: Value null "
                                  f"at '{name[0].lower() + name[1:]}' failed to satisfy "
                                  f"constraint: Member must not be null")
        result = await handler(*context, params)
        return xml_response(response_xml(model, op, result, request_id))
    except AwsError as e:
        return xml_response(error_xml(model, e, request_id), e.status)
    except Exception:
        logging.getLogger("lambdaplane." + service).exception("%s %s failed", service, action)
        err = AwsError("ServiceFailure", "An internal error has occurred", 500, "Receiver")
        return xml_response(error_xml(model, err, request_id), 500)
