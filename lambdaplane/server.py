"""One `lambdaplane serve` process: builds its components from the settings, wires the HTTP
endpoint (Lambda REST-JSON, EC2 Query, /_lambdaplane admin), starts them in order and stops
them in reverse, so that after a stop nothing the server made remains in the kernel.

By default that is every component, the data plane included (local sandboxes: the worker
netns, the zygotes, ExecutionEnvironments; the Hyperplane ENIs or the legacy attachment; the
kernel watch). With `--no-data-plane` it builds the API side only (the VPC, function, invoke,
IAM, logs and flow-log services) and, in place of ExecutionEnvironments, a forwarding
environments object (service/remote_environments.py) that hands every invoke to an agent
(agent.py)."""
from __future__ import annotations

import asyncio
import gc
import ipaddress
import logging
import os

from aiohttp import web

from . import datadir_lock
from .config import Settings
from .net.executor import NetThread
from .net.names import Names
from .store.db import Database, DatabaseUnavailable
from .tasks import until_stop_signal

log = logging.getLogger("lambdaplane")


class Platform:
    """Holds the running components; handlers reach services through it."""

    def __init__(self, settings: Settings) -> None:
        # Imported here so every store module has registered its tables before Database.open.
        from .sandbox.environments import ExecutionEnvironments
        from .service.flow_logs import FlowLogs
        from .service.functions import FunctionService
        from .service.hyperplane import HyperplaneService
        from .service.iam import IamService
        from .service.invoke import Invoker
        from .service.vpc import VpcService
        from .service.vpc_config import validate_vpc_config

        self.settings = settings
        self.names = Names(settings.ensure_instance())
        self.net = NetThread()
        from .service.host_internet import HostInternet, adopt
        # no --internet-netns, uplink on: the VPC gateways' internet is the host's uplink
        self.host_internet = HostInternet(settings, self.names, self.net) \
            if adopt(settings, self.names) else None
        self.db = Database.open(settings.data_dir, settings.database or None)
        self.vpc = VpcService(settings, self.names, self.db, self.net)
        if settings.no_data_plane:  # agents run the functions (service/remote_environments.py)
            from .service.remote_environments import RemoteEnvironments
            self.environments = RemoteEnvironments(settings, self.db)  # type: ignore[assignment]
        else:
            self.environments = ExecutionEnvironments(settings, self.names, self.net)
        self.functions = FunctionService(settings, self.db, self.environments)
        self.invoker = Invoker(settings, self.db, self.functions, self.environments)
        self.functions.vpc_validator = \
            lambda region, config: validate_vpc_config(self.vpc, region, config).vpc_id
        self.functions.vpc_etc_files = self.vpc.vpc_etc_files
        self.iam = IamService(settings, self.db)  # roles and policies (durable, no kernel)
        self.functions.role_validator = self.iam.check_lambda_role
        if settings.s3_endpoint:
            from .service.s3_code import S3CodeSource
            self.functions.s3_code = S3CodeSource(settings.s3_endpoint)
            self.functions.layers.s3_code = self.functions.s3_code  # layer content too
        # start order; stop is the reverse
        self._components = [self.vpc, self.environments, self.functions, self.invoker]
        if settings.vpc_mode == "legacy":
            from .service.legacy import LegacyVpc
            self.legacy = LegacyVpc(settings, self.names, self.net, self.vpc, self.functions)
            self.functions.network = self.legacy
            self.environments.vpc_attacher = self.legacy
            # before environments: their stop detaches every environment while legacy runs
            self._components.insert(1, self.legacy)
        else:
            self.hyperplane = HyperplaneService(settings, self.names, self.db, self.net,
                                                self.vpc, self.functions)
            self.functions.network = self.hyperplane
            self.environments.vpc_attacher = self.hyperplane
            # after the worker netns exists (steering, transits), before functions settle
            self._components.insert(2, self.hyperplane)
        if self.host_internet is not None:  # before the VPCs link into it, stopped after
            self._components.insert(0, self.host_internet)
            self.vpc.reconciler.internet_repair = self.host_internet.reconcile
        # CloudWatch Logs: started first and stopped last, so environments' output is written
        from .service.logs import LogsService
        self.logs = LogsService(settings)
        self.environments.log_ingest = self.logs.ingest
        self._components.insert(0, self.logs)
        # VPC flow logs: records from the VPC namespaces' kernels into the Logs API's groups;
        # the collector starts last and stops first (before the VPC namespaces go)
        from .service.flow_collector import FlowCollector
        self.vpc.flow_logs = FlowLogs(self.db, settings.account_id)  # type: ignore[attr-defined]
        self.flow_collector = FlowCollector(
            self.names, self.vpc.flow_logs, self.logs,  # type: ignore[attr-defined]
            settings.flow_log_interval_s)
        self._components.append(self.flow_collector)
        # the kernel objects the server lives on, looked at every second and rebuilt when they
        # vanish under it; started last, stopped first (service/kernel_watch.py)
        from .service.kernel_watch import KernelWatch
        self.kernel_watch = KernelWatch(
            self.names, self.net, self.environments, self._repair_drift,
            self.vpc.reconciler.reconcile_worker,
            lambda: {self.names.vpc_netns(v.id) for v in self.vpc.store.vpcs()},
            hyperplane=settings.vpc_mode != "legacy")
        self._components.append(self.kernel_watch)
        if settings.no_data_plane:
            self._without_data_plane()

    def _without_data_plane(self) -> None:
        """serve --no-data-plane: nothing that needs local sandboxes or the worker namespace
        starts (the Hyperplane ENIs, the legacy VPC attachment, the kernel watch); invokes go to
        agents, with the function's code zip when an agent lacks it."""
        self.environments.code_zip = self.functions.code_zip  # type: ignore[attr-defined]
        self.environments.after_sweep = (  # type: ignore[attr-defined]
            self.vpc.interfaces.release_on_gone_hosts)
        self.functions.network = None
        if self.settings.vpc_mode != "legacy":  # the ENIs' store half; agents the kernel half
            from .service.hyperplane_records import HyperplaneRecords
            self.functions.network = HyperplaneRecords(self.db, self.vpc, self.functions)
        self.environments.vpc_attacher = None
        for name in ("hyperplane", "legacy", "kernel_watch"):
            component = getattr(self, name, None)
            if component in self._components:
                self._components.remove(component)

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

    async def _repair_drift(self) -> list[str]:
        """What the drift-repair timer runs (service/hyperplane.py, service/legacy.py), now."""
        if self.settings.vpc_mode != "legacy":
            return await self.hyperplane.repair()
        return await self.legacy.reconcile()

    async def reconcile(self) -> dict[str, list[str]]:
        """Run every component's reconciler once (those that have one); what each changed.
        A second call right after must change nothing (tests/faults check it)."""
        changes: dict[str, list[str]] = {}
        for component in self._components:
            run = getattr(component, "reconcile", None)
            if run is not None:
                changes[type(component).__name__] = list(await run())
        return changes


def build_app(platform: Platform) -> web.Application:
    from . import metrics
    from .api import admin_api, ec2_api, function_urls, gateways_admin, lambda_api

    app = web.Application(client_max_size=8 * 1024 * 1024)
    app["platform"] = platform
    admin_api.add_routes(app, platform)
    lambda_api.add_routes(app, platform)
    ec2_api.add_routes(app, platform)
    from .api import iam_api, logs_api, sts_api  # services on POST / (api/dispatch.py)
    iam_api.add_routes(app, platform)
    sts_api.add_routes(app, platform)
    logs_api.add_routes(app, platform)
    gateways_admin.add_routes(app, platform)  # GET /_lambdaplane/net/routing
    metrics.add_routes(app, platform)  # GET /metrics (Prometheus); instruments the invoker
    if platform.settings.auth == "sigv4":
        from .api import auth
        assert platform.settings.credentials_file is not None
        auth.install(app, platform.settings.credentials_file)
    from .console import routes as console
    console.install(app, platform)  # ahead of SigV4: browsers log in to it (console/routes.py)
    function_urls.install(app, platform)  # first: URLs have their own AuthType
    return app


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def serve(settings: Settings) -> None:
    if os.geteuid() != 0:
        raise SystemExit("lambdaplane serve must run as root: it creates network namespaces, "
                         "veth links, nftables tables and cgroups for the sandboxes.")
    if settings.auth == "sigv4":
        from .api.auth import CredentialsError, load_credentials
        try:
            load_credentials(settings.credentials_file)  # type: ignore[arg-type]
        except CredentialsError as e:
            raise SystemExit(f"lambdaplane serve: {e}") from None
    try:  # before anything of the data dir or the kernel is touched
        data_lock = datadir_lock.acquire(settings.data_dir, "serve")
    except datadir_lock.DataDirBusy as e:
        raise SystemExit(f"lambdaplane serve: {e}") from None
    try:
        platform = Platform(settings)
        await platform.start()
    except DatabaseUnavailable as e:
        data_lock.release()
        raise SystemExit(f"lambdaplane serve: {e}") from None
    except BaseException:
        data_lock.release()
        raise
    from .api.invoke_front import InvokeFront
    from .api.lambda_api import LAMBDA_API
    app = build_app(platform)
    runner = web.AppRunner(app, access_log=None)
    front = None
    listening = None
    try:
        await runner.setup()
        assert runner.server is not None
        # Invoke through a lean HTTP/1.1 reader, every other request through aiohttp
        front = InvokeFront(app[LAMBDA_API], runner.server, fast_path=settings.auth == "none")
        listening = await asyncio.get_running_loop().create_server(
            front.protocol, settings.host, settings.port, reuse_address=True, backlog=128)
        # What the start made lives as long as the server: out of the collector's full
        # passes, which walked it for ~70 ms every few seconds under load (docs/warm-path.md)
        gc.collect()
        gc.freeze()
        if settings.auth == "none" and not _loopback(settings.host):
            log.warning("!!! serving on %s WITHOUT AUTHENTICATION: anyone who reaches this "
                        "address can run code in this host's sandboxes and change its VPCs. "
                        "Restart with --auth sigv4 --credentials FILE. !!!", settings.host)
        log.info("lambdaplane listening on http://%s:%d (instance lp%s, data %s)",
                 settings.host, settings.port, platform.names.instance, settings.data_dir)
        print(f"lambdaplane ready on http://{settings.host}:{settings.port}", flush=True)
        await until_stop_signal()
        log.info("stopping")
    finally:
        if listening is not None:
            listening.close()
        if front is not None:
            front.close()
        await runner.cleanup()
        await platform.stop()
        data_lock.release()


# Modules the server imports lazily (client commands start faster without them), imported by
# `serve` before its event loop runs: an import on the loop holds it for tens to hundreds of
# ms (found by the loop-blocking test mode, lambdaplane/loop_debug.py).
_SERVE_MODULES = (
    "sandbox.environments", "service.functions", "service.hyperplane", "service.iam",
    "service.invoke", "service.vpc", "service.vpc_config", "service.flow_logs",
    "service.s3_code", "service.legacy", "service.logs", "service.flow_collector", "metrics",
    "nat_metrics", "data_dir_usage", "net.hyperplane.counters", "api.admin_api", "api.ec2_api",
    "api.function_urls", "api.gateways_admin", "api.lambda_api", "api.iam_api", "api.logs_api",
    "api.sts_api", "api.auth", "api.dispatch", "console.routes")
_SERVE_MODULES += ("service.remote_environments",)  # serve --no-data-plane


def preload_modules() -> None:
    """And a thread that loads the botocore service models the API reads (the first request
    of a service loaded its model on the loop: 0.2 to 1.7 s of CPU on a busy host)."""
    import importlib
    import threading

    for name in _SERVE_MODULES:
        importlib.import_module(f"{__package__}.{name}")
    threading.Thread(target=_load_service_models, name="lp-models", daemon=True).start()


def _load_service_models() -> None:
    from .api import dispatch, logs_api, query_protocol, query_xml, wire

    wire.lambda_model()
    query_xml.ec2_model()
    logs_api.logs_model()
    dispatch.catalog()
    for service in ("iam", "sts"):
        query_protocol.service_model(service)
