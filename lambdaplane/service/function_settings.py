"""Per-function settings that tools read and write around a function: tags (TagResource,
UntagResource, ListTags and CreateFunction's Tags, with AWS's limits), runtime management
config (per qualifier), recursion config, and the code signing config reads (lambdaplane signs
nothing: always none). Stored on the function record (tags) or as extras (store/versions.py).
No HTTP."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import InvalidParameterValue, ResourceNotFound
from ..store.functions import FunctionRecord

if TYPE_CHECKING:
    from .functions import FunctionService

MAX_TAGS = 50
RUNTIME_MANAGEMENT = "runtime-management"
RECURSION = "recursion"


def check_tags(tags: dict[str, str]) -> None:
    """AWS's tag rules beyond the model's lengths: at most 50, no `aws:` keys."""
    if len(tags) > MAX_TAGS:
        raise InvalidParameterValue(
            f"Number of tags exceeds resource tag limit: a function can have at most "
            f"{MAX_TAGS} tags, {len(tags)} were given.")
    reserved = sorted(k for k in tags if k.lower().startswith("aws:"))
    if reserved:
        raise InvalidParameterValue(
            f"Tag keys starting with 'aws:' are reserved for AWS use: {', '.join(reserved)}")


class FunctionSettings:
    def __init__(self, functions: FunctionService) -> None:
        self.functions = functions
        self.store = functions.versions.store

    # -- tags -----------------------------------------------------------------------------------
    def _tagged(self, region: str, resource: str) -> FunctionRecord:
        name, qualifier = self.functions.resolve(region, resource)
        if qualifier:
            raise InvalidParameterValue(
                "Tags are supported on functions, not on versions or aliases: use the "
                f"unqualified function ARN instead of {resource}.")
        record = self.functions.store.get(region, name)
        if record is None:
            raise ResourceNotFound(f"Function not found: {self.functions.arn(region, name)}")
        return record

    def list_tags(self, region: str, resource: str) -> dict[str, str]:
        return dict(self._tagged(region, resource).tags)

    async def tag(self, region: str, resource: str, tags: dict[str, str]) -> None:
        name = self._tagged(region, resource).name
        async with self.functions.lifecycle.lock(region, name):
            record = self._tagged(region, resource)
            merged = {**record.tags, **tags}
            check_tags(merged)
            record.tags = merged
            self.functions.store.save(record)

    async def untag(self, region: str, resource: str, keys: list[str]) -> None:
        name = self._tagged(region, resource).name
        async with self.functions.lifecycle.lock(region, name):
            record = self._tagged(region, resource)
            record.tags = {k: v for k, v in record.tags.items() if k not in keys}
            self.functions.store.save(record)

    # -- runtime management -------------------------------------------------------------------------
    def _qualified(self, region: str, ref: str, qualifier: str | None) -> tuple[str, str, str]:
        """(name, qualifier or $LATEST, the ARN to report) for an existing function/version."""
        record = self.functions.get(region, ref, qualifier)
        name, derived = self.functions.resolve(region, ref, qualifier)
        qualifier = derived or "$LATEST"
        arn = self.functions.arn(region, name, None if qualifier == "$LATEST" else qualifier)
        return record.name, qualifier, arn

    def runtime_management(self, region: str, ref: str, qualifier: str | None) -> dict[str, Any]:
        name, qualifier, arn = self._qualified(region, ref, qualifier)
        stored = self.store.extra(region, name, qualifier, RUNTIME_MANAGEMENT) or {}
        return {"UpdateRuntimeOn": stored.get("UpdateRuntimeOn", "Auto"), "FunctionArn": arn,
                "RuntimeVersionArn": stored.get("RuntimeVersionArn")}

    def put_runtime_management(self, region: str, ref: str, qualifier: str | None,
                               update_on: str, version_arn: str | None) -> dict[str, Any]:
        name, qualifier, arn = self._qualified(region, ref, qualifier)
        if update_on == "Manual" and not version_arn:
            raise InvalidParameterValue(
                "RuntimeVersionArn is required when UpdateRuntimeOn is Manual.")
        if update_on != "Manual" and version_arn:
            raise InvalidParameterValue(
                "RuntimeVersionArn can be given only when UpdateRuntimeOn is Manual.")
        document = {"UpdateRuntimeOn": update_on}
        if version_arn:
            document["RuntimeVersionArn"] = version_arn
        self.store.put_extra(region, name, qualifier, RUNTIME_MANAGEMENT, document)
        return {"UpdateRuntimeOn": update_on, "FunctionArn": arn,
                "RuntimeVersionArn": version_arn}

    # -- recursion ------------------------------------------------------------------------------------
    def recursion(self, region: str, ref: str) -> str:
        name = self.functions.get(region, ref).name
        stored = self.store.extra(region, name, "$LATEST", RECURSION) or {}
        return str(stored.get("RecursiveLoop", "Terminate"))

    def put_recursion(self, region: str, ref: str, loop: str) -> str:
        name = self.functions.get(region, ref).name
        self.store.put_extra(region, name, "$LATEST", RECURSION, {"RecursiveLoop": loop})
        return loop

    # -- code signing (none) --------------------------------------------------------------------------
    def code_signing(self, region: str, ref: str) -> dict[str, str]:
        record = self.functions.get(region, ref)
        return {"FunctionName": record.name, "CodeSigningConfigArn": ""}
