"""Lambda operations on versions and aliases (PublishVersion, ListVersionsByFunction,
Create/Get/Update/Delete/ListAliases): parameters in, shapes out. Registered in LambdaApi's
handler table by `handlers`; the rules are service/versions.py's and service/aliases.py's."""
from __future__ import annotations

from typing import Any

from ..store.versions import AliasRecord


def alias_configuration(alias: AliasRecord) -> dict[str, Any]:
    out: dict[str, Any] = {"AliasArn": alias.arn, "Name": alias.name,
                           "FunctionVersion": alias.function_version,
                           "Description": alias.description, "RevisionId": alias.revision_id}
    if alias.weights:
        out["RoutingConfig"] = {"AdditionalVersionWeights": dict(alias.weights)}
    return out


def handlers(api: Any) -> dict[str, Any]:
    """name → handler(call, params), bound to a LambdaApi."""
    from .lambda_api import configuration

    def functions() -> Any:
        return api.platform.functions

    async def publish_version(call: Any, p: dict[str, Any]) -> dict[str, Any]:
        record = await functions().versions.publish(
            call.region, p["FunctionName"], p.get("CodeSha256"), p.get("Description"),
            p.get("RevisionId"))
        return configuration(record)

    async def list_versions(call: Any, p: dict[str, Any]) -> dict[str, Any]:
        page, marker = functions().versions.page(call.region, p["FunctionName"],
                                                 p.get("Marker"), p.get("MaxItems"))
        return {"Versions": [configuration(r) for r in page], "NextMarker": marker}

    async def create_alias(call: Any, p: dict[str, Any]) -> dict[str, Any]:
        return alias_configuration(functions().aliases.create(
            call.region, p["FunctionName"], p["Name"], p["FunctionVersion"],
            p.get("Description", ""), p.get("RoutingConfig")))

    async def get_alias(call: Any, p: dict[str, Any]) -> dict[str, Any]:
        return alias_configuration(functions().aliases.get(call.region, p["FunctionName"],
                                                           p["Name"]))

    async def update_alias(call: Any, p: dict[str, Any]) -> dict[str, Any]:
        return alias_configuration(functions().aliases.update(call.region, p["FunctionName"],
                                                              p["Name"], p))

    async def delete_alias(call: Any, p: dict[str, Any]) -> dict[str, Any]:
        functions().aliases.delete(call.region, p["FunctionName"], p["Name"])
        return {}

    async def list_aliases(call: Any, p: dict[str, Any]) -> dict[str, Any]:
        page, marker = functions().aliases.page(call.region, p["FunctionName"],
                                                p.get("FunctionVersion"), p.get("Marker"),
                                                p.get("MaxItems"))
        return {"Aliases": [alias_configuration(a) for a in page], "NextMarker": marker}

    return {"PublishVersion": publish_version, "ListVersionsByFunction": list_versions,
            "CreateAlias": create_alias, "GetAlias": get_alias, "UpdateAlias": update_alias,
            "DeleteAlias": delete_alias, "ListAliases": list_aliases}
