"""One `lambdaplane serve` process: builds every component from the settings, wires the HTTP
endpoint (Lambda REST-JSON, EC2 Query, /_lambdaplane admin), starts them in order and stops
them in reverse, so that after a stop nothing the server made remains in the kernel."""
from __future__ import annotations

import asyncio
import logging
import os
import signal

from aiohttp import web

from .config import Settings
from .net.executor import NetThread
from .net.names import Names
from .store.db import Database

log = logging.getLogger("lambdaplane")


class Platform:
    """Holds the running components; handlers reach services through it."""

    def __init__(self, settings: Settings) -> None:
        # Imported here so every store module has registered its tables before Database.open.
        from .sandbox.environments import ExecutionEnvironments
        from .service.functions import FunctionService
        from .service.invoke import Invoker
        from .service.vpc import VpcService

        self.settings = settings
        self.names = Names(settings.ensure_instance())
        self.net = NetThread()
        self.db = Database.open(settings.data_dir)
        self.vpc = VpcService(settings, self.names, self.db, self.net)
        self.environments = ExecutionEnvironments(settings, self.names, self.net)
        self.functions = FunctionService(settings, self.db, self.environments)
        self.invoker = Invoker(settings, self.db, self.functions, self.environments)
        # start order; stop is the reverse
        self._components = [self.vpc, self.environments, self.functions, self.invoker]

    async def start(self) -> None:
        started = []
        try:
            for component in self._components:
                await component.start()
                started.append(component)
        except BaseException:
            for component in reversed(started):
                await component.stop()
            raise

    async def stop(self) -> None:
        for component in reversed(self._components):
            try:
                await component.stop()
            except Exception:  # keep stopping the rest; report what failed
                log.exception("stopping %s failed", type(component).__name__)
        self.net.close()
        self.db.close()


def build_app(platform: Platform) -> web.Application:
    from .api import admin_api, ec2_api, lambda_api

    app = web.Application(client_max_size=8 * 1024 * 1024)
    app["platform"] = platform
    admin_api.add_routes(app, platform)
    lambda_api.add_routes(app, platform)
    ec2_api.add_routes(app, platform)
    return app


async def serve(settings: Settings) -> None:
    if os.geteuid() != 0:
        raise SystemExit("lambdaplane serve must run as root: it creates network namespaces, "
                         "veth links, nftables tables and cgroups for the sandboxes.")
    platform = Platform(settings)
    await platform.start()
    runner = web.AppRunner(build_app(platform), access_log=None)
    try:
        await runner.setup()
        site = web.TCPSite(runner, settings.host, settings.port, reuse_address=True)
        await site.start()
        if settings.host not in ("127.0.0.1", "localhost", "::1"):
            log.warning("serving on %s without authentication: anyone who reaches this "
                        "address can run code as this host's sandboxes", settings.host)
        log.info("lambdaplane listening on http://%s:%d (instance lp%s, data %s)",
                 settings.host, settings.port, platform.names.instance, settings.data_dir)
        print(f"lambdaplane ready on http://{settings.host}:{settings.port}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        log.info("stopping")
    finally:
        await runner.cleanup()
        await platform.stop()
