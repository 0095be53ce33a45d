"""An in-process Lambda endpoint for unit tests: the real API, function service, invoker and
SQLite store, with execution replaced by `FakeEnvironments` (no kernel objects, no root).
The app runs on its own event loop in a thread so a boto3 client can call it."""
from __future__ import annotations

import asyncio
import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import botocore.config
from aiohttp import web

from lambdaplane.api import lambda_api
from lambdaplane.config import Settings
from lambdaplane.sandbox.types import FunctionSpec, Invocation, InvocationResult
from lambdaplane.service.functions import FunctionService
from lambdaplane.service.invoke import Invoker
from lambdaplane.store.db import Database
from tests.harness import free_port


class FakeEnvironments:
    """Runs nothing: answers from the event. {"fail": true} fails, {"hold": true} waits for
    `release` (to hold concurrency), {"big": N} answers N bytes, otherwise echoes."""

    def __init__(self) -> None:
        self.invocations: list[tuple[FunctionSpec, Invocation]] = []
        self.retired: list[tuple[str, str]] = []
        self.release = asyncio.Event()
        self.fail_first: int = 0  # fail this many invocations, then succeed

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def invoke(self, spec: FunctionSpec, inv: Invocation) -> InvocationResult:
        self.invocations.append((spec, inv))
        event = json.loads(inv.payload)
        log = f"START RequestId: {inv.request_id}\nhello from {spec.name}\n" \
              f"END RequestId: {inv.request_id}\n"
        if isinstance(event, dict) and event.get("hold"):
            await self.release.wait()
        if isinstance(event, dict) and event.get("big"):
            return InvocationResult(b'"' + b"x" * event["big"] + b'"', log_text=log)
        if self.fail_first > 0 or (isinstance(event, dict) and event.get("fail")):
            self.fail_first = max(0, self.fail_first - 1)
            body = {"errorMessage": "boom", "errorType": "Exception", "stackTrace": []}
            return InvocationResult(json.dumps(body).encode(), function_error="Unhandled",
                                    error_type="Exception", log_text=log)
        return InvocationResult(json.dumps({"echo": event, "env": spec.environment}).encode(),
                                log_text=log)

    def in_flight(self, key: tuple[str, str]) -> int:
        return 0

    def total_in_flight(self) -> int:
        return 0

    async def retire(self, key: tuple[str, str]) -> None:
        self.retired.append(key)


@dataclass
class FakePlatform:
    settings: Settings
    db: Database
    environments: FakeEnvironments
    functions: FunctionService
    invoker: Invoker


@dataclass
class InProcessLambda:
    """A running endpoint; `restart()` keeps the data dir, like a server restart."""
    data_dir: Path
    settings_overrides: dict[str, Any] = field(default_factory=dict)
    port: int = 0
    platform: FakePlatform | None = None
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _runner: web.AppRunner | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self.call(self._start())

    def stop(self) -> None:
        if self._loop is None:
            return
        self.call(self._stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        assert self._thread is not None
        self._thread.join(5)
        self._loop.close()
        self._loop = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def call(self, coro: Any, timeout: float = 30.0) -> Any:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def client(self, region: str = "us-east-1", **config: Any):
        cfg = botocore.config.Config(retries={"max_attempts": 1}, read_timeout=30, **config)
        return boto3.client("lambda", endpoint_url=self.endpoint, region_name=region,
                            aws_access_key_id="test", aws_secret_access_key="test", config=cfg)

    async def _start(self) -> None:
        settings = Settings(data_dir=self.data_dir, port=self.port, instance="uts",
                            **self.settings_overrides)
        db = Database.open(settings.data_dir, settings.database or None)
        environments = FakeEnvironments()
        functions = FunctionService(settings, db, environments)
        invoker = Invoker(settings, db, functions, environments)
        self.platform = FakePlatform(settings, db, environments, functions, invoker)
        await functions.start()
        await invoker.start()
        app = web.Application()
        lambda_api.add_routes(app, self.platform)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def _stop(self) -> None:
        assert self._runner is not None and self.platform is not None
        await self._runner.cleanup()
        await self.platform.invoker.stop()
        await self.platform.functions.stop()
        self.platform.db.close()
