"""The Lambda API's asynchronous invocation configuration operations
(Put/Update/Get/Delete/ListFunctionEventInvokeConfigs): thin handlers from parsed parameters to
service/event_invoke_config.py and back. api/lambda_api.py routes to them."""
from __future__ import annotations

from typing import Any

from ..service.event_invoke_config import configuration


def event_invoke_config_handlers(platform: Any) -> dict[str, Any]:
    """Operation name → handler, for LambdaApi's table (the platform is looked into only
    when an operation runs)."""
    def configs() -> Any:
        return platform.functions.event_invoke_configs

    async def put(call: Any, p: dict[str, Any]) -> dict[str, Any]:
        return configuration(configs().put(call.region, p))

    async def update(call: Any, p: dict[str, Any]) -> dict[str, Any]:
        return configuration(configs().update(call.region, p))

    async def get(call: Any, p: dict[str, Any]) -> dict[str, Any]:
        return configuration(configs().get(call.region, p["FunctionName"], p.get("Qualifier")))

    async def delete(call: Any, p: dict[str, Any]) -> dict[str, Any]:
        configs().delete(call.region, p["FunctionName"], p.get("Qualifier"))
        return {}

    async def list_configs(call: Any, p: dict[str, Any]) -> dict[str, Any]:
        page, marker = configs().list(call.region, p["FunctionName"], p.get("Marker"),
                                    p.get("MaxItems"))
        return {"FunctionEventInvokeConfigs": [configuration(c) for c in page],
                "NextMarker": marker}

    return {"PutFunctionEventInvokeConfig": put,
            "UpdateFunctionEventInvokeConfig": update,
            "GetFunctionEventInvokeConfig": get,
            "DeleteFunctionEventInvokeConfig": delete,
            "ListFunctionEventInvokeConfigs": list_configs}
