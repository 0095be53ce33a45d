"""The platform's log lines per LoggingConfig: AWS's text lines by default, platform.*
JSON records with LogFormat JSON, none of them under SystemLogLevel WARN; and the variables
that tell the runtime the format and application level."""
from __future__ import annotations

import json

from lambdaplane.sandbox.log_format import InvocationFacts, LogSettings, end_lines, start_line

FACTS = InvocationFacts("r-1", "$LATEST", 12.345, 128, 40, 150.5, "success")


def test_text_lines_are_awss() -> None:
    text = LogSettings.from_config({})
    assert start_line(text, FACTS) == "START RequestId: r-1 Version: $LATEST\n"
    end, report = end_lines(text, FACTS).splitlines()
    assert end == "END RequestId: r-1"
    assert report.startswith("REPORT RequestId: r-1\tDuration: 12.35 ms\tBilled Duration: 13 ms")
    assert text.environment() == {"AWS_LAMBDA_LOG_FORMAT": "Text"}


def test_json_records() -> None:
    settings = LogSettings.from_config({"LogFormat": "JSON", "ApplicationLogLevel": "DEBUG"})
    start = json.loads(start_line(settings, FACTS, 0))
    assert start == {"time": "1970-01-01T00:00:00.000Z", "type": "platform.start",
                     "record": {"requestId": "r-1", "version": "$LATEST"}}
    done, report = (json.loads(line) for line in end_lines(settings, FACTS, 0).splitlines())
    assert done["type"] == "platform.runtimeDone" and done["record"]["status"] == "success"
    assert report["type"] == "platform.report"
    assert report["record"]["metrics"] == {"durationMs": 12.345, "billedDurationMs": 13,
                                           "memorySizeMB": 128, "maxMemoryUsedMB": 40,
                                           "initDurationMs": 150.5}
    assert settings.environment() == {"AWS_LAMBDA_LOG_FORMAT": "JSON",
                                      "AWS_LAMBDA_LOG_LEVEL": "DEBUG"}


def test_system_level_warn_hides_platform_records() -> None:
    quiet = LogSettings.from_config({"LogFormat": "JSON", "SystemLogLevel": "WARN"})
    assert start_line(quiet, FACTS) == "" and end_lines(quiet, FACTS) == ""
    assert LogSettings.from_config({"LogFormat": "JSON", "SystemLogLevel": "DEBUG"}
                                   ).shows_platform_info()
