"""/_lambdaplane/…: the server's own endpoints for the CLI and tests (health, status, logs,
reconcile; run/ps/net through api/vpc_admin.py). Not part of any AWS API."""
from __future__ import annotations

from aiohttp import web


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

    app.router.add_get("/_lambdaplane/logs/{region}/{name}", function_logs)
