"""Published versions: PublishVersion (also Publish=true on CreateFunction/UpdateFunctionCode),
ListVersionsByFunction, reading and deleting a version, and resolving a qualifier (version or
alias) to the configuration that runs. A version is an immutable snapshot of $LATEST's code and
configuration, VpcConfig included: while it exists its (subnet, groups) keys stay in
`vpc_configs_in_use`, so its Hyperplane ENIs are kept even after $LATEST leaves the VPC, and its
execution environments are its own (FunctionSpec.key carries the version). No HTTP."""
from __future__ import annotations

import base64
import logging
import uuid
from dataclasses import asdict, replace
from typing import TYPE_CHECKING, Any

from ..errors import AwsError, InvalidParameterValue, ResourceConflict, ResourceNotFound
from ..model.vpc_config import VpcConfig
from ..store.functions import FunctionRecord, aws_timestamp
from ..store.versions import AliasRecord, VersionStore
from .function_lifecycle import pending_message

if TYPE_CHECKING:
    from .aliases import Aliases
    from .functions import FunctionService

log = logging.getLogger("lambdaplane.versions")

LATEST = "$LATEST"
DEFAULT_PAGE = 50
# what a version does not inherit or compare: identity, state and per-function settings
_NOT_CONFIGURATION = ("arn", "version", "revision_id", "last_modified", "description", "tags",
                      "reserved_concurrency", "state", "state_reason", "state_reason_code",
                      "last_update_status", "last_update_status_reason",
                      "last_update_status_reason_code")


def precondition_failed() -> AwsError:
    return AwsError("PreconditionFailedException",
                    "The Revision Id provided does not match the latest Revision Id. "
                    "Call the GetFunction/GetAlias API to retrieve the latest Revision Id", 412)


def _configuration(record: FunctionRecord) -> dict[str, Any]:
    data = asdict(record)
    for key in _NOT_CONFIGURATION:
        data.pop(key, None)
    data["vpc_config"] = record.vpc_config.with_vpc_id("") if record.vpc_config else None
    return data


class Versions:
    def __init__(self, functions: FunctionService) -> None:
        self.functions = functions
        self.store = VersionStore(functions.store.db)
        self.aliases: Aliases | None = None  # set once both exist

    # -- publish --------------------------------------------------------------------------------
    async def publish(self, region: str, ref: str, code_sha256: str | None = None,
                      description: str | None = None,
                      revision_id: str | None = None) -> FunctionRecord:
        name = self.unqualified(region, ref)
        async with self.functions.lifecycle.lock(region, name):
            latest = self.functions.store.get(region, name)
            if latest is not None and latest.last_update_status == "InProgress":
                raise ResourceConflict(
                    "The operation cannot be performed at this time. An update is in progress "
                    f"for resource: {latest.arn}")
            return self.publish_locked(region, name, code_sha256, description, revision_id)

    def publish_locked(self, region: str, name: str, code_sha256: str | None = None,
                       description: str | None = None,
                       revision_id: str | None = None) -> FunctionRecord:
        """Publish under the function's lock (CreateFunction / UpdateFunctionCode hold it)."""
        latest = self.functions.store.get(region, name)
        if latest is None:
            raise ResourceNotFound(f"Function not found: {self.functions.arn(region, name)}")
        if latest.state not in ("Active", "Pending", "Inactive"):
            raise ResourceConflict(pending_message(latest.state))
        if revision_id and revision_id != latest.revision_id:
            raise precondition_failed()
        if code_sha256 and code_sha256 != latest.code_sha256:
            raise InvalidParameterValue(
                f"CodeSHA256 ({code_sha256}) is different from current CodeSHA256 in $LATEST "
                f"({latest.code_sha256}). Please try again with the CodeSHA256 in $LATEST.")
        last = self.store.latest(region, name)
        if last is not None and _configuration(last) == _configuration(latest):
            return last  # AWS publishes nothing new when code and configuration are unchanged
        number = str(self.store.next_number(region, name))
        version = replace(
            latest, version=number, arn=self.functions.arn(region, name, number),
            revision_id=str(uuid.uuid4()), last_modified=aws_timestamp(),
            description=latest.description if description is None else description,
            tags={}, reserved_concurrency=None, environment=dict(latest.environment),
            vpc_config=latest.vpc_config, logging_config=dict(latest.logging_config),
            architectures=list(latest.architectures),
            state="Pending" if latest.state == "Pending" else "Active",
            state_reason=latest.state_reason if latest.state == "Pending" else None,
            state_reason_code=latest.state_reason_code if latest.state == "Pending" else None,
            last_update_status="Successful", last_update_status_reason=None,
            last_update_status_reason_code=None)
        self.store.insert(version)
        log.info("published %s", version.arn)
        return version

    # -- read -----------------------------------------------------------------------------------
    def get(self, region: str, name: str, version: str) -> FunctionRecord:
        record = self.store.get(region, name, version)
        if record is None:
            raise ResourceNotFound(
                f"Function not found: {self.functions.arn(region, name, version)}")
        return self._settled(record)

    def read(self, region: str, name: str, qualifier: str) -> FunctionRecord:
        """The configuration a qualifier names, for GetFunction & co: a version, or an alias's
        primary version reported under the alias's ARN."""
        if qualifier.isdigit():
            return self.get(region, name, qualifier)
        alias = self._alias(region, name, qualifier)
        record = self.by_version(region, name, alias.function_version)
        return replace(record, arn=alias.arn)

    def route(self, region: str, name: str, qualifier: str) -> tuple[FunctionRecord, str]:
        """What an invoke of name:qualifier runs and the ARN it was invoked by: an alias picks
        its primary or additional version by their weights."""
        if qualifier.isdigit():
            record = self.get(region, name, qualifier)
            return record, record.arn
        alias = self._alias(region, name, qualifier)
        assert self.aliases is not None
        return self.by_version(region, name, self.aliases.pick(alias)), alias.arn

    def by_version(self, region: str, name: str, version: str) -> FunctionRecord:
        if version == LATEST:
            record = self.functions.store.get(region, name)
            if record is None:
                raise ResourceNotFound(f"Function not found: {self.functions.arn(region, name)}")
            return record
        return self.get(region, name, version)

    def page(self, region: str, ref: str, marker: str | None,
             max_items: int | None) -> tuple[list[FunctionRecord], str | None]:
        name = self.unqualified(region, ref)
        latest = self.functions.store.get(region, name)
        if latest is None:
            raise ResourceNotFound(f"Function not found: {self.functions.arn(region, name)}")
        # AWS lists $LATEST under its qualified ARN here
        every = [replace(latest, arn=self.functions.arn(region, name, LATEST))]
        every += [self._settled(v) for v in self.store.of(region, name)]
        return paginate(every, marker, max_items, lambda r: r.version)

    def unqualified(self, region: str, ref: str) -> str:
        name, qualifier = self.functions.resolve(region, ref)
        if qualifier:
            raise InvalidParameterValue(
                "Unqualified ARN or function name is required for this operation; a "
                f"qualified name with ':{qualifier}' was given.")
        return name

    # -- delete ---------------------------------------------------------------------------------
    async def delete(self, region: str, name: str, version: str) -> None:
        if version == LATEST:
            raise InvalidParameterValue(
                "$LATEST version cannot be deleted without deleting the function.")
        if not version.isdigit():
            raise InvalidParameterValue(
                f"Deletion of aliases is not supported by DeleteFunction: use DeleteAlias for "
                f"{self.functions.arn(region, name, version)}.")
        async with self.functions.lifecycle.lock(region, name):
            record = self.store.get(region, name, version)
            if record is None:
                raise ResourceNotFound(
                    f"Function not found: {self.functions.arn(region, name, version)}")
            using = [a.name for a in self.store.aliases(region, name)
                     if a.function_version == version or version in a.weights]
            if using:
                raise ResourceConflict(
                    "Unable to delete version because the following aliases reference it: "
                    f"[{', '.join(using)}]")
            self.store.delete(region, name, version)
            self.store.forget_qualifier(region, name, version)
        await self.functions.environments.retire((region, f"{name}:{version}"))
        await self._release_network(record)
        log.info("deleted %s", record.arn)

    async def function_deleted(self, region: str, name: str) -> list[FunctionRecord]:
        """DeleteFunction without a qualifier: every version, alias and extra goes, and the
        versions' environments are retired. Returns the versions (their network is released
        with the function's)."""
        versions = self.store.of(region, name)
        self.store.forget_function(region, name)
        for version in versions:
            await self.functions.environments.retire((region, f"{name}:{version.version}"))
        return versions

    # -- what the platform asks -------------------------------------------------------------------
    def vpc_configs_in_use(self) -> list[tuple[str, str, VpcConfig]]:
        return [(v.region, v.name, v.vpc_config) for v in self.store.all()
                if v.vpc_config and v.vpc_config.attached and v.state in ("Pending", "Active")]

    def usage(self, region: str) -> tuple[int, int]:
        return self.store.usage(region)

    def all_of(self, region: str, name: str) -> list[FunctionRecord]:
        return [self._settled(v) for v in self.store.of(region, name)]

    # -- inside ---------------------------------------------------------------------------------
    def _alias(self, region: str, name: str, alias_name: str) -> AliasRecord:
        alias = self.store.alias(region, name, alias_name)
        if alias is None or self.functions.store.get(region, name) is None:
            raise ResourceNotFound(
                f"Function not found: {self.functions.arn(region, name, alias_name)}")
        return alias

    def _settled(self, version: FunctionRecord) -> FunctionRecord:
        """A version published while $LATEST was Pending (CreateFunction with Publish and a
        VpcConfig) takes $LATEST's outcome once its network is made."""
        if version.state != "Pending":
            return version
        latest = self.functions.store.get(version.region, version.name)
        if latest is None or latest.state == "Pending" or latest.code_hex != version.code_hex \
                or _configuration(latest) != _configuration(version):
            return version
        version.state = "Active" if latest.state in ("Active", "Inactive") else latest.state
        version.state_reason = latest.state_reason if version.state != "Active" else None
        version.state_reason_code = latest.state_reason_code if version.state != "Active" \
            else None
        if version.vpc_config is not None and latest.vpc_config is not None:
            version.vpc_config = version.vpc_config.with_vpc_id(latest.vpc_config.vpc_id)
        self.store.db.conn.execute(
            "UPDATE function_versions SET record=? WHERE region=? AND name=? AND version=?",
            (version.to_json(), version.region, version.name, int(version.version)))
        return version

    async def _release_network(self, record: FunctionRecord) -> None:
        network = self.functions.network
        if network is None or not record.has_vpc:
            return
        try:
            await network.release(record)
        except Exception:  # logged; the VPC reconciler retries
            log.exception("releasing the network of %s failed", record.arn)


def paginate(items: list[Any], marker: str | None, max_items: int | None,
             key: Any) -> tuple[list[Any], str | None]:
    """AWS-style Marker pages over an ordered list; the marker is the last key shown."""
    start = 0
    if marker:
        try:
            after = base64.urlsafe_b64decode(marker.encode()).decode()
        except (ValueError, UnicodeDecodeError):
            raise InvalidParameterValue(f"Invalid marker: {marker}") from None
        keys = [key(i) for i in items]
        if after not in keys:
            raise InvalidParameterValue(f"Invalid marker: {marker}")
        start = keys.index(after) + 1
    limit = max_items or DEFAULT_PAGE
    page = items[start:start + limit]
    more = start + limit < len(items)
    return page, (base64.urlsafe_b64encode(key(page[-1]).encode()).decode() if more and page
                  else None)
