"""/_lambdaplane/…: the server's own endpoints for the CLI and tests (health, logs, ps, net,
status). Not part of any AWS API."""
from __future__ import annotations

from aiohttp import web


def add_routes(app: web.Application, platform: object) -> None:
    async def health(_request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app.router.add_get("/_lambdaplane/health", health)

    from .vpc_admin import add_admin_routes  # run / ps / net (VPC resources)
    add_admin_routes(app, platform)

    async def function_logs(request: web.Request) -> web.Response:
        """The last `tail` lines of a function's log (empty if it never ran)."""
        from ..sandbox.logs import tail_lines

        try:
            tail = int(request.query.get("tail", "200"))
            lines = tail_lines(platform.settings.data_dir, request.match_info["region"],  # type: ignore[attr-defined]
                               request.match_info["name"], tail)
        except ValueError:
            return web.json_response({"message": "invalid region, name or tail"}, status=400)
        return web.json_response({"lines": lines or []})

    app.router.add_get("/_lambdaplane/logs/{region}/{name}", function_logs)
