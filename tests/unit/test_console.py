"""The console's parts that need no server: which requests are the console's, its login
sessions, following a log file, and the per-function numbers metrics.py keeps for it."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from aiohttp.test_utils import make_mocked_request

from lambdaplane.console.routes import Sessions, is_console_request
from lambdaplane.metrics import FunctionCounts, Metrics
from lambdaplane.sandbox.logs import FunctionLog
from lambdaplane.sandbox.types import InvocationResult
from lambdaplane.service.log_tail import FileLogTail


# -- routing ----------------------------------------------------------------------------------

def _request(method: str, path: str, **headers: str):
    return make_mocked_request(method, path, headers=headers)


def test_a_browser_at_the_root_gets_the_console() -> None:
    html = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
    assert is_console_request(_request("GET", "/", Accept=html))
    assert is_console_request(_request("GET", "/?failed=1", Accept=html))
    assert is_console_request(_request("GET", "/_lambdaplane/console/state"))
    assert is_console_request(_request("POST", "/_lambdaplane/console/login"))


def test_the_apis_keep_the_root() -> None:
    html = "text/html"
    # EC2 Query: POST /, GET /?Action=…, anything signed, anything not asking for HTML
    assert not is_console_request(_request("POST", "/", Accept=html))
    assert not is_console_request(_request("GET", "/?Action=DescribeVpcs", Accept=html))
    assert not is_console_request(_request("GET", "/", Accept=html,
                                           Authorization="AWS4-HMAC-SHA256 Credential=x"))
    assert not is_console_request(_request("GET", "/", Accept="*/*"))
    assert not is_console_request(_request("GET", "/2015-03-31/functions/", Accept=html))
    assert not is_console_request(_request("GET", "/_lambdaplane/status"))
    assert not is_console_request(_request("GET", "/_lambdaplane/consoleX"))


# -- sessions -------------------------------------------------------------------------------

def test_only_the_credentials_files_keys_log_in() -> None:
    sessions = Sessions({"AKID1": "secret-one", "AKID2": "secret-two"})
    assert sessions.login("AKID1", "secret-two") is None
    assert sessions.login("AKID3", "secret-one") is None
    assert sessions.login("AKID1", "") is None
    token = sessions.login("AKID1", "secret-one")
    assert token is not None and sessions.valid(token)
    assert not sessions.valid(None) and not sessions.valid("made-up")
    other = sessions.login("AKID2", "secret-two")
    assert other is not None and other != token
    sessions.logout(token)
    assert not sessions.valid(token) and sessions.valid(other)


def test_a_session_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    import lambdaplane.console.routes as console
    sessions = Sessions({"AKID1": "s"})
    token = sessions.login("AKID1", "s")
    now = console.time.time()
    monkeypatch.setattr(console.time, "time", lambda: now + console.SESSION_S + 1)
    assert not sessions.valid(token)


# -- the log tail ---------------------------------------------------------------------------

def test_follows_a_function_log_from_its_last_lines(tmp_path: Path) -> None:
    tail = FileLogTail(tmp_path)
    lines, cursor = tail.follow("us-east-1", "fn", None, 2)
    assert lines == []  # no log yet
    log = FunctionLog(tmp_path, "us-east-1", "fn")
    log.append("one\ntwo\nthree")
    lines, cursor = tail.follow("us-east-1", "fn", cursor, 2)
    assert lines == ["one", "two", "three"]  # the file appeared: from its start
    assert tail.follow("us-east-1", "fn", cursor, 2)[0] == []

    fresh, fresh_cursor = tail.follow("us-east-1", "fn", None, 2)
    assert fresh == ["two", "three"]
    log.append("four")
    lines, cursor = tail.follow("us-east-1", "fn", fresh_cursor, 2)
    assert lines == ["four"]
    log.close()


def test_a_half_written_line_comes_whole(tmp_path: Path) -> None:
    tail = FileLogTail(tmp_path)
    path = tmp_path / "logs" / "us-east-1" / "fn.log"
    path.parent.mkdir(parents=True)
    path.write_text("done\npart")
    lines, cursor = tail.follow("us-east-1", "fn", None, 10)
    assert lines == ["done"]
    with open(path, "a") as f:
        f.write("ial\n")
    assert tail.follow("us-east-1", "fn", cursor, 10)[0] == ["partial"]


def test_a_log_made_again_is_followed_from_its_start(tmp_path: Path) -> None:
    tail = FileLogTail(tmp_path)
    path = tmp_path / "logs" / "us-east-1" / "fn.log"
    path.parent.mkdir(parents=True)
    path.write_text("old one\nold two\n")
    _, cursor = tail.follow("us-east-1", "fn", None, 10)
    os.unlink(path)
    path.write_text("new\n")
    assert tail.follow("us-east-1", "fn", cursor, 10)[0] == ["new"]


def test_a_name_that_is_no_functions_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        FileLogTail(tmp_path).follow("us-east-1", "../../etc/passwd", None, 10)


# -- numbers ----------------------------------------------------------------------------------

def test_percentiles_of_recent_durations() -> None:
    counts = FunctionCounts()
    assert counts.percentile(0.5) is None
    counts.recent_ms.extend(float(i) for i in range(1, 101))
    assert counts.percentile(0.50) == 50.0
    assert counts.percentile(0.99) == 99.0
    assert counts.percentile(1.0) == 100.0


def test_metrics_count_each_function(tmp_path: Path) -> None:
    from lambdaplane.errors import AwsError
    from lambdaplane.sandbox.types import FunctionSpec

    metrics = Metrics()
    spec = FunctionSpec("us-east-1", "fn", "arn", "$LATEST", "python3.11", "app.handler", 128,
                        3, {}, "sha", tmp_path, "rev")
    metrics.observe(spec, InvocationResult(payload=b"{}", duration_ms=2.0,
                                           cold_start=True, init_duration_ms=10.0))
    metrics.observe(spec, InvocationResult(payload=b"{}", duration_ms=4.0,
                                           function_error="Unhandled",
                                           error_type="Runtime.Error"))
    metrics.refused("fn", AwsError("TooManyRequestsException", "Rate exceeded", 429))
    counts = metrics.function_counts("fn")
    assert (counts.invocations, counts.errors, counts.throttles, counts.cold_starts) == \
        (2, 1, 1, 1)
    assert counts.percentile(0.5) == 2.0 and counts.percentile(0.99) == 4.0
    assert metrics.function_counts("other").invocations == 0
