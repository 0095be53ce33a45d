"""/_lambdaplane/…: the server's own endpoints for the CLI and tests (health, status, logs,
reconcile; run/ps/net through api/vpc_admin.py). Not part of any AWS API."""
from __future__ import annotations

import asyncio
import contextlib

from aiohttp import web

from ..errors import AwsError


def add_routes(app: web.Application, platform: object) -> None:
    async def health(_request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app.router.add_get("/_lambdaplane/health", health)

    async def status(_request: web.Request) -> web.Response:
        p = platform  # type: ignore[assignment]
        return web.json_response({
            "instance": f"lp{p.names.instance}",  # type: ignore[attr-defined]
            "data_dir": str(p.settings.data_dir),  # type: ignore[attr-defined]
            "vpc_mode": p.settings.vpc_mode,  # type: ignore[attr-defined]
            "uplink": p.settings.uplink,  # type: ignore[attr-defined]
            "functions": p.functions.store.count_by_region(),  # type: ignore[attr-defined]
            "execution": p.environments.stats(),  # type: ignore[attr-defined]
            "healing": p.kernel_watch.stats(),  # type: ignore[attr-defined]
        })

    app.router.add_get("/_lambdaplane/status", status)

    async def reconcile_all(_request: web.Request) -> web.Response:
        """Every reconciler once: {component: [changes]}; none when the kernel matches."""
        return web.json_response({"changes": await platform.reconcile()})  # type: ignore[attr-defined]

    app.router.add_post("/_lambdaplane/reconcile", reconcile_all)

    from .vpc_admin import add_admin_routes  # run / ps / net (VPC resources)
    add_admin_routes(app, platform)

    async def function_logs(request: web.Request) -> web.Response:
        """The last `tail` lines of a function's log (empty if it never ran); 404 with a
        message for a function that does not exist."""
        from ..sandbox.logs import tail_lines

        region, name = request.match_info["region"], request.match_info["name"]
        if platform.functions.store.get(region, name) is None:  # type: ignore[attr-defined]
            return web.json_response(
                {"code": "ResourceNotFoundException",
                 "message": f"no function named {name!r} in region {region}"}, status=404)
        try:
            tail = int(request.query.get("tail", "200"))
            lines = tail_lines(platform.settings.data_dir, request.match_info["region"],  # type: ignore[attr-defined]
                               request.match_info["name"], tail)
        except ValueError:
            return web.json_response({"message": "invalid region, name or tail"}, status=400)
        return web.json_response({"lines": lines or []})

    async def function_logs_from_store(request: web.Request) -> web.StreamResponse:
        """The function's log group in the Logs store, when it has one: `tail` lines, or with
        `after` (the `next` of an earlier answer) what was written since — `logs -f`."""
        region, name = request.match_info["region"], request.match_info["name"]
        logs = getattr(platform, "logs", None)
        # source=file: the per-function file, written synchronously at each invocation's end
        # (the store is fed from a queue: a SIGKILL can lose its last milliseconds)
        if logs is None or request.query.get("source") == "file":
            return await function_logs(request)
        try:
            tail = int(request.query.get("tail", "200"))
            group = f"/aws/lambda/{name}"
            with contextlib.suppress(AwsError):
                record = platform.functions.get(region, name)  # type: ignore[attr-defined]
                group = record.logging_config.get("LogGroup") or group
            await asyncio.to_thread(logs.ingest.flush, 2.0)
            found = logs.function_lines(region, group, tail, request.query.get("after"))
        except (ValueError, AwsError):
            return web.json_response({"message": "invalid region, name, tail or after"},
                                     status=400)
        if found is None:  # nothing in the store (yet): the file, as before
            return await function_logs(request)
        lines, after = found
        return web.json_response({"lines": lines, "next": after, "group": group})

    app.router.add_get("/_lambdaplane/logs/{region}/{name}", function_logs_from_store)
