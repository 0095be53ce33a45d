"""GET /_lambdaplane/net/routing: route tables, gateways and each subnet's way out (with
why and the fix), for `lambdaplane net show` (service/internet_paths.py); with the host
uplink as the gateways' internet, its refusal counters too."""
from __future__ import annotations

from typing import Any

from aiohttp import web

from ..service.internet_paths import routing_tree


def add_routes(app: web.Application, platform: Any) -> None:
    async def routing(_request: web.Request) -> web.Response:
        tree = routing_tree(platform.vpc)
        uplink = getattr(platform, "host_internet", None)  # service/host_internet.py
        if uplink is not None:
            tree["uplink_counters"] = {name: {"packets": r.packets, "bytes": r.bytes}
                                       for name, r in (await uplink.counters()).items()}
        return web.json_response(tree)

    app.router.add_get("/_lambdaplane/net/routing", routing)
