"""What the Python runtime writes to the function's log, and how its process is set up for
the function: sys.path and the working directory as AWS orders them, line-buffered streams,
the `logging` root handler (AWS's tab-separated line with the request id, or with LogFormat
JSON one object per record, at AWS_LAMBDA_LOG_LEVEL), and the `[ERROR]` record of a fault.
Part of the Python runtime (python_bootstrap.py loads it).

STDLIB ONLY, run under the function's interpreter (python3.9+)."""
from __future__ import annotations

import json
import os
import sys
import time
import traceback
from typing import Any

TASK_ROOT = "/var/task"


def setup_paths_and_streams() -> None:
    task_root = os.environ.get("LAMBDA_TASK_ROOT") or TASK_ROOT
    # AWS's order; /var/runtime holds boto3/botocore (the server's runtime-sdk, if present)
    for path in reversed((task_root, f"/opt/python/lib/python{sys.version_info[0]}."
                          f"{sys.version_info[1]}/site-packages", "/opt/python",
                          "/var/runtime")):
        if path not in sys.path:
            sys.path.insert(0, path)
    os.chdir(task_root)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(line_buffering=True)  # type: ignore[attr-defined]
        except (AttributeError, ValueError):
            pass


class RequestIdFilter:
    """Adds the current request id to log records (AWS's log line format uses it)."""
    request_id = ""

    def filter(self, record: Any) -> bool:
        record.aws_request_id = self.request_id
        return True


def _utc_now() -> str:
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"


# AWS_LAMBDA_LOG_LEVEL (the function's ApplicationLogLevel) as Python logging levels
_APPLICATION_LEVELS = {"TRACE": 5, "DEBUG": 10, "INFO": 20, "WARN": 30, "ERROR": 40,
                       "FATAL": 50}


class _JsonFormatter:
    """LogFormat JSON: each logging record as one JSON object (timestamp, level, message,
    logger, requestId), the shape AWS's Python runtime writes."""

    def format(self, record: Any) -> str:
        out = {"timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
               + f".{int(record.msecs):03d}Z",
               "level": {"WARNING": "WARN", "CRITICAL": "FATAL"}.get(record.levelname,
                                                                      record.levelname),
               "message": record.getMessage(), "logger": record.name,
               "requestId": getattr(record, "aws_request_id", "")}
        if record.exc_info:
            out["errorType"] = record.exc_info[0].__name__
            out["stackTrace"] = traceback.format_exception(*record.exc_info)
        return json.dumps(out, default=str)


def setup_logging() -> RequestIdFilter:
    import logging

    flt = RequestIdFilter()
    handler = logging.StreamHandler(sys.stdout)
    if os.environ.get("AWS_LAMBDA_LOG_FORMAT") == "JSON":
        handler.setFormatter(_JsonFormatter())  # type: ignore[arg-type]
        handler.addFilter(flt)  # type: ignore[arg-type]
        root = logging.getLogger()
        root.handlers[:] = [handler]
        root.setLevel(_APPLICATION_LEVELS.get(os.environ.get("AWS_LAMBDA_LOG_LEVEL", "INFO"),
                                              logging.INFO))
        return flt
    formatter = logging.Formatter("[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t"
                                  "%(aws_request_id)s\t%(message)s\n", "%Y-%m-%dT%H:%M:%S")
    formatter.converter = time.gmtime
    handler.setFormatter(formatter)
    handler.addFilter(flt)  # type: ignore[arg-type]
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    return flt


def log_error(payload: dict[str, Any]) -> None:
    """The `[ERROR] Type: message` + traceback lines AWS's runtime writes to the log (with
    LogFormat JSON: one JSON object, as AWS's runtime writes it then)."""
    if os.environ.get("AWS_LAMBDA_LOG_FORMAT") == "JSON":
        sys.stdout.write(json.dumps({
            "timestamp": _utc_now(), "log_level": "ERROR",
            "errorMessage": payload.get("errorMessage"), "errorType": payload.get("errorType"),
            "requestId": payload.get("requestId", ""),
            "stackTrace": payload.get("stackTrace") or []}) + "\n")
        sys.stdout.flush()
        return
    line = "[ERROR]"
    if payload.get("errorType"):
        line += " " + payload["errorType"]
    if payload.get("errorMessage"):
        line += (":" if payload.get("errorType") else "") + " " + payload["errorMessage"]
    lines = [line, "Traceback (most recent call last):"]
    for element in payload.get("stackTrace") or []:
        lines.extend(element.splitlines() or [""])
    sys.stdout.write("\n".join(lines) + "\n")
    sys.stdout.flush()
