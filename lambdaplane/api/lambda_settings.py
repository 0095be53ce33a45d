"""Lambda operations tools call around a function: tags, code signing config reads (none
here), runtime management and recursion config, and the empty answers for provisioned
concurrency and event source mapping lists. Registered in LambdaApi's handler table by
`handlers`; the rules are service/function_settings.py's."""
from __future__ import annotations

from typing import Any

from ..errors import AwsError, ResourceNotFound


def handlers(api: Any) -> dict[str, Any]:
    """name → handler(call, params), bound to a LambdaApi."""

    def functions() -> Any:
        return api.platform.functions

    def settings() -> Any:
        return functions().tags_and_settings

    async def tag_resource(call: Any, p: dict[str, Any]) -> dict[str, Any]:
        await settings().tag(call.region, p["Resource"], p["Tags"])
        return {}

    async def untag_resource(call: Any, p: dict[str, Any]) -> dict[str, Any]:
        await settings().untag(call.region, p["Resource"], p["TagKeys"])
        return {}

    async def list_tags(call: Any, p: dict[str, Any]) -> dict[str, Any]:
        return {"Tags": settings().list_tags(call.region, p["Resource"])}

    async def get_code_signing(call: Any, p: dict[str, Any]) -> dict[str, Any]:
        return settings().code_signing(call.region, p["FunctionName"])

    async def delete_code_signing(call: Any, p: dict[str, Any]) -> dict[str, Any]:
        settings().code_signing(call.region, p["FunctionName"])  # the function must exist
        return {}

    async def list_code_signing(call: Any, p: dict[str, Any]) -> dict[str, Any]:
        return {"CodeSigningConfigs": []}

    async def no_code_signing_config(call: Any, p: dict[str, Any]) -> dict[str, Any]:
        raise ResourceNotFound(f"The code signing configuration cannot be found. Check that "
                               f"the provided configuration is not deleted: "
                               f"{p.get('CodeSigningConfigArn', '')}")

    async def get_runtime_management(call: Any, p: dict[str, Any]) -> dict[str, Any]:
        return settings().runtime_management(call.region, p["FunctionName"], p.get("Qualifier"))

    async def put_runtime_management(call: Any, p: dict[str, Any]) -> dict[str, Any]:
        return settings().put_runtime_management(call.region, p["FunctionName"],
                                                 p.get("Qualifier"), p["UpdateRuntimeOn"],
                                                 p.get("RuntimeVersionArn"))

    async def get_recursion(call: Any, p: dict[str, Any]) -> dict[str, Any]:
        return {"RecursiveLoop": settings().recursion(call.region, p["FunctionName"])}

    async def put_recursion(call: Any, p: dict[str, Any]) -> dict[str, Any]:
        return {"RecursiveLoop": settings().put_recursion(call.region, p["FunctionName"],
                                                          p["RecursiveLoop"])}

    async def list_provisioned(call: Any, p: dict[str, Any]) -> dict[str, Any]:
        functions().get(call.region, p["FunctionName"])
        return {"ProvisionedConcurrencyConfigs": []}

    async def get_provisioned(call: Any, p: dict[str, Any]) -> dict[str, Any]:
        functions().get(call.region, p["FunctionName"], p.get("Qualifier"))
        raise AwsError("ProvisionedConcurrencyConfigNotFoundException",
                       "No Provisioned Concurrency Config found for this function", 404)

    async def list_event_source_mappings(call: Any, p: dict[str, Any]) -> dict[str, Any]:
        if p.get("FunctionName"):
            functions().get(call.region, p["FunctionName"])
        return {"EventSourceMappings": []}

    return {"TagResource": tag_resource, "UntagResource": untag_resource,
            "ListTags": list_tags, "GetFunctionCodeSigningConfig": get_code_signing,
            "DeleteFunctionCodeSigningConfig": delete_code_signing,
            "ListCodeSigningConfigs": list_code_signing,
            "GetCodeSigningConfig": no_code_signing_config,
            "ListFunctionsByCodeSigningConfig": no_code_signing_config,
            "GetRuntimeManagementConfig": get_runtime_management,
            "PutRuntimeManagementConfig": put_runtime_management,
            "GetFunctionRecursionConfig": get_recursion,
            "PutFunctionRecursionConfig": put_recursion,
            "ListProvisionedConcurrencyConfigs": list_provisioned,
            "GetProvisionedConcurrencyConfig": get_provisioned,
            "ListEventSourceMappings": list_event_source_mappings}


def permission_handlers(api: Any) -> dict[str, Any]:
    """AddPermission / RemovePermission / GetPolicy (service/permissions.py)."""
    import json

    def permissions() -> Any:
        return api.platform.functions.permissions

    async def add_permission(call: Any, p: dict[str, Any]) -> dict[str, Any]:
        statement = permissions().add(call.region, p["FunctionName"], p)
        return {"Statement": json.dumps(statement, separators=(",", ":"))}

    async def remove_permission(call: Any, p: dict[str, Any]) -> dict[str, Any]:
        permissions().remove(call.region, p["FunctionName"], p["StatementId"],
                             p.get("Qualifier"), p.get("RevisionId"))
        return {}

    async def get_policy(call: Any, p: dict[str, Any]) -> dict[str, Any]:
        policy, revision = permissions().get(call.region, p["FunctionName"], p.get("Qualifier"))
        return {"Policy": policy, "RevisionId": revision}

    return {"AddPermission": add_permission, "RemovePermission": remove_permission,
            "GetPolicy": get_policy}
