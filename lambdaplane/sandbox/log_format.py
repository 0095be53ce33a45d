"""The platform's own log lines of one invocation in the function's LoggingConfig format:
`START`/`END`/`REPORT` text lines (LogFormat Text, the default), or — LogFormat JSON, AWS's
advanced logging controls — `platform.start`, `platform.runtimeDone` and `platform.report`
records, shown only when the function's SystemLogLevel lets INFO through (DEBUG or INFO, not
WARN). Also the variables that tell the runtime the format and the application log level
(`AWS_LAMBDA_LOG_FORMAT`, `AWS_LAMBDA_LOG_LEVEL`); the runtime formats and filters its own
application logs (sandbox/runtimes/)."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass

from .logs import aws_timestamp, report_line

SYSTEM_LEVELS = ("DEBUG", "INFO", "WARN")
APPLICATION_LEVELS = ("TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL")


@dataclass(frozen=True)
class LogSettings:
    """A function's LoggingConfig, as the sandbox needs it."""
    log_format: str = "Text"  # Text | JSON
    application_level: str = "INFO"
    system_level: str = "INFO"

    @classmethod
    def from_config(cls, config: dict[str, str]) -> LogSettings:
        return cls(config.get("LogFormat") or "Text",
                   config.get("ApplicationLogLevel") or "INFO",
                   config.get("SystemLogLevel") or "INFO")

    @property
    def json(self) -> bool:
        return self.log_format == "JSON"

    def environment(self) -> dict[str, str]:
        """What the runtime reads: the format always, the level with JSON only (as AWS)."""
        env = {"AWS_LAMBDA_LOG_FORMAT": self.log_format}
        if self.json:
            env["AWS_LAMBDA_LOG_LEVEL"] = self.application_level
        return env

    def shows_platform_info(self) -> bool:
        return not self.json or SYSTEM_LEVELS.index(self.system_level) <= 1


@dataclass(frozen=True)
class InvocationFacts:
    request_id: str
    version: str
    duration_ms: float
    memory_mb: int
    max_used_mb: int
    init_ms: float | None
    status: str  # success | error | timeout | failure


def start_line(settings: LogSettings, facts: InvocationFacts, at_s: float | None = None) -> str:
    if not settings.shows_platform_info():
        return ""
    if not settings.json:
        return f"START RequestId: {facts.request_id} Version: {facts.version}\n"
    return _record("platform.start", at_s, {"requestId": facts.request_id,
                                            "version": facts.version})


def end_lines(settings: LogSettings, facts: InvocationFacts, at_s: float | None = None) -> str:
    """END + REPORT, or platform.runtimeDone + platform.report."""
    if not settings.shows_platform_info():
        return ""
    if not settings.json:
        return (f"END RequestId: {facts.request_id}\n"
                + report_line(facts.request_id, facts.duration_ms, facts.memory_mb,
                              facts.max_used_mb, facts.init_ms) + "\n")
    duration = round(facts.duration_ms, 3)
    metrics: dict[str, float | int] = {
        "durationMs": duration, "billedDurationMs": max(1, math.ceil(facts.duration_ms)),
        "memorySizeMB": facts.memory_mb, "maxMemoryUsedMB": facts.max_used_mb}
    if facts.init_ms is not None:
        metrics["initDurationMs"] = round(facts.init_ms, 3)
    return (_record("platform.runtimeDone", at_s, {
                "requestId": facts.request_id, "status": facts.status,
                "metrics": {"durationMs": duration}})
            + _record("platform.report", at_s, {
                "requestId": facts.request_id, "metrics": metrics, "status": facts.status}))


def _record(kind: str, at_s: float | None, record: dict[str, object]) -> str:
    return json.dumps({"time": aws_timestamp(at_s), "type": kind, "record": record}) + "\n"
