"""/_lambdaplane/…: the server's own endpoints for the CLI and tests (health, logs, ps, net,
status). Not part of any AWS API."""
from __future__ import annotations

from aiohttp import web


def add_routes(app: web.Application, platform: object) -> None:
    async def health(_request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app.router.add_get("/_lambdaplane/health", health)
