"""Asynchronous invocation configuration (Put/Update/Get/Delete/ListFunctionEventInvokeConfigs):
per function and qualifier, MaximumRetryAttempts (0-2), MaximumEventAgeInSeconds (60-21600)
and OnSuccess / OnFailure destinations — here Lambda functions of this region and account. The
Event queue (service/invoke.py) reads them through `for_event` and hands finished events to
the destinations with `destination_record`. No HTTP, no kernel calls."""
from __future__ import annotations

import base64
import json
import re
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from ..errors import InvalidParameterValue, ResourceNotFound
from ..store.db import Database
from ..store.event_invoke_config import EventInvokeConfig, EventInvokeConfigStore

if TYPE_CHECKING:
    from .functions import FunctionService

LATEST = "$LATEST"
DEFAULT_RETRIES = 2
DEFAULT_MAX_EVENT_AGE_S = 21_600
DEFAULT_PAGE = 50
FUNCTION_ARN = re.compile(r"arn:aws[a-zA-Z-]*:lambda:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):"
                          r"function:(?P<name>[a-zA-Z0-9_.-]+)"
                          r"(?::(?P<qualifier>[a-zA-Z0-9_$.-]+))?")


class EventInvokeConfigs:
    def __init__(self, db: Database, functions: "FunctionService") -> None:
        self.store = EventInvokeConfigStore(db)
        self.functions = functions

    # -- the operations -------------------------------------------------------------------------
    def put(self, region: str, params: dict[str, Any]) -> EventInvokeConfig:
        """PutFunctionEventInvokeConfig: the whole configuration, replacing any previous one."""
        config = self._new(region, params)
        self._apply(config, params)
        self.store.put(config)
        return config

    def update(self, region: str, params: dict[str, Any]) -> EventInvokeConfig:
        """UpdateFunctionEventInvokeConfig: only what is given changes."""
        current = self.get(region, params["FunctionName"], params.get("Qualifier"))
        self._apply(current, params, keep_missing=True)
        self.store.put(current)
        return current

    def get(self, region: str, ref: str, qualifier: str | None) -> EventInvokeConfig:
        name, qualifier, arn = self._function(region, ref, qualifier)
        config = self.store.get(region, name, qualifier)
        if config is None:
            raise ResourceNotFound(f"The function {arn} doesn't have an EventInvokeConfig")
        return config

    def delete(self, region: str, ref: str, qualifier: str | None) -> None:
        name, qualifier, arn = self._function(region, ref, qualifier)
        if not self.store.delete(region, name, qualifier):
            raise ResourceNotFound(f"The function {arn} doesn't have an EventInvokeConfig")

    def list(self, region: str, ref: str, marker: str | None,
             max_items: int | None) -> tuple[list[EventInvokeConfig], str | None]:
        name, _, _ = self._function(region, ref, None)
        configs = self.store.of_function(region, name)
        if marker:
            try:
                after = base64.urlsafe_b64decode(marker.encode()).decode()
            except (ValueError, UnicodeDecodeError):
                raise InvalidParameterValue(f"Invalid marker: {marker}") from None
            configs = [c for c in configs if c.qualifier > after]
        limit = max_items or DEFAULT_PAGE
        if len(configs) > limit:
            configs = configs[:limit]
            return configs, base64.urlsafe_b64encode(configs[-1].qualifier.encode()).decode()
        return configs, None

    def forget_function(self, region: str, name: str) -> None:
        """A deleted function's configurations go with it."""
        self.store.delete(region, name)

    # -- what the Event queue reads -------------------------------------------------------------
    def for_event(self, region: str, name: str, qualifier: str = LATEST
                  ) -> tuple[int, int, EventInvokeConfig | None]:
        """(retries, maximum age in seconds, the configuration if any) for an event."""
        config = self.store.get(region, name, qualifier)
        retries = DEFAULT_RETRIES
        max_age = DEFAULT_MAX_EVENT_AGE_S
        if config is not None:
            if config.maximum_retry_attempts is not None:
                retries = config.maximum_retry_attempts
            if config.maximum_event_age_s is not None:
                max_age = config.maximum_event_age_s
        return retries, max_age, config

    def destination_function(self, region: str, arn: str) -> str | None:
        """The name of the function a destination ARN names in this region and account."""
        m = FUNCTION_ARN.fullmatch(arn)
        if m is None or m.group("region") != region or \
                m.group("account") != self.functions.settings.account_id:
            return None
        return m.group("name")

    # -- rules ----------------------------------------------------------------------------------
    def _function(self, region: str, ref: str, qualifier: str | None) -> tuple[str, str, str]:
        """(name, qualifier, qualified ARN) of an existing function (version or alias)."""
        record = self.functions.get(region, ref, qualifier)
        _, qualifier = self.functions.resolve(region, ref, qualifier)
        qualifier = qualifier or LATEST
        return record.name, qualifier, self.functions.arn(region, record.name, qualifier)

    def _new(self, region: str, params: dict[str, Any]) -> EventInvokeConfig:
        name, qualifier, arn = self._function(region, params["FunctionName"],
                                              params.get("Qualifier"))
        return EventInvokeConfig(region, name, qualifier, arn, time.time())

    def _apply(self, config: EventInvokeConfig, params: dict[str, Any],
               keep_missing: bool = False) -> None:
        if "MaximumRetryAttempts" in params or not keep_missing:
            config.maximum_retry_attempts = params.get("MaximumRetryAttempts")
        if "MaximumEventAgeInSeconds" in params or not keep_missing:
            config.maximum_event_age_s = params.get("MaximumEventAgeInSeconds")
        destinations = params.get("DestinationConfig")
        if destinations is not None or not keep_missing:
            destinations = destinations or {}
            for key, attr in (("OnSuccess", "on_success"), ("OnFailure", "on_failure")):
                if key in destinations or not keep_missing:
                    arn = (destinations.get(key) or {}).get("Destination") or None
                    if arn is not None:
                        self._check_destination(config, arn)
                    setattr(config, attr, arn)
        config.last_modified = time.time()

    def _check_destination(self, config: EventInvokeConfig, arn: str) -> None:
        name = self.destination_function(config.region, arn)
        if name is None:
            service = arn.split(":")[2] if arn.count(":") >= 2 else arn
            if service in ("sqs", "sns", "events", "s3", "kafka") or arn.startswith("kafka:"):
                raise InvalidParameterValue(
                    f"The destination ARN {arn} is not supported: lambdaplane delivers "
                    "asynchronous invocation records to Lambda functions.")
            raise InvalidParameterValue(f"The destination ARN {arn} is invalid.")
        if name == config.name:
            raise InvalidParameterValue(
                "You can't specify the function as a destination for itself.")


def configuration(config: EventInvokeConfig) -> dict[str, Any]:
    """An EventInvokeConfig as the operations' output shape."""
    out: dict[str, Any] = {
        "LastModified": config.last_modified, "FunctionArn": config.function_arn,
        "DestinationConfig": {
            "OnSuccess": {"Destination": config.on_success} if config.on_success else {},
            "OnFailure": {"Destination": config.on_failure} if config.on_failure else {}}}
    if config.maximum_retry_attempts is not None:
        out["MaximumRetryAttempts"] = config.maximum_retry_attempts
    if config.maximum_event_age_s is not None:
        out["MaximumEventAgeInSeconds"] = config.maximum_event_age_s
    return out


def destination_record(request_id: str, function_arn: str, condition: str, invoke_count: int,
                       request_payload: bytes, response: tuple[bytes, str | None] | None,
                       executed_version: str = LATEST) -> bytes:
    """AWS's invocation record for a destination. `response`: (payload, function error) of
    the last attempt, or None when none ran (the event expired before)."""
    now = datetime.now(timezone.utc)
    record: dict[str, Any] = {
        "version": "1.0",
        "timestamp": now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z",
        "requestContext": {"requestId": request_id, "functionArn": function_arn,
                           "condition": condition, "approximateInvokeCount": invoke_count},
        "requestPayload": _json_or_text(request_payload),
    }
    if response is not None:
        payload, function_error = response
        context: dict[str, Any] = {"statusCode": 200, "executedVersion": executed_version}
        if function_error:
            context["functionError"] = function_error
        record["responseContext"] = context
        record["responsePayload"] = _json_or_text(payload) if payload else None
    return json.dumps(record).encode()


def _json_or_text(data: bytes) -> Any:
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return data.decode("utf-8", "replace")
