"""The CloudWatch Logs API through boto3 against a live server: a function's group and stream
made by its first invoke, with START/END/REPORT and its own lines; GetLogEvents tokens both
ways; FilterLogEvents with each kind of pattern; retention really deleting old events; tags;
AWS's errors; durability across a restart."""
from __future__ import annotations

import base64
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError

from tests.conftest import live_server
from tests.harness import LiveServer, create_python_function

pytestmark = pytest.mark.root

APP = """
import json

def handler(event, context):
    print("hello from", event.get("tag", "-"))
    print(json.dumps({"level": event.get("level", "INFO"), "latency": event.get("latency", 1)}))
    return "ok"
"""
STREAM_NAME = re.compile(r"\d{4}/\d{2}/\d{2}/\[\$LATEST\][0-9a-f]{32}")
MINUTE_MS = 60_000


def _code(call) -> str:
    with pytest.raises(ClientError) as err:
        call()
    return err.value.response["Error"]["Code"]


def _wait_for(fetch, check, timeout_s: float = 30.0):
    """Poll until `check` holds; a group not made yet (output reaches the store off the
    invoke path, on every backend) is waited for too."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            found = fetch()
        except ClientError as e:
            if e.response["Error"]["Code"] != "ResourceNotFoundException" or \
                    time.monotonic() > deadline:
                raise
        else:
            if check(found) or time.monotonic() > deadline:
                return found
        time.sleep(0.1)


def _put(logs, group: str, stream: str, messages: list[str], first_ms: int,
         step_ms: int = 1) -> None:
    logs.put_log_events(logGroupName=group, logStreamName=stream, logEvents=[
        {"timestamp": first_ms + i * step_ms, "message": m} for i, m in enumerate(messages)])


def test_invoke_makes_group_and_stream_with_aws_lines(server: LiveServer) -> None:
    lam, logs = server.lambda_(), server.client("logs")
    create_python_function(lam, "lg-fn", APP)
    lam.invoke(FunctionName="lg-fn", Payload=json.dumps({"tag": "first"}))
    lam.invoke(FunctionName="lg-fn", Payload=json.dumps({"tag": "second", "level": "ERROR",
                                                         "latency": 250}))
    groups = _wait_for(  # output reaches the store off the invoke path (on every backend)
        lambda: logs.describe_log_groups(logGroupNamePrefix="/aws/lambda/lg-f")["logGroups"],
        lambda g: len(g) == 1)
    assert [g["logGroupName"] for g in groups] == ["/aws/lambda/lg-fn"]
    assert groups[0]["arn"].endswith(":log-group:/aws/lambda/lg-fn:*")
    streams = _wait_for(
        lambda: logs.describe_log_streams(logGroupName="/aws/lambda/lg-fn")["logStreams"],
        lambda s: len(s) == 1 and s[0].get("lastEventTimestamp"))
    assert len(streams) == 1 and STREAM_NAME.fullmatch(streams[0]["logStreamName"])
    stream = streams[0]["logStreamName"]
    events = _wait_for(
        lambda: logs.get_log_events(logGroupName="/aws/lambda/lg-fn", logStreamName=stream,
                                    startFromHead=True)["events"],
        lambda e: sum(m["message"].startswith("REPORT") for m in e) == 2)
    messages = [e["message"] for e in events]
    assert messages[0].startswith("START RequestId: ") and "Version: $LATEST" in messages[0]
    assert "hello from first" in messages and "hello from second" in messages
    assert any(m.startswith("END RequestId: ") for m in messages)
    assert all(e["ingestionTime"] >= e["timestamp"] - 1000 for e in events)
    found = logs.filter_log_events(logGroupName="/aws/lambda/lg-fn",
                                   filterPattern='{ $.level = "ERROR" }')["events"]
    assert [json.loads(e["message"])["latency"] for e in found] == [250]
    assert found[0]["logStreamName"] == stream and len(found[0]["eventId"]) == 56


def test_a_version_logs_to_the_function_group_in_a_stream_named_for_it(server: LiveServer
                                                                       ) -> None:
    lam, logs = server.lambda_(), server.client("logs")
    create_python_function(lam, "lg-ver", APP)
    version = lam.publish_version(FunctionName="lg-ver")["Version"]
    lam.invoke(FunctionName="lg-ver", Qualifier=version, Payload=json.dumps({"tag": "v"}))
    def streams() -> list[dict]:  # the group is made by the store's writer, a moment later
        try:
            return logs.describe_log_streams(logGroupName="/aws/lambda/lg-ver")["logStreams"]
        except logs.exceptions.ResourceNotFoundException:
            return []

    found = _wait_for(streams, lambda s: len(s) == 1)
    assert f"/[{version}]" in found[0]["logStreamName"]


def test_get_log_events_tokens_both_ways(server: LiveServer) -> None:
    logs = server.client("logs")
    logs.create_log_group(logGroupName="tok")
    logs.create_log_stream(logGroupName="tok", logStreamName="s")
    now = int(time.time() * 1000) - 10 * MINUTE_MS
    _put(logs, "tok", "s", [f"m{i}" for i in range(10)], now)

    def page(**kw) -> dict:
        return logs.get_log_events(logGroupName="tok", logStreamName="s", limit=3, **kw)

    def texts(resp: dict) -> list[str]:
        return [e["message"] for e in resp["events"]]

    latest = page()  # without startFromHead: the newest events
    assert texts(latest) == ["m7", "m8", "m9"]
    older = page(nextToken=latest["nextBackwardToken"])
    assert texts(older) == ["m4", "m5", "m6"]
    assert texts(page(nextToken=older["nextForwardToken"])) == ["m7", "m8", "m9"]
    # at the end, the same forward token comes back with no events
    end = page(nextToken=latest["nextForwardToken"])
    assert texts(end) == [] and end["nextForwardToken"] == latest["nextForwardToken"]
    head = page(startFromHead=True)
    assert texts(head) == ["m0", "m1", "m2"]
    start = page(nextToken=head["nextBackwardToken"])
    assert texts(start) == [] and start["nextBackwardToken"] == head["nextBackwardToken"]
    # new events appear after the forward token (what a follower relies on)
    _put(logs, "tok", "s", ["m10"], now + 100)
    assert texts(page(nextToken=latest["nextForwardToken"])) == ["m10"]
    ranged = logs.get_log_events(logGroupName="tok", logStreamName="s", startFromHead=True,
                                 startTime=now + 2, endTime=now + 5)
    assert texts(ranged) == ["m2", "m3", "m4"]  # endTime is exclusive


def test_filter_log_events_patterns_interleaved_and_paged(server: LiveServer) -> None:
    logs = server.client("logs")
    logs.create_log_group(logGroupName="flt")
    for s in ("app-1", "app-2", "other"):
        logs.create_log_stream(logGroupName="flt", logStreamName=s)
    base = int(time.time() * 1000) - 30 * MINUTE_MS
    _put(logs, "flt", "app-1", ["[ERROR] disk full", "[INFO] ok",
                                '{"level": "ERROR", "latency": 300}'], base, 10)
    _put(logs, "flt", "app-2", ["[WARN] slow", "[ERROR] Exiting now",
                                '{"level": "INFO", "latency": 20}'], base + 5, 10)
    _put(logs, "flt", "other", ["request timed out", "[ERROR] other"], base + 1, 10)

    def messages(**kw) -> list[str]:
        return [e["message"] for e in logs.filter_log_events(logGroupName="flt", **kw)["events"]]

    assert messages(filterPattern="ERROR") == [
        "[ERROR] disk full", "[ERROR] other", "[ERROR] Exiting now",
        '{"level": "ERROR", "latency": 300}']  # interleaved by time across streams
    assert messages(filterPattern="ERROR -Exiting", logStreamNamePrefix="app-") == [
        "[ERROR] disk full", '{"level": "ERROR", "latency": 300}']
    assert messages(filterPattern="?WARN ?timed") == ["request timed out", "[WARN] slow"]
    assert messages(filterPattern='"timed out"') == ["request timed out"]
    assert messages(filterPattern="{ $.latency > 100 }") == ['{"level": "ERROR", "latency": 300}']
    assert messages(filterPattern='{ $.level = "INFO" || $.latency > 100 }') == [
        '{"level": "ERROR", "latency": 300}', '{"level": "INFO", "latency": 20}']
    assert messages(logStreamNames=["other"]) == ["request timed out", "[ERROR] other"]
    assert messages(startTime=base + 10, endTime=base + 11) == ["[INFO] ok", "[ERROR] other"]
    pages, token = [], None
    while True:
        kw = {"nextToken": token} if token else {}
        resp = logs.filter_log_events(logGroupName="flt", limit=3, **kw)
        pages.append([e["message"] for e in resp["events"]])
        token = resp.get("nextToken")
        if not token:
            break
    assert sum(len(p) for p in pages) == 8 and len(pages[0]) == 3
    assert _code(lambda: logs.filter_log_events(logGroupName="flt", filterPattern="{ $.a > }")) \
        == "InvalidParameterException"


def test_retention_deletes_old_events(server: LiveServer) -> None:
    logs = server.client("logs")
    logs.create_log_group(logGroupName="ret")
    logs.create_log_stream(logGroupName="ret", logStreamName="s")
    now = int(time.time() * 1000)
    _put(logs, "ret", "s", ["three days old", "two days old"], now - 3 * 24 * 60 * MINUTE_MS,
         24 * 60 * MINUTE_MS)
    _put(logs, "ret", "s", ["fresh"], now - MINUTE_MS)
    logs.put_retention_policy(logGroupName="ret", retentionInDays=1)
    group = logs.describe_log_groups(logGroupNamePrefix="ret")["logGroups"][0]
    assert group["retentionInDays"] == 1
    events = logs.get_log_events(logGroupName="ret", logStreamName="s",
                                 startFromHead=True)["events"]
    assert [e["message"] for e in events] == ["fresh"]
    # an event older than the retention is refused, not stored
    resp = logs.put_log_events(logGroupName="ret", logStreamName="s", logEvents=[
        {"timestamp": now - 2 * 24 * 60 * MINUTE_MS, "message": "too old"}])
    assert resp["rejectedLogEventsInfo"] == {"expiredLogEventEndIndex": 0}
    logs.delete_retention_policy(logGroupName="ret")
    assert "retentionInDays" not in logs.describe_log_groups(
        logGroupNamePrefix="ret")["logGroups"][0]
    assert _code(lambda: logs.put_retention_policy(logGroupName="ret", retentionInDays=2)) \
        == "InvalidParameterException"


def test_groups_streams_tags_and_errors(server: LiveServer) -> None:
    logs = server.client("logs")
    for name in ("pg/a", "pg/b", "pg/c", "other/pg"):
        logs.create_log_group(logGroupName=name, **({"tags": {"team": "x"}} if name == "pg/a"
                                                    else {}))
    assert _code(lambda: logs.create_log_group(logGroupName="pg/a")) == \
        "ResourceAlreadyExistsException"
    first = logs.describe_log_groups(logGroupNamePrefix="pg/", limit=2)
    assert [g["logGroupName"] for g in first["logGroups"]] == ["pg/a", "pg/b"]
    rest = logs.describe_log_groups(logGroupNamePrefix="pg/", limit=2,
                                    nextToken=first["nextToken"])
    assert [g["logGroupName"] for g in rest["logGroups"]] == ["pg/c"] and \
        "nextToken" not in rest
    assert [g["logGroupName"] for g in logs.describe_log_groups(
        logGroupNamePattern="PG")["logGroups"] if "pg" in g["logGroupName"]] == \
        ["other/pg", "pg/a", "pg/b", "pg/c"]
    assert _code(lambda: logs.describe_log_groups(logGroupNamePrefix="a",
                                                  logGroupNamePattern="b")) == \
        "InvalidParameterException"
    # tags, by name and by ARN
    assert logs.list_tags_log_group(logGroupName="pg/a")["tags"] == {"team": "x"}
    logs.tag_log_group(logGroupName="pg/a", tags={"env": "dev"})
    logs.untag_log_group(logGroupName="pg/a", tags=["team"])
    arn = logs.describe_log_groups(logGroupNamePrefix="pg/a")["logGroups"][0]["logGroupArn"]
    assert logs.list_tags_for_resource(resourceArn=arn)["tags"] == {"env": "dev"}
    logs.tag_resource(resourceArn=arn, tags={"k": "v"})
    logs.untag_resource(resourceArn=arn, tagKeys=["env"])
    assert logs.list_tags_log_group(logGroupName="pg/a")["tags"] == {"k": "v"}
    # streams: order, prefix, pagination
    for s in ("b", "a", "c"):
        logs.create_log_stream(logGroupName="pg/b", logStreamName=s)
    now = int(time.time() * 1000)
    _put(logs, "pg/b", "a", ["x"], now - 3000)
    _put(logs, "pg/b", "c", ["x"], now - 2000)
    _put(logs, "pg/b", "b", ["x"], now - 1000)
    names = [s["logStreamName"] for s in logs.describe_log_streams(
        logGroupName="pg/b", orderBy="LastEventTime", descending=True)["logStreams"]]
    assert names == ["b", "c", "a"]
    page = logs.describe_log_streams(logGroupName="pg/b", limit=2)
    assert [s["logStreamName"] for s in page["logStreams"]] == ["a", "b"]
    assert [s["logStreamName"] for s in logs.describe_log_streams(
        logGroupName="pg/b", nextToken=page["nextToken"])["logStreams"]] == ["c"]
    assert _code(lambda: logs.describe_log_streams(logGroupName="pg/b", orderBy="LastEventTime",
                                                   logStreamNamePrefix="a")) == \
        "InvalidParameterException"
    assert _code(lambda: logs.create_log_stream(logGroupName="pg/b", logStreamName="a")) == \
        "ResourceAlreadyExistsException"
    # errors
    assert _code(lambda: logs.describe_log_streams(logGroupName="nope")) == \
        "ResourceNotFoundException"
    assert _code(lambda: logs.get_log_events(logGroupName="pg/b", logStreamName="zz")) == \
        "ResourceNotFoundException"
    assert _code(lambda: logs.put_log_events(
        logGroupName="pg/b", logStreamName="a",
        logEvents=[{"timestamp": now, "message": "2"}, {"timestamp": now - 5, "message": "1"}])) \
        == "InvalidParameterException"
    assert _code(lambda: logs.get_log_events(logGroupName="pg/b", logStreamName="a",
                                             nextToken="f/bogus")) == \
        "InvalidParameterException"
    logs.delete_log_group(logGroupName="pg/c")
    assert _code(lambda: logs.delete_log_group(logGroupName="pg/c")) == \
        "ResourceNotFoundException"


def _cli(server: LiveServer, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lambdaplane.cli", *args,
                           "--endpoint", server.endpoint], capture_output=True, text=True,
                          timeout=60, check=False)


def test_cli_logs_reads_the_store_follows_and_survives_restart(fresh_server: LiveServer) -> None:
    server = fresh_server
    lam, logs = server.lambda_(), server.client("logs")
    create_python_function(lam, "lg-cli", APP, LoggingConfig={"LogGroup": "/custom/lg-cli"})
    lam.invoke(FunctionName="lg-cli", Payload=json.dumps({"tag": "one"}))
    shown = _cli(server, "logs", "lg-cli")
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0].startswith("START RequestId:") and "hello from one" in lines
    assert lines[-1].startswith("REPORT RequestId:")
    # the function's LoggingConfig.LogGroup is its group: nothing under /aws/lambda/
    assert [g["logGroupName"] for g in logs.describe_log_groups()["logGroups"]] == \
        ["/custom/lg-cli"]
    follower = subprocess.Popen([sys.executable, "-m", "lambdaplane.cli", "logs", "lg-cli",
                                 "-f", "--tail", "1", "--endpoint", server.endpoint],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    printed: queue.Queue[str] = queue.Queue()
    assert follower.stdout is not None
    threading.Thread(target=lambda: [printed.put(line.rstrip("\n")) for line in follower.stdout],
                     daemon=True).start()
    try:
        assert printed.get(timeout=30).startswith("REPORT RequestId:")  # the tail of 1
        lam.invoke(FunctionName="lg-cli", Payload=json.dumps({"tag": "two"}))
        followed = [printed.get(timeout=30) for _ in range(5)]
        assert followed[0].startswith("START RequestId:") and "hello from two" in followed
    finally:
        follower.send_signal(signal.SIGINT)
        follower.wait(30)
    assert follower.returncode == 0
    server.restart()
    events = logs.filter_log_events(logGroupName="/custom/lg-cli",
                                    filterPattern='"hello from"')["events"]
    assert [e["message"] for e in events] == ["hello from one", "hello from two"]
    assert "hello from two" in _cli(server, "logs", "lg-cli").stdout.splitlines()


def _aws(server: LiveServer, *args: str) -> dict:
    """The AWS CLI v1 (awscli from PyPI) against the server; its JSON output."""
    aws = shutil.which("aws", path=str(Path(sys.executable).parent)) or shutil.which("aws")
    if aws is None:
        pytest.skip("awscli is not installed (pip install -e '.[test]')")
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_CONFIG_FILE": os.devnull,
           "AWS_SHARED_CREDENTIALS_FILE": os.devnull}
    done = subprocess.run([aws, "--endpoint-url", server.endpoint, "--output", "json",
                           "logs", *args], capture_output=True, text=True, timeout=120,
                          env=env, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout or "{}")


def test_aws_cli_filter_and_get_log_events(server: LiveServer) -> None:
    logs = server.client("logs")
    logs.create_log_group(logGroupName="cli-group")
    logs.create_log_stream(logGroupName="cli-group", logStreamName="cli-stream")
    base = int(time.time() * 1000) - 5 * MINUTE_MS
    _put(logs, "cli-group", "cli-stream", ["[ERROR] boom", "[INFO] fine",
                                           '{"level": "ERROR", "code": 503}', "[ERROR] again"],
         base)
    found = _aws(server, "filter-log-events", "--log-group-name", "cli-group",
                 "--filter-pattern", "ERROR -again")
    assert [e["message"] for e in found["events"]] == [
        "[ERROR] boom", '{"level": "ERROR", "code": 503}']
    found = _aws(server, "filter-log-events", "--log-group-name", "cli-group",
                 "--filter-pattern", "{ $.code >= 500 }")
    assert [e["message"] for e in found["events"]] == ['{"level": "ERROR", "code": 503}']
    # the CLI follows nextToken itself: pages of one still give every event
    paged = _aws(server, "filter-log-events", "--log-group-name", "cli-group",
                 "--page-size", "1")
    assert len(paged["events"]) == 4
    got = _aws(server, "get-log-events", "--log-group-name", "cli-group",
               "--log-stream-name", "cli-stream", "--start-from-head", "--limit", "2")
    assert [e["message"] for e in got["events"]] == ["[ERROR] boom", "[INFO] fine"]
    assert got["nextForwardToken"].startswith("f/") and got["nextBackwardToken"].startswith("b/")
    more = _aws(server, "get-log-events", "--log-group-name", "cli-group",
                "--log-stream-name", "cli-stream", "--next-token", got["nextForwardToken"])
    assert [e["message"] for e in more["events"]] == [
        '{"level": "ERROR", "code": 503}', "[ERROR] again"]


def test_sigv4_mode_verifies_logs_requests(tmp_path: Path) -> None:
    """With --auth sigv4, Logs requests are checked against the `logs` signing scope and
    refused in JSON 1.1's error shape."""
    creds = tmp_path / "credentials"
    creds.write_text("[default]\naws_access_key_id = AKIDLOGS\naws_secret_access_key = s3cret\n")
    for server in live_server(tmp_path, "--auth", "sigv4", "--credentials", str(creds)):
        def logs(secret: str, endpoint: str = server.endpoint):
            return boto3.client("logs", endpoint_url=endpoint, region_name="us-east-1",
                                aws_access_key_id="AKIDLOGS", aws_secret_access_key=secret)
        logs("s3cret").create_log_group(logGroupName="signed")
        assert [g["logGroupName"] for g in logs("s3cret").describe_log_groups()["logGroups"]] \
            == ["signed"]
        with pytest.raises(ClientError) as err:
            logs("wrong").describe_log_groups()
        assert err.value.response["Error"]["Code"] == "InvalidSignatureException"


JSON_APP = """
import logging

def handler(event, context):
    logging.getLogger().info("info from the app")
    logging.getLogger("orders").warning("low stock: %d", 3)
    print("plain print")
    if event.get("fail"):
        raise ValueError("asked to fail")
    return "ok"
"""


def test_logging_config_json_with_application_and_system_levels(server: LiveServer) -> None:
    """LogFormat JSON (AWS's advanced logging controls): the platform's records as JSON,
    the runtime's logging records as JSON filtered by ApplicationLogLevel, and
    SystemLogLevel WARN hiding the platform's INFO records."""
    lam, logs = server.lambda_(), server.client("logs")
    create_python_function(lam, "lg-json", JSON_APP, LoggingConfig={
        "LogFormat": "JSON", "ApplicationLogLevel": "WARN", "SystemLogLevel": "INFO"})
    lam.invoke(FunctionName="lg-json", Payload=b"{}")
    lam.invoke(FunctionName="lg-json", Payload=json.dumps({"fail": True}))
    group = "/aws/lambda/lg-json"
    reports = _wait_for(
        lambda: logs.filter_log_events(logGroupName=group,
                                       filterPattern='{ $.type = "platform.report" }')["events"],
        lambda found: len(found) == 2)
    report = json.loads(reports[0]["message"])
    assert report["record"]["metrics"]["memorySizeMB"] == 128
    assert report["record"]["status"] == "success" and "initDurationMs" in report["record"][
        "metrics"]
    assert json.loads(reports[1]["message"])["record"]["status"] == "error"
    messages = [e["message"] for e in logs.filter_log_events(logGroupName=group)["events"]]
    assert json.loads(messages[0])["type"] == "platform.start"
    assert not any("info from the app" in m for m in messages)  # below WARN: filtered
    warning = json.loads(next(m for m in messages if "low stock" in m))
    assert warning["level"] == "WARN" and warning["logger"] == "orders" and \
        warning["message"] == "low stock: 3" and warning["requestId"]
    assert "plain print" in messages  # print is not a logging record: as printed
    error = json.loads(next(m for m in messages if "asked to fail" in m))
    assert error["log_level"] == "ERROR" and error["errorType"] == "ValueError"
    # SystemLogLevel WARN: no platform INFO records at all
    lam.update_function_configuration(FunctionName="lg-json", LoggingConfig={
        "LogFormat": "JSON", "ApplicationLogLevel": "WARN", "SystemLogLevel": "WARN"})
    lam.get_waiter("function_updated_v2").wait(FunctionName="lg-json",
                                               WaiterConfig={"Delay": 0.2, "MaxAttempts": 100})
    out = lam.invoke(FunctionName="lg-json", Payload=b"{}", LogType="Tail")
    tail = base64.b64decode(out["LogResult"]).decode()
    assert "low stock" in tail and "platform." not in tail and "START" not in tail
