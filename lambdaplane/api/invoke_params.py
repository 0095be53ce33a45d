"""The Invoke operation's input from a request, its model checks done once per distinct
request target. A warm caller sends the same function path, Qualifier and X-Amz-* headers
again and again and only the payload changes, so the checked members (FunctionName, Qualifier,
InvocationType, LogType, ClientContext, ...) are kept per (path, query, header values) and
only the payload is added per request. The Payload member is a blob without constraints (the
invoker checks it is JSON), so the result is exactly what `parse_input` gives; a request whose
members do not pass the checks is not kept: each one raises the model's error again."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from botocore.model import OperationModel

from .wire import parse_input

CACHE_SIZE = 1024  # distinct targets remembered; then forgotten all at once

_HEADERS = ("X-Amz-Invocation-Type", "X-Amz-Log-Type", "X-Amz-Client-Context",
            "X-Amz-Durable-Execution-Name", "X-Amz-Tenant-Id")


class InvokeParams:
    def __init__(self, op: OperationModel) -> None:
        self.op = op
        located = {m.serialization.get("name") for m in op.input_shape.members.values()
                   if m.serialization.get("location") == "header"}
        # every header the model reads for Invoke is part of the key (tests/unit check this)
        self.headers = tuple(h for h in _HEADERS if h in located)
        self.unkeyed_headers = located - set(self.headers)
        self._seen: dict[tuple[Any, ...], dict[str, Any]] = {}

    def parse(self, raw_path: str, labels: Mapping[str, str], query: Mapping[str, str],
              headers: Mapping[str, str], body: bytes) -> dict[str, Any]:
        if self.unkeyed_headers:  # a model with headers this module does not know: no cache
            return parse_input(self.op, labels, query, headers, body)
        key = (raw_path, tuple(query.items()), *(headers.get(h) for h in self.headers))
        checked = self._seen.get(key)
        if checked is None:
            checked = parse_input(self.op, labels, query, headers, b"")  # raises: not kept
            if len(self._seen) >= CACHE_SIZE:
                self._seen.clear()
            self._seen[key] = checked
        if not body:
            return dict(checked)
        return {**checked, "Payload": bytes(body)}
