"""GET /_lambdaplane/net/routing: route tables, gateways and each subnet's way out (with
why and the fix), for `lambdaplane net show` (service/internet_paths.py)."""
from __future__ import annotations

from typing import Any

from aiohttp import web

from ..service.internet_paths import routing_tree


def add_routes(app: web.Application, platform: Any) -> None:
    async def routing(_request: web.Request) -> web.Response:
        return web.json_response(routing_tree(platform.vpc))

    app.router.add_get("/_lambdaplane/net/routing", routing)
