"""Function logs without root: output attribution through a real pipe, the AWS line formats,
the per-function file, the admin route and `lambdaplane logs` against it (on 127.0.0.1)."""
from __future__ import annotations

import argparse
import asyncio
import os
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
from aiohttp import web

from lambdaplane.api import admin_api
from lambdaplane.commands import logs as logs_command
from lambdaplane.sandbox.logs import (FunctionLog, OutputCapture, aws_timestamp, log_path,
                                      report_line, tail_lines)


def test_report_line_has_aws_fields() -> None:
    line = report_line("r-1", 12.345, 128, 40, 150.5)
    assert line == ("REPORT RequestId: r-1\tDuration: 12.35 ms\tBilled Duration: 13 ms\t"
                    "Memory Size: 128 MB\tMax Memory Used: 40 MB\tInit Duration: 150.50 ms\t")
    assert "Init Duration" not in report_line("r-1", 0.2, 128, 40, None)
    assert "Billed Duration: 1 ms" in report_line("r-1", 0.2, 128, 40, None)


def test_aws_timestamp_format() -> None:
    assert aws_timestamp(0) == "1970-01-01T00:00:00.000Z"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", aws_timestamp())


def test_log_path_refuses_traversal(tmp_path: Path) -> None:
    assert log_path(tmp_path, "us-east-1", "f_1") == tmp_path / "logs/us-east-1/f_1.log"
    for region, name in (("..", "f"), ("us-east-1", "../x"), ("us-east-1", "a/b"), ("", "f")):
        with pytest.raises(ValueError):
            log_path(tmp_path, region, name)


async def test_output_is_attributed_to_the_current_invocation(tmp_path: Path) -> None:
    capture = OutputCapture(FunctionLog(tmp_path, "us-east-1", "f"))
    writer = os.dup(capture.write_fd)  # what the environment's process would hold
    capture.writer_sent()
    try:
        os.write(writer, b"init line\n")
        await asyncio.sleep(0.01)  # the event loop reader picks it up (or drain() does)
        assert capture.take_outside() == "init line\n"
        capture.begin("r-1")
        os.write(writer, b"during r-1\n")
        assert capture.end() == "during r-1\n"  # drained synchronously, no waiting
        os.write(writer, b"between\n")
        capture.begin("r-2")
        os.write(writer, b"during r-2\n")
        assert capture.end() == "during r-2\n"
        assert capture.take_outside() == "between\n"
    finally:
        os.close(writer)
        capture.close()


async def test_output_left_at_exit_goes_to_the_file(tmp_path: Path) -> None:
    capture = OutputCapture(FunctionLog(tmp_path, "us-east-1", "f"))
    writer = os.dup(capture.write_fd)
    capture.writer_sent()
    os.write(writer, b"last words\n")
    os.close(writer)
    capture.close()
    assert tail_lines(tmp_path, "us-east-1", "f", 10) == ["last words"]


def test_tail_lines(tmp_path: Path) -> None:
    assert tail_lines(tmp_path, "us-east-1", "none", 5) is None
    log = FunctionLog(tmp_path, "us-east-1", "f")
    log.append("".join(f"line {i}\n" for i in range(10)))
    assert tail_lines(tmp_path, "us-east-1", "f", 3) == ["line 7", "line 8", "line 9"]


async def test_logs_route_and_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    FunctionLog(tmp_path, "eu-west-1", "fn").append("START RequestId: a\nhello\nEND RequestId: a")
    app = web.Application()
    existing = {("eu-west-1", "fn"), ("us-east-1", "never-ran")}
    store = SimpleNamespace(get=lambda region, name: (region, name) in existing or None)
    admin_api.add_routes(app, SimpleNamespace(settings=SimpleNamespace(data_dir=tmp_path),
                                              functions=SimpleNamespace(store=store)))
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    endpoint = f"http://127.0.0.1:{port}"
    try:
        args = argparse.Namespace(name="fn", tail=2, region="eu-west-1")
        assert await asyncio.to_thread(logs_command.main, endpoint, args) == 0
        assert capsys.readouterr().out.splitlines() == ["hello", "END RequestId: a"]
        args = argparse.Namespace(name="never-ran", tail=5, region=None)
        assert await asyncio.to_thread(logs_command.main, endpoint, args) == 0
        assert capsys.readouterr().out == ""
        args = argparse.Namespace(name="nosuch", tail=5, region=None)
        assert await asyncio.to_thread(logs_command.main, endpoint, args) == 1
        assert "no function named 'nosuch'" in capsys.readouterr().err
    finally:
        await runner.cleanup()


async def test_take_outside_and_begin_is_take_outside_then_begin(tmp_path: Path) -> None:
    capture = OutputCapture(FunctionLog(tmp_path, "us-east-1", "f"))
    writer = os.dup(capture.write_fd)
    capture.writer_sent()
    try:
        os.write(writer, b"init line\n")
        assert capture.take_outside_and_begin("r-1") == "init line\n"
        os.write(writer, b"during r-1\n")
        assert capture.end() == "during r-1\n"
        assert capture.take_outside() == ""
    finally:
        os.close(writer)
        capture.close()
