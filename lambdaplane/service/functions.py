"""The function rules: create / read / list / update / delete, reserved concurrency and account
settings (service/function_concurrency.py), name resolution (service/function_refs.py), and
the `FunctionSpec` execution runs. What a configuration may be is service/function_config.py's;
State, LastUpdateStatus and all that moves them in the background (Pending, an update InProgress,
Inactive and Restoring) is service/function_lifecycle.py's. No HTTP, no kernel calls."""
from __future__ import annotations

import asyncio
import builtins
import base64
import logging
import re
from collections.abc import Callable
from dataclasses import replace
from typing import Any, Protocol

from ..config import Settings
from ..errors import (
    AwsError,
    InvalidParameterValue,
    ResourceConflict,
    ResourceNotFound,
    ValidationError,
)
from ..model.vpc_config import VpcConfig
from ..sandbox.types import FunctionSpec, VpcAttachment
from ..store.code import ZIPPED_LIMIT, CodeStore, StoredCode
from ..store.db import Database
from ..store.functions import FunctionExists, FunctionRecord, FunctionStore
from ..store.versions import AliasRecord
from . import runtime_state
from .aliases import Aliases
from .event_invoke_config import EventInvokeConfigs
from .function_concurrency import FunctionConcurrency
from .function_refs import function_arn, parse_function_ref
from .function_config import apply_options, check_config, set_code, touch, zip_from
from .function_lifecycle import (
    ExecutionEnvironmentsLike,
    FunctionLifecycle,
    NetworkPreparer,
    pending_message,
)
from .function_settings import FunctionSettings, check_tags
from .function_urls import FunctionUrls
from .layers import LayerService
from .permissions import Permissions
from .s3_code import S3CodeSource, code_from_s3
from .target_cache import TargetCache
from .versions import Versions

log = logging.getLogger("lambdaplane.functions")

LATEST = "$LATEST"
DEFAULT_PAGE = 50


class VpcConfigValidator(Protocol):
    """service/vpc_config.py's check bound to the EC2 store: returns the VPC id ("" when the
    config detaches) or raises Lambda's error."""

    def __call__(self, region: str, vpc_config: VpcConfig | None) -> str: ...


class FunctionService:
    def __init__(self, settings: Settings, db: Database,
                 environments: ExecutionEnvironmentsLike) -> None:
        self.settings = settings
        self.store = FunctionStore(db)
        self.code = CodeStore(settings.data_dir)
        self.environments = environments
        self.lifecycle = FunctionLifecycle(settings, self.store, environments)
        self.layers = LayerService(settings, db, self.code)
        self.event_invoke_configs = EventInvokeConfigs(db, self)
        self.vpc_validator: VpcConfigValidator | None = None  # set with the EC2 store
        # the /etc files of a function in a VPC, by VPC id (service/vpc_dns.py: its resolver
        # and the CA of its endpoints), set with the EC2 store
        self.vpc_etc_files: Callable[[str], dict[str, str]] | None = None
        # set with IAM: raises Lambda's error for a known role Lambda may not assume
        self.role_validator: Callable[[str], None] | None = None
        self.s3_code: S3CodeSource | None = None  # set by `serve --s3-endpoint`
        self.versions = Versions(self)  # published versions (service/versions.py)
        # reserved concurrency and the account's settings (service/function_concurrency.py)
        self.concurrency = FunctionConcurrency(settings, self.store, self._unqualified,
                                               lambda region: self.versions.usage(region)[1])
        self.put_concurrency = self.concurrency.put_concurrency
        self.delete_concurrency = self.concurrency.delete_concurrency
        self.unreserved_capacity = self.concurrency.unreserved_capacity
        self.account_settings = self.concurrency.account_settings
        self.aliases = Aliases(self, self.versions)
        self.versions.aliases = self.aliases
        self.tags_and_settings = FunctionSettings(self)  # service/function_settings.py
        self.permissions = Permissions(self)  # resource policies (service/permissions.py)
        self.urls = FunctionUrls(self)  # function URL configurations
        self.hot = TargetCache(db.conn)  # what invokes look up, until the next write

    @property
    def network(self) -> NetworkPreparer | None:
        """Set by the VPC work (Hyperplane or legacy mode); the lifecycle uses it."""
        return self.lifecycle.network

    @network.setter
    def network(self, network: NetworkPreparer | None) -> None:
        self.lifecycle.network = network

    async def start(self) -> None:
        runtime_state.reconcile(self.store)
        await self.lifecycle.start()

    async def stop(self) -> None:
        await self.lifecycle.stop()

    # -- names ------------------------------------------------------------------------------
    def arn(self, region: str, name: str, qualifier: str | None = None) -> str:
        return function_arn(self.settings.account_id, region, name, qualifier)

    def resolve(self, region: str, ref: str,
                qualifier: str | None = None) -> tuple[str, str | None]:
        """(name, qualifier) from a name, partial ARN or ARN plus an optional Qualifier."""
        return parse_function_ref(self.settings.account_id, region, ref, qualifier)

    def get(self, region: str, ref: str, qualifier: str | None = None) -> FunctionRecord:
        name, qualifier = self.resolve(region, ref, qualifier)
        record = self.store.get(region, name)
        if record is None:
            raise ResourceNotFound(f"Function not found: {self.arn(region, name, qualifier)}")
        if qualifier and qualifier != LATEST:
            return self.versions.read(region, name, qualifier)  # a version or an alias
        return record

    def target(self, region: str, ref: str,
               qualifier: str | None = None) -> tuple[FunctionRecord, str]:
        """What an invoke runs and the ARN it was invoked by (unqualified, :$LATEST, a
        version's or an alias's, which picks a version by its routing weights). Remembered
        until the next database write (service/target_cache.py): this is every invoke's path."""
        name, qualifier = self.hot.get(("resolve", region, ref, qualifier),
                                       lambda: self.resolve(region, ref, qualifier))
        if qualifier and qualifier != LATEST and not qualifier.isdigit():
            alias = self.hot.get(("alias", region, name, qualifier),
                                 lambda: self._alias_of(region, name, qualifier))
            version = self.aliases.pick(alias)  # drawn again for every invoke
            return self.hot.get(("version", region, name, version),
                                lambda: self.versions.by_version(region, name, version)
                                ), alias.arn
        return self.hot.get(("target", region, name, qualifier),
                            lambda: self._target(region, name, qualifier))

    def _alias_of(self, region: str, name: str, alias: str) -> AliasRecord:
        record = self.versions.store.alias(region, name, alias)
        if record is None or self.store.get(region, name) is None:
            raise ResourceNotFound(f"Function not found: {self.arn(region, name, alias)}")
        return record

    def _target(self, region: str, name: str,
                qualifier: str | None) -> tuple[FunctionRecord, str]:
        record = self.store.get(region, name)  # one read: this is every invoke's path
        if record is None:
            raise ResourceNotFound(f"Function not found: {self.arn(region, name, qualifier)}")
        if qualifier and qualifier != LATEST:
            return self.versions.route(region, name, qualifier)
        return record, record.arn if qualifier is None else self.arn(region, name, qualifier)

    def list(self, region: str, marker: str | None,
             max_items: int | None) -> tuple[list[FunctionRecord], str | None]:
        after = None
        if marker:
            try:
                after = base64.urlsafe_b64decode(marker.encode()).decode()
            except (ValueError, UnicodeDecodeError):
                raise InvalidParameterValue(f"Invalid marker: {marker}") from None
        limit = max_items or DEFAULT_PAGE
        page = self.store.page(region, after, limit + 1)
        if len(page) > limit:
            page = page[:limit]
            return page, base64.urlsafe_b64encode(page[-1].name.encode()).decode()
        return page, None

    async def _zip_of(self, region: str, code: dict[str, Any]) -> bytes:
        """The deployment package: Code.ZipFile, or the object S3Bucket/S3Key names."""
        if code.get("S3Bucket") or code.get("S3Key") or code.get("S3ObjectVersion"):
            return await code_from_s3(self.s3_code, region, code)
        return zip_from(code)

    # -- create / update / delete -------------------------------------------------------------
    async def create(self, region: str, params: dict[str, Any]) -> FunctionRecord:
        name, qualifier = self.resolve(region, params["FunctionName"])
        if qualifier:
            raise InvalidParameterValue(
                f"Unsupported function name: the qualifier ':{qualifier}' cannot be used "
                f"to create a function.")
        if len(name) > 64:
            raise ValidationError(
                f"1 validation error detected: Value '{name}' at 'functionName' failed to "
                f"satisfy constraint: Member must have length less than or equal to 64")
        if params.get("PackageType", "Zip") != "Zip":
            raise InvalidParameterValue(
                "PackageType Image is not supported: lambdaplane runs zip deployment packages.")
        runtime, handler = params.get("Runtime"), params.get("Handler")
        if not runtime or not handler:
            raise InvalidParameterValue("Runtime and Handler are mandatory parameters for "
                                        "functions created with deployment packages.")
        zip_bytes = await self._zip_of(region, params.get("Code") or {})
        record = FunctionRecord(
            region=region, name=name, arn=self.arn(region, name), runtime=runtime,
            role=params["Role"], handler=handler, code_hex="", code_sha256="", code_size=0,
            revision_id="", last_modified="", description=params.get("Description", ""),
            timeout=params.get("Timeout", 3), memory_size=params.get("MemorySize", 128),
            environment=dict((params.get("Environment") or {}).get("Variables") or {}),
            tags=dict(params.get("Tags") or {}))
        apply_options(record, params)
        check_config(record)
        check_tags(record.tags)
        if self.role_validator is not None:
            self.role_validator(record.role)
        self._check_vpc(record, params)
        if "Layers" in params:
            record.layers = self.layers.resolve_for_function(region, params["Layers"] or [])
        if self.store.get(region, name) is not None:  # before the (slow) unzip
            raise ResourceConflict(f"Function already exist: {name}")
        stored = await self._store_code(zip_bytes)
        await self.layers.prepare(stored.directory, record.layers)
        set_code(record, stored)
        touch(record)
        self.lifecycle.start_create(record)
        runtime_state.mark(record)  # a runtime not installed here: Failed/InvalidRuntime
        try:
            self.store.insert(record)
        except FunctionExists:
            raise ResourceConflict(f"Function already exist: {name}") from None
        self.lifecycle.created(record)
        log.info("created %s", record.arn)
        if params.get("Publish"):
            return self.versions.publish_locked(region, name)
        return record

    async def update_code(self, region: str, params: dict[str, Any]) -> FunctionRecord:
        name, _ = self.get_name(region, params["FunctionName"])
        if params.get("ImageUri"):
            raise InvalidParameterValue(
                "Only zip code is supported: upload the zip with ZipFile, or name it in S3.")
        zip_bytes = await self._zip_of(region, params)
        async with self.lifecycle.lock(region, name):
            record = self._updatable(region, name, params.get("RevisionId"))
            stored = await self._store_code(zip_bytes)
            record = self._updatable(region, name, params.get("RevisionId"))
            await self.layers.prepare(stored.directory, record.layers)
            if params.get("DryRun"):
                return record
            previous = replace(record)
            set_code(record, stored)
            updated = await self.lifecycle.commit_update(previous, record)
            if params.get("Publish"):
                return self.versions.publish_locked(region, name)
            return updated

    async def update_configuration(self, region: str, params: dict[str, Any]) -> FunctionRecord:
        name, _ = self.get_name(region, params["FunctionName"])
        async with self.lifecycle.lock(region, name):
            record = self._updatable(region, name, params.get("RevisionId"))
            updated = replace(record, environment=dict(record.environment),
                              vpc_config=record.vpc_config)
            for key, attr in (("Role", "role"), ("Handler", "handler"),
                              ("Description", "description"), ("Timeout", "timeout"),
                              ("MemorySize", "memory_size"), ("Runtime", "runtime")):
                if key in params:
                    setattr(updated, attr, params[key])
            if "Environment" in params:
                updated.environment = dict((params["Environment"] or {}).get("Variables") or {})
            apply_options(updated, params)
            check_config(updated)
            if "Role" in params and self.role_validator is not None:
                self.role_validator(updated.role)
            self._check_vpc(updated, params)
            if "Layers" in params:
                updated.layers = self.layers.resolve_for_function(region, params["Layers"] or [])
                await self.layers.prepare(self.code.directory(updated.code_hex), updated.layers)
            runtime_state.mark(updated)
            return await self.lifecycle.commit_update(record, updated)

    async def delete(self, region: str, ref: str, qualifier: str | None = None) -> None:
        name, qualifier = self.resolve(region, ref, qualifier)
        if qualifier:
            if self.store.get(region, name) is None:
                raise ResourceNotFound(f"Function not found: {self.arn(region, name)}")
            await self.versions.delete(region, name, qualifier)
            return
        async with self.lifecycle.lock(region, name):
            record = self.store.get(region, name)
            if record is None:
                raise ResourceNotFound(f"Function not found: {self.arn(region, name)}")
            self.store.delete(region, name)
            self.event_invoke_configs.forget_function(region, name)
            self.concurrency.forget(region)
            self.lifecycle.forget(region, name)
            await self.versions.function_deleted(region, name)
        await self.environments.retire((region, name))
        self.lifecycle.deleted(record)
        log.info("deleted %s", record.arn)

    def get_name(self, region: str, ref: str) -> tuple[str, None]:
        name, qualifier = self.resolve(region, ref)
        if qualifier and qualifier != LATEST:
            raise InvalidParameterValue(
                "Unsupported qualifier: only $LATEST can be updated.")
        return name, None

    # -- what execution needs ------------------------------------------------------------------
    def check_invocable(self, record: FunctionRecord) -> None:
        """Raise what AWS answers an invoke in this state; an Inactive function starts being
        restored (Pending/Restoring) and this invoke gets 502 ResourceNotReadyException."""
        self.lifecycle.check_invocable(record)

    def serving_spec(self, record: FunctionRecord) -> FunctionSpec:
        """What an invoke runs now: the previous configuration while an update is InProgress.
        Counts as a use of the function (Inactive is measured from the last one)."""
        serving = record if record.version != LATEST else self.lifecycle.serving(record)
        if serving.layers:  # spec_for makes the layers' /opt again if it went missing
            return self.spec_for(serving)
        # the same record object (cached by `target` until the next write) has the same spec
        held, spec = self.hot.get(("spec", id(serving)), lambda: (serving, self.spec_for(serving)))
        return spec if held is serving else self.spec_for(serving)

    def vpc_configs_in_use(self) -> builtins.list[tuple[str, str, VpcConfig]]:
        """(region, function name, VpcConfig) of every configuration that needs its network
        (see FunctionLifecycle.vpc_configs_in_use)."""
        return self.lifecycle.vpc_configs_in_use() + self.versions.vpc_configs_in_use()

    def spec_for(self, record: FunctionRecord) -> FunctionSpec:
        vpc = None
        config = record.vpc_config
        if config is not None and config.attached and config.vpc_id:
            vpc = VpcAttachment(config.vpc_id, config.subnet_ids, config.security_group_ids,
                                config.ipv6_allowed_for_dual_stack)
        return FunctionSpec(
            region=record.region, name=record.name, arn=record.arn, version=record.version,
            runtime=record.runtime, handler=record.handler, memory_mb=record.memory_size,
            timeout_s=record.timeout, environment=dict(record.environment),
            code_sha256=record.code_hex, code_dir=self.code.directory(record.code_hex),
            revision_id=record.revision_id, reserved_concurrency=record.reserved_concurrency,
            vpc=vpc, opt_dir=self.layers.opt_dir(record.layers),
            layer_hexes=tuple(str(e["CodeHex"]) for e in record.layers),
            custom_log_group=record.logging_config.get("LogGroup"),
            logging_config=dict(record.logging_config),
            etc_files=self.vpc_etc_files(vpc.vpc_id)
            if vpc is not None and self.vpc_etc_files is not None else {})

    def code_zip(self, code_hex: str) -> bytes | None:
        return self.code.read_zip(code_hex) if re.fullmatch(r"[0-9a-f]{64}", code_hex) else None

    # -- checks ---------------------------------------------------------------------------------
    def _unqualified(self, region: str, ref: str) -> FunctionRecord:
        """The function `ref` names, which must be unqualified (concurrency applies to it)."""
        record = self.get(region, ref)
        self._unqualified_only(record)
        return record

    def _unqualified_only(self, record: FunctionRecord) -> None:
        if record.version != LATEST or record.arn != self.arn(record.region, record.name):
            raise InvalidParameterValue(
                "This operation applies to the function, not to a version or alias: use the "
                "unqualified function name or ARN.")

    def _check_vpc(self, record: FunctionRecord, params: dict[str, Any]) -> None:
        """Validate a VpcConfig given in this request against the EC2 store; VpcId is known
        from the subnets at once (as AWS answers it)."""
        if "VpcConfig" not in params or self.vpc_validator is None:
            return
        try:
            vpc_id = self.vpc_validator(record.region, record.vpc_config)
            if record.vpc_config is not None:
                record.vpc_config = record.vpc_config.with_vpc_id(vpc_id)
        except AwsError as e:
            e.extra.pop("ReasonCode", None)  # for the background path; not a body field
            raise

    async def _store_code(self, zip_bytes: bytes) -> StoredCode:
        if len(zip_bytes) > ZIPPED_LIMIT:
            raise InvalidParameterValue(
                f"Zipped size must be smaller than {ZIPPED_LIMIT} bytes")
        return await asyncio.to_thread(self.code.put, zip_bytes)

    def _updatable(self, region: str, name: str, revision_id: str | None) -> FunctionRecord:
        record = self.store.get(region, name)
        if record is None:
            raise ResourceNotFound(f"Function not found: {self.arn(region, name)}")
        if record.state == "Pending":
            raise ResourceConflict(pending_message(record.state))
        if record.last_update_status == "InProgress":
            raise ResourceConflict(
                "The operation cannot be performed at this time. An update is in progress "
                f"for resource: {record.arn}")
        if revision_id and revision_id != record.revision_id:
            raise AwsError("PreconditionFailedException",
                           "The Revision Id provided does not match the latest Revision Id. "
                           "Call the GetFunction/GetAlias API to retrieve the latest Revision Id",
                           412)
        return record
