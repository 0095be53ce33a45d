"""The EC2 Query wire format, driven by botocore's EC2 service model (the contract boto3 speaks):
form parameters in → a nested dict keyed by the model's member names; a result dict → the XML
document botocore's EC2 parser reads; an AwsError → AWS's error XML. No per-call XML anywhere.

Naming follows botocore's EC2Serializer/EC2QueryParser: on input a member is named by its
`queryName`, else its capitalised `locationName`, else its member name, and every list is
flattened as `Name.1`, `Name.2`…; on output a member is `<locationName>` (else its name) and a
list wraps its members as `<item>`."""
from __future__ import annotations

import datetime as dt
import re
from functools import lru_cache
from typing import Any
from xml.sax.saxutils import escape

import botocore.session
from botocore.model import ListShape, MapShape, OperationModel, ServiceModel, Shape, StructureShape

from ..errors import AwsError, ec2_error

XMLNS = "http://ec2.amazonaws.com/doc/2016-11-15/"
API_VERSION = "2016-11-15"


@lru_cache(maxsize=1)
def ec2_model() -> ServiceModel:
    return botocore.session.get_session().get_service_model("ec2", API_VERSION)


def operation(action: str) -> OperationModel:
    try:
        return ec2_model().operation_model(action)
    except Exception:
        raise ec2_error("InvalidAction",
                        f"The action {action} is not valid for this web service.") from None


# --- input: flat form parameters → nested dict ---------------------------------------------

def input_name(shape: Shape, default: str) -> str:
    """The Query-protocol name of a member (its queryName, else its capitalised name)."""
    ser = shape.serialization
    if "queryName" in ser:
        return ser["queryName"]
    if "name" in ser:
        return ser["name"][0].upper() + ser["name"][1:]
    return default


def parse_params(op: OperationModel, form: dict[str, str]) -> dict[str, Any]:
    """The operation's input as botocore would have been given it."""
    shape = op.input_shape
    if shape is None:
        return {}
    return _parse_structure(shape, form, "") or {}


def _has_prefix(form: dict[str, str], prefix: str) -> bool:
    dotted = prefix + "."
    return any(k == prefix or k.startswith(dotted) for k in form)


def _parse(shape: Shape, form: dict[str, str], prefix: str) -> Any:
    if isinstance(shape, StructureShape):
        return _parse_structure(shape, form, prefix)
    if isinstance(shape, ListShape):
        out = []
        i = 1
        while _has_prefix(form, f"{prefix}.{i}"):
            out.append(_parse(shape.member, form, f"{prefix}.{i}"))
            i += 1
        return out
    if isinstance(shape, MapShape):
        out_map: dict[str, Any] = {}
        i = 1
        while _has_prefix(form, f"{prefix}.{i}"):
            key = form.get(f"{prefix}.{i}.Key", "")
            out_map[key] = _parse(shape.value, form, f"{prefix}.{i}.Value")
            i += 1
        return out_map
    return _scalar_in(shape, form.get(prefix), prefix)


def _parse_structure(shape: StructureShape, form: dict[str, str], prefix: str) -> dict[str, Any] | None:
    out: dict[str, Any] = {}
    for name, member in shape.members.items():
        key = input_name(member, name)
        full = f"{prefix}.{key}" if prefix else key
        if _has_prefix(form, full):
            out[name] = _parse(member, form, full)
    return out


def _scalar_in(shape: Shape, raw: str | None, where: str) -> Any:
    if raw is None:
        return None
    kind = shape.type_name
    try:
        if kind in ("integer", "long"):
            return int(raw)
        if kind in ("float", "double"):
            return float(raw)
    except ValueError:
        raise ec2_error("InvalidParameterValue",
                        f"Value ({raw}) for parameter {where} is invalid.") from None
    if kind == "boolean":
        return raw.lower() == "true"
    return raw


# --- output: nested dict → XML ---------------------------------------------------------------

def _output_name(shape: Shape, default: str) -> str:
    return shape.serialization.get("name", default)


# Characters XML 1.0 cannot carry even escaped (controls, lone surrogates, U+FFFE/U+FFFF):
# a caller's value echoed back (a tag, an error message) must not break the document.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def xml_text(value: str) -> str:
    return escape(_NOT_XML.sub("\ufffd", value))


def _scalar_out(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    return xml_text(str(value))


def _serialize(shape: Shape, value: Any, out: list[str]) -> None:
    if isinstance(shape, StructureShape):
        for name, member in shape.members.items():
            if name not in value or value[name] is None:
                continue
            tag = _output_name(member, name)
            out.append(f"<{tag}>")
            _serialize(member, value[name], out)
            out.append(f"</{tag}>")
    elif isinstance(shape, ListShape):
        tag = shape.member.serialization.get("name", "item")
        for element in value:
            out.append(f"<{tag}>")
            _serialize(shape.member, element, out)
            out.append(f"</{tag}>")
    elif isinstance(shape, MapShape):
        for key, element in value.items():
            out.append("<item><key>" + xml_text(str(key)) + "</key><value>")
            _serialize(shape.value, element, out)
            out.append("</value></item>")
    else:
        out.append(_scalar_out(value))


def response_xml(op: OperationModel, result: dict[str, Any], request_id: str) -> str:
    out = [f'<?xml version="1.0" encoding="UTF-8"?>\n<{op.name}Response xmlns="{XMLNS}">',
           f"<requestId>{request_id}</requestId>"]
    if op.output_shape is not None:
        _serialize(op.output_shape, result, out)
    out.append(f"</{op.name}Response>")
    return "".join(out)


def error_xml(error: AwsError, request_id: str) -> str:
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error>'
            f"<Code>{xml_text(error.code)}</Code><Message>{xml_text(error.message)}</Message>"
            f"</Error></Errors><RequestID>{request_id}</RequestID></Response>")


def raise_missing(params: dict[str, Any], *names: str) -> None:
    """AWS's MissingParameter for required members the caller left out."""
    for name in names:
        if params.get(name) in (None, "", []):
            raise ec2_error("MissingParameter",
                            f"The request must contain the parameter {name[0].lower() + name[1:]}")
