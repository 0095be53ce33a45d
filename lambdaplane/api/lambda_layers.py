"""The Lambda API's layer operations (PublishLayerVersion, Get/List/Delete of layer versions,
layer version permissions): thin handlers from parsed parameters to service/layers.py and back
to the operations' output shapes. api/lambda_api.py routes to them."""
from __future__ import annotations

import json
from typing import Any

from ..store.layers import LayerVersionRecord


def layer_handlers(platform: Any) -> dict[str, Any]:
    """Operation name → handler, for LambdaApi's table."""
    return LayerHandlers(platform).table()


class LayerHandlers:
    def __init__(self, platform: Any) -> None:
        self.platform = platform

    @property
    def layers(self) -> Any:
        return self.platform.functions.layers

    def table(self) -> dict[str, Any]:
        return {
            "PublishLayerVersion": self.publish_layer_version,
            "GetLayerVersion": self.get_layer_version,
            "GetLayerVersionByArn": self.get_layer_version_by_arn,
            "ListLayers": self.list_layers,
            "ListLayerVersions": self.list_layer_versions,
            "DeleteLayerVersion": self.delete_layer_version,
            "AddLayerVersionPermission": self.add_layer_version_permission,
            "RemoveLayerVersionPermission": self.remove_layer_version_permission,
            "GetLayerVersionPolicy": self.get_layer_version_policy,
        }

    async def publish_layer_version(self, call: Any, p: dict[str, Any]) -> dict[str, Any]:
        return _version(await self.layers.publish(call.region, p), call)

    async def get_layer_version(self, call: Any, p: dict[str, Any]) -> dict[str, Any]:
        return _version(self.layers.get(call.region, p["LayerName"], p["VersionNumber"]), call)

    async def get_layer_version_by_arn(self, call: Any, p: dict[str, Any]) -> dict[str, Any]:
        return _version(self.layers.get_by_arn(call.region, p["Arn"]), call)

    async def list_layers(self, call: Any, p: dict[str, Any]) -> dict[str, Any]:
        page, marker = self.layers.list_layers(
            call.region, p.get("CompatibleRuntime"), p.get("CompatibleArchitecture"),
            p.get("Marker"), p.get("MaxItems"))
        return {"Layers": [{"LayerName": r.name, "LayerArn": r.layer_arn,
                            "LatestMatchingVersion": _list_item(r)} for r in page],
                "NextMarker": marker}

    async def list_layer_versions(self, call: Any, p: dict[str, Any]) -> dict[str, Any]:
        page, marker = self.layers.list_versions(
            call.region, p["LayerName"], p.get("CompatibleRuntime"),
            p.get("CompatibleArchitecture"), p.get("Marker"), p.get("MaxItems"))
        return {"LayerVersions": [_list_item(r) for r in page], "NextMarker": marker}

    async def delete_layer_version(self, call: Any, p: dict[str, Any]) -> dict[str, Any]:
        self.layers.delete(call.region, p["LayerName"], p["VersionNumber"])
        return {}

    async def add_layer_version_permission(self, call: Any, p: dict[str, Any]
                                           ) -> dict[str, Any]:
        statement, revision = self.layers.add_permission(call.region, p["LayerName"],
                                                         p["VersionNumber"], p)
        return {"Statement": json.dumps(statement), "RevisionId": revision}

    async def remove_layer_version_permission(self, call: Any, p: dict[str, Any]
                                              ) -> dict[str, Any]:
        self.layers.remove_permission(call.region, p["LayerName"], p["VersionNumber"],
                                      p["StatementId"], p.get("RevisionId"))
        return {}

    async def get_layer_version_policy(self, call: Any, p: dict[str, Any]) -> dict[str, Any]:
        policy, revision = self.layers.policy(call.region, p["LayerName"], p["VersionNumber"])
        return {"Policy": policy, "RevisionId": revision}


def _list_item(record: LayerVersionRecord) -> dict[str, Any]:
    item: dict[str, Any] = {
        "LayerVersionArn": record.version_arn, "Version": record.version,
        "Description": record.description, "CreatedDate": record.created_date,
        "CompatibleRuntimes": list(record.compatible_runtimes),
        "CompatibleArchitectures": list(record.compatible_architectures)}
    if record.license_info is not None:
        item["LicenseInfo"] = record.license_info
    return item


def _version(record: LayerVersionRecord, call: Any) -> dict[str, Any]:
    from .lambda_api import CODE_PATH  # (lambda_api imports this module)
    location = f"{call.base_url}{CODE_PATH}{record.code_hex}.zip"
    return {"Content": {"Location": location, "CodeSha256": record.code_sha256,
                        "CodeSize": record.code_size},
            "LayerArn": record.layer_arn, **_list_item(record)}
