"""The function rules: create / read / list / update / delete, reserved concurrency, account
settings, name resolution (name, partial ARN, full ARN, qualifier), the checks AWS makes on
configuration, and the state machine (State, LastUpdateStatus) — every transition is in the
`Lifecycle` section below: Pending while a VPC function's ENIs are made (`network`), an update
InProgress while the previous configuration keeps serving invokes, Inactive after a VPC function
has been idle for `settings.inactive_after_s` (its ENIs released) and Pending/Restoring on the
next invoke. Builds the `FunctionSpec` execution runs. No HTTP, no kernel calls."""
from __future__ import annotations

import asyncio
import base64
import glob
import json
import logging
import os
import re
import time
import uuid
from dataclasses import replace
from typing import Any, Protocol

from ..config import Settings
from ..errors import (AwsError, InvalidParameterValue, ResourceConflict, ResourceNotFound,
                      ResourceNotReady, ValidationError)
from ..sandbox.types import FunctionSpec, VpcAttachment
from ..store.code import CodeStore, StoredCode, UNZIPPED_LIMIT, ZIPPED_LIMIT
from ..store.db import Database
from ..store.functions import FunctionExists, FunctionRecord, FunctionStore, aws_timestamp

log = logging.getLogger("lambdaplane.functions")

MIN_UNRESERVED = 100  # AWS keeps this much of the account's concurrency unreserved
TOTAL_CODE_SIZE = 80_530_636_800  # AWS: 75 GB of code per region
MAX_MEMORY_MB, MAX_TIMEOUT_S = 10_240, 900
ENV_LIMIT_BYTES = 4096
RESERVED_ENV = frozenset({
    "_HANDLER", "_X_AMZN_TRACE_ID", "AWS_DEFAULT_REGION", "AWS_REGION", "AWS_EXECUTION_ENV",
    "AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_FUNCTION_VERSION", "AWS_LAMBDA_INITIALIZATION_TYPE",
    "AWS_LAMBDA_LOG_GROUP_NAME", "AWS_LAMBDA_LOG_STREAM_NAME", "AWS_ACCESS_KEY",
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_LAMBDA_RUNTIME_API",
    "LAMBDA_TASK_ROOT", "LAMBDA_RUNTIME_DIR"})
FUNCTION_REF = re.compile(
    r"(?:arn:(?P<partition>aws[a-zA-Z-]*)?:lambda:(?P<region>[a-z0-9-]+):)?"
    r"(?:(?P<account>\d{12}):)?(?:function:)?(?P<name>[a-zA-Z0-9_.-]+)"
    r"(?::(?P<qualifier>\$LATEST(?:\.PUBLISHED)?|[a-zA-Z0-9_-]+))?")
LATEST = "$LATEST"
DEFAULT_PAGE = 50


class ExecutionEnvironmentsLike(Protocol):
    async def retire(self, key: tuple[str, str]) -> None: ...

    def in_flight(self, key: tuple[str, str]) -> int: ...


class VpcConfigValidator(Protocol):
    """service/vpc_config.py's check bound to the EC2 store: returns the VPC id ("" when the
    config detaches) or raises Lambda's error."""

    def __call__(self, region: str, vpc_config: dict[str, Any]) -> str: ...


class NetworkPreparer(Protocol):
    """What the VPC work plugs in: make (or reuse) the function's Hyperplane ENIs and return
    the VPC id; raise AwsError (with a StateReasonCode as `extra["ReasonCode"]`) on failure."""

    async def prepare(self, record: FunctionRecord) -> str: ...

    async def release(self, record: FunctionRecord) -> None: ...


def pending_message(state: str) -> str:
    return ("The operation cannot be performed at this time. The function is currently in the "
            f"following state: {state}")


def supported_runtimes() -> set[str]:
    """The execution side decides; until its module exists, what this machine can run."""
    try:
        from ..sandbox.zygote import supported_runtimes as from_sandbox
    except ImportError:
        found = {os.path.basename(p) for p in glob.glob("/usr/bin/python3.*")
                 if re.fullmatch(r"python3\.\d+", os.path.basename(p))}
        return found | {"provided.al2023", "provided.al2"}
    return set(from_sandbox())


class FunctionService:
    def __init__(self, settings: Settings, db: Database,
                 environments: ExecutionEnvironmentsLike) -> None:
        self.settings = settings
        self.store = FunctionStore(db)
        self.code = CodeStore(settings.data_dir)
        self.environments = environments
        self.network: NetworkPreparer | None = None  # set by the VPC work
        self.vpc_validator: VpcConfigValidator | None = None  # set with the EC2 store
        # While an update is InProgress the previous configuration keeps serving invokes (AWS);
        # in memory only: a restart mid-update serves the new one once it has settled.
        self._previous: dict[tuple[str, str], FunctionRecord] = {}
        # Last invoke per function (monotonic), for Inactive; a start counts as a use.
        self._last_used: dict[tuple[str, str], float] = {}
        self._started_at = time.monotonic()
        self._idle_watch: asyncio.Task[None] | None = None
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        # Σ reserved concurrency per region, read on every invoke: kept here, not re-summed.
        self._reserved: dict[str, int] = {}

    async def start(self) -> None:
        # A stop in the middle of a transition resumes it: reconcile, don't remember.
        for record in self.store.all():
            if record.state == "Pending" or record.last_update_status == "InProgress":
                self._spawn_settle(record.region, record.name)
        if self.network is not None:
            self._idle_watch = asyncio.get_running_loop().create_task(self._watch_idle())

    async def stop(self) -> None:
        tasks = list(self._tasks)
        if self._idle_watch is not None:
            tasks.append(self._idle_watch)
            self._idle_watch = None
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- names ------------------------------------------------------------------------------
    def arn(self, region: str, name: str, qualifier: str | None = None) -> str:
        base = f"arn:aws:lambda:{region}:{self.settings.account_id}:function:{name}"
        return f"{base}:{qualifier}" if qualifier else base

    def resolve(self, region: str, ref: str,
                qualifier: str | None = None) -> tuple[str, str | None]:
        """(name, qualifier) from a name, partial ARN or ARN plus an optional Qualifier."""
        m = FUNCTION_REF.fullmatch(ref)
        if m is None:
            raise ResourceNotFound(f"Function not found: {self.arn(region, ref)}")
        name, derived = m.group("name"), m.group("qualifier")
        if derived and qualifier and derived != qualifier:
            raise InvalidParameterValue(
                "The derived qualifier from the function name does not match the specified "
                "qualifier.")
        qualifier = qualifier or derived
        wrong_region = m.group("region") and m.group("region") != region
        wrong_account = m.group("account") and m.group("account") != self.settings.account_id
        if wrong_region or wrong_account:
            raise ResourceNotFound(f"Function not found: {ref}")
        return name, qualifier

    def get(self, region: str, ref: str, qualifier: str | None = None) -> FunctionRecord:
        name, qualifier = self.resolve(region, ref, qualifier)
        record = self.store.get(region, name)
        # Only $LATEST exists here (no published versions or aliases).
        if record is None or (qualifier and qualifier != LATEST):
            raise ResourceNotFound(f"Function not found: {self.arn(region, name, qualifier)}")
        return record

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
        zip_bytes = _zip_from(params.get("Code") or {})
        record = FunctionRecord(
            region=region, name=name, arn=self.arn(region, name), runtime=runtime,
            role=params["Role"], handler=handler, code_hex="", code_sha256="", code_size=0,
            revision_id="", last_modified="", description=params.get("Description", ""),
            timeout=params.get("Timeout", 3), memory_size=params.get("MemorySize", 128),
            environment=dict((params.get("Environment") or {}).get("Variables") or {}),
            tags=dict(params.get("Tags") or {}))
        _apply_options(record, params)
        self._check(record)
        self._check_vpc(record, params)
        if self.store.get(region, name) is not None:  # before the (slow) unzip
            raise ResourceConflict(f"Function already exist: {name}")
        stored = await self._store_code(zip_bytes)
        _set_code(record, stored)
        _touch(record)
        self._lifecycle_created(record)
        try:
            self.store.insert(record)
        except FunctionExists:
            raise ResourceConflict(f"Function already exist: {name}") from None
        self._last_used[(region, name)] = time.monotonic()
        if record.state == "Pending":
            self._spawn_settle(region, name)
        log.info("created %s", record.arn)
        return record

    async def update_code(self, region: str, params: dict[str, Any]) -> FunctionRecord:
        name, _ = self.get_name(region, params["FunctionName"])
        if params.get("ImageUri") or params.get("S3Bucket"):
            raise InvalidParameterValue(
                "Only ZipFile code is supported: upload the zip with ZipFile.")
        zip_bytes = _zip_from(params)
        async with self._lock(region, name):
            record = self._updatable(region, name, params.get("RevisionId"))
            stored = await self._store_code(zip_bytes)
            record = self._updatable(region, name, params.get("RevisionId"))
            if params.get("DryRun"):
                return record
            previous = replace(record)
            _set_code(record, stored)
            return await self._commit_update(previous, record)

    async def update_configuration(self, region: str, params: dict[str, Any]) -> FunctionRecord:
        name, _ = self.get_name(region, params["FunctionName"])
        async with self._lock(region, name):
            record = self._updatable(region, name, params.get("RevisionId"))
            updated = replace(record, environment=dict(record.environment),
                              vpc_config=dict(record.vpc_config))
            for key, attr in (("Role", "role"), ("Handler", "handler"),
                              ("Description", "description"), ("Timeout", "timeout"),
                              ("MemorySize", "memory_size"), ("Runtime", "runtime")):
                if key in params:
                    setattr(updated, attr, params[key])
            if "Environment" in params:
                updated.environment = dict((params["Environment"] or {}).get("Variables") or {})
            _apply_options(updated, params)
            self._check(updated)
            self._check_vpc(updated, params)
            return await self._commit_update(record, updated)

    async def delete(self, region: str, ref: str, qualifier: str | None = None) -> None:
        name, qualifier = self.resolve(region, ref, qualifier)
        if qualifier and qualifier != LATEST:
            raise ResourceNotFound(f"Function not found: {self.arn(region, name, qualifier)}")
        async with self._lock(region, name):
            record = self.store.get(region, name)
            if record is None:
                raise ResourceNotFound(f"Function not found: {self.arn(region, name)}")
            self.store.delete(region, name)
            self._reserved.pop(region, None)
            self._previous.pop((region, name), None)
            self._last_used.pop((region, name), None)
        await self.environments.retire((region, name))
        if self.network is not None:
            self._spawn(self._release_network(record))
        self._locks.pop((region, name), None)
        log.info("deleted %s", record.arn)

    def get_name(self, region: str, ref: str) -> tuple[str, None]:
        name, qualifier = self.resolve(region, ref)
        if qualifier and qualifier != LATEST:
            raise InvalidParameterValue(
                "Unsupported qualifier: only $LATEST can be updated.")
        return name, None

    # -- concurrency and account --------------------------------------------------------------
    def put_concurrency(self, region: str, ref: str, reserved: int) -> int:
        record = self.get(region, ref)
        others = self.store.reserved_total(region, excluding=record.name)
        if self.settings.account_concurrency - others - reserved < MIN_UNRESERVED:
            raise InvalidParameterValue(
                "Specified ReservedConcurrentExecutions for function decreases account's "
                f"UnreservedConcurrentExecution below its minimum value of [{MIN_UNRESERVED}].")
        record.reserved_concurrency = reserved
        self.store.save(record)
        self._reserved.pop(region, None)
        return reserved

    def delete_concurrency(self, region: str, ref: str) -> None:
        record = self.get(region, ref)
        record.reserved_concurrency = None
        self.store.save(record)
        self._reserved.pop(region, None)

    def unreserved_capacity(self, region: str) -> int:
        if region not in self._reserved:
            self._reserved[region] = self.store.reserved_total(region)
        return self.settings.account_concurrency - self._reserved[region]

    def account_settings(self, region: str) -> dict[str, dict[str, int]]:
        count, code_size = self.store.usage(region)
        return {
            "AccountLimit": {
                "TotalCodeSize": TOTAL_CODE_SIZE,
                "CodeSizeUnzipped": UNZIPPED_LIMIT,
                "CodeSizeZipped": ZIPPED_LIMIT,
                "ConcurrentExecutions": self.settings.account_concurrency,
                "UnreservedConcurrentExecutions": self.unreserved_capacity(region),
            },
            "AccountUsage": {"TotalCodeSize": code_size, "FunctionCount": count},
        }

    # -- what execution needs ------------------------------------------------------------------
    def check_invocable(self, record: FunctionRecord) -> None:
        """Raise what AWS answers an invoke in this state; an Inactive function starts being
        restored (Pending/Restoring) and this invoke gets 502 ResourceNotReadyException."""
        if record.state == "Active":
            return
        if record.state == "Inactive":
            self._restore(record.region, record.name)
            raise ResourceNotReady(pending_message("Inactive"))
        raise ResourceConflict(pending_message(record.state))

    def serving_spec(self, record: FunctionRecord) -> FunctionSpec:
        """What an invoke runs now: the previous configuration while an update is InProgress.
        Counts as a use of the function (Inactive is measured from the last one)."""
        key = (record.region, record.name)
        self._last_used[key] = time.monotonic()
        previous = self._previous.get(key)
        if previous is not None and record.last_update_status == "InProgress":
            return self.spec_for(previous)
        return self.spec_for(record)

    def vpc_configs_in_use(self) -> list[tuple[str, str, dict[str, object]]]:
        """(region, function name, VpcConfig) of every configuration that needs its network:
        functions being created, active or restoring, and previous configurations still
        serving during an update. Inactive and Failed functions hold none."""
        out = [(r.region, r.name, r.vpc_config) for r in self.store.all()
               if r.has_vpc and r.state in ("Pending", "Active")]
        out += [(r.region, r.name, r.vpc_config) for r in self._previous.values() if r.has_vpc]
        return out

    def spec_for(self, record: FunctionRecord) -> FunctionSpec:
        vpc = None
        if record.has_vpc and record.vpc_config.get("VpcId"):
            vpc = VpcAttachment(str(record.vpc_config["VpcId"]),
                                tuple(record.vpc_config.get("SubnetIds") or ()),
                                tuple(record.vpc_config.get("SecurityGroupIds") or ()))
        return FunctionSpec(
            region=record.region, name=record.name, arn=record.arn, version=record.version,
            runtime=record.runtime, handler=record.handler, memory_mb=record.memory_size,
            timeout_s=record.timeout, environment=dict(record.environment),
            code_sha256=record.code_hex, code_dir=self.code.directory(record.code_hex),
            revision_id=record.revision_id, reserved_concurrency=record.reserved_concurrency,
            vpc=vpc)

    def code_zip(self, code_hex: str) -> bytes | None:
        return self.code.read_zip(code_hex) if re.fullmatch(r"[0-9a-f]{64}", code_hex) else None

    # -- checks ---------------------------------------------------------------------------------
    def _check(self, record: FunctionRecord) -> None:
        if record.runtime not in supported_runtimes():
            raise InvalidParameterValue(
                f"The runtime parameter of {record.runtime} is not supported for this function")
        if not 128 <= record.memory_size <= MAX_MEMORY_MB:
            raise InvalidParameterValue(
                "'MemorySize' value failed to satisfy constraint: Member must have value "
                + ("greater than or equal to 128" if record.memory_size < 128
                   else f"less than or equal to {MAX_MEMORY_MB}"))
        if not 1 <= record.timeout <= MAX_TIMEOUT_S:
            raise InvalidParameterValue(
                "'Timeout' value failed to satisfy constraint: Member must have value "
                + ("greater than or equal to 1" if record.timeout < 1
                   else f"less than or equal to {MAX_TIMEOUT_S}"))
        if not 512 <= record.ephemeral_storage_mb <= 10_240:
            raise InvalidParameterValue(
                "'EphemeralStorage.Size' value failed to satisfy constraint: Member must have "
                "value between 512 and 10240")
        reserved = sorted(k for k in record.environment if k in RESERVED_ENV)
        if reserved:
            raise InvalidParameterValue(
                "Lambda was unable to configure your environment variables because the "
                "environment variables you have provided contains reserved keys that are "
                f"currently not supported for modification. Reserved keys used in this "
                f"request: {', '.join(reserved)}")
        measured = json.dumps(record.environment, separators=(",", ":"))
        if len(measured.encode()) > ENV_LIMIT_BYTES:
            raise InvalidParameterValue(
                "Lambda was unable to configure your environment variables because the "
                "environment variables you have provided exceeded the 4KB limit. "
                f"String measured: {measured[:200]}...")

    def _check_vpc(self, record: FunctionRecord, params: dict[str, Any]) -> None:
        """Validate a VpcConfig given in this request against the EC2 store; VpcId is known
        from the subnets at once (as AWS answers it)."""
        if "VpcConfig" not in params or self.vpc_validator is None:
            return
        try:
            record.vpc_config["VpcId"] = self.vpc_validator(record.region, record.vpc_config)
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

    async def _commit_update(self, previous: FunctionRecord,
                             record: FunctionRecord) -> FunctionRecord:
        _touch(record)
        self._lifecycle_update_started(record)
        if previous.state == "Active":
            self._previous[(record.region, record.name)] = previous
        self.store.save(record)
        # Warm environments run the old revision: retire them so the next invoke is fresh.
        await self.environments.retire((record.region, record.name))
        self._spawn_settle(record.region, record.name)
        return record

    def _lock(self, region: str, name: str) -> asyncio.Lock:
        return self._locks.setdefault((region, name), asyncio.Lock())

    # -- Lifecycle: every State / LastUpdateStatus transition --------------------------------
    def _needs_network(self, record: FunctionRecord) -> bool:
        return record.has_vpc and self.network is not None

    def _lifecycle_created(self, record: FunctionRecord) -> None:
        if self._needs_network(record):
            record.state, record.state_reason_code = "Pending", "Creating"
            record.state_reason = "The function is being created."
        else:
            record.state, record.state_reason, record.state_reason_code = "Active", None, None
        record.last_update_status = "Successful"
        record.last_update_status_reason = record.last_update_status_reason_code = None

    def _lifecycle_update_started(self, record: FunctionRecord) -> None:
        record.last_update_status = "InProgress"
        record.last_update_status_reason = "The function is being updated."
        record.last_update_status_reason_code = None

    def _lifecycle_settled(self, record: FunctionRecord, error: AwsError | None) -> None:
        """The background part of a create/update ended (ok, or with an AWS error)."""
        reason = error.message if error else None
        code = (error.extra.get("ReasonCode") or "InternalError") if error else None
        if record.state == "Pending":
            record.state = "Failed" if error else "Active"
            record.state_reason, record.state_reason_code = reason, code
        if record.last_update_status == "InProgress" or error:
            record.last_update_status = "Failed" if error else "Successful"
            record.last_update_status_reason = reason
            record.last_update_status_reason_code = code

    def _lifecycle_restoring(self, record: FunctionRecord) -> None:
        record.state, record.state_reason_code = "Pending", "Restoring"
        record.state_reason = "The function is being restored."

    def _lifecycle_idle(self, record: FunctionRecord) -> None:
        # [?] AWS's exact StateReason for Idle is not documented.
        record.state, record.state_reason_code = "Inactive", "Idle"
        record.state_reason = ("The function is inactive because it has been idle for an "
                               "extended period.")

    def _spawn_settle(self, region: str, name: str) -> None:
        self._spawn(self._settle(region, name))

    async def _settle(self, region: str, name: str) -> None:
        record = self.store.get(region, name)
        if record is None:
            return
        key = (region, name)
        error: AwsError | None = None
        vpc_id = ""
        network = self.network
        if network is not None and record.has_vpc:
            try:
                vpc_id = await network.prepare(record)
            except AwsError as e:
                error = e
            except Exception as e:  # noqa: BLE001 - any failure makes the function Failed
                log.exception("preparing the network of %s failed", record.arn)
                error = AwsError("ServiceException", f"Network setup failed: {e}", 500)
        current = self.store.get(region, name)
        if current is None or current.revision_id != record.revision_id:
            return  # deleted or changed meanwhile; that change settles itself
        previous = self._previous.pop(key, None)
        if error is None and record.has_vpc:
            current.vpc_config["VpcId"] = vpc_id
        if error is not None and previous is not None:
            # [?] A failed update leaves the function on its previous configuration (it served
            # every invoke meanwhile); only the failure is reported.
            current = replace(previous, revision_id=current.revision_id,
                              last_modified=current.last_modified,
                              reserved_concurrency=current.reserved_concurrency,
                              tags=current.tags, last_update_status="InProgress")
        self._lifecycle_settled(current, error)
        self.store.save(current)
        if error is None and current.state == "Active":
            self._last_used.setdefault(key, time.monotonic())
        if network is not None and (error is not None or previous is not None):
            await self._release_network(current)  # what no configuration uses any more

    def _restore(self, region: str, name: str) -> None:
        """Inactive → Pending/Restoring → (ENIs made again) Active."""
        record = self.store.get(region, name)
        if record is None or record.state != "Inactive":
            return
        self._lifecycle_restoring(record)
        self.store.save(record)
        self._last_used[(region, name)] = time.monotonic()
        self._spawn_settle(region, name)

    async def _watch_idle(self) -> None:
        period = min(60.0, max(0.2, self.settings.inactive_after_s / 4))
        while True:
            await asyncio.sleep(period)
            try:
                await self._deactivate_idle()
            except Exception:  # noqa: BLE001 - logged; the next round tries again
                log.exception("making idle functions Inactive failed")

    def _idle(self, record: FunctionRecord, now: float) -> bool:
        key = (record.region, record.name)
        return (record.has_vpc and record.state == "Active"
                and record.last_update_status != "InProgress"
                and now - self._last_used.get(key, self._started_at)
                >= self.settings.inactive_after_s
                and not self.environments.in_flight(key))

    async def _deactivate_idle(self) -> None:
        """A VPC function idle longer than `inactive_after_s` goes Inactive/Idle; its
        environments are retired and ENIs no other function uses are released."""
        for record in self.store.all():
            if not self._idle(record, time.monotonic()):
                continue
            async with self._lock(record.region, record.name):
                current = self.store.get(record.region, record.name)
                if current is None or not self._idle(current, time.monotonic()):
                    continue
                self._lifecycle_idle(current)
                self.store.save(current)
            log.info("%s is Inactive (idle)", current.arn)
            await self.environments.retire((current.region, current.name))
            await self._release_network(current)

    async def _release_network(self, record: FunctionRecord) -> None:
        if self.network is None:
            return
        try:
            await self.network.release(record)
        except Exception:  # noqa: BLE001 - logged; the VPC reconciler retries
            log.exception("releasing the network of %s failed", record.arn)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _zip_from(code: dict[str, Any]) -> bytes:
    if code.get("ImageUri"):
        raise InvalidParameterValue(
            "Container images are not supported: lambdaplane runs zip deployment packages.")
    if code.get("S3Bucket") or code.get("S3Key"):
        raise InvalidParameterValue(
            "Code from S3 is not supported: upload the zip with Code.ZipFile.")
    data = code.get("ZipFile")
    if not data:
        raise InvalidParameterValue("Please provide a source for function code: Code.ZipFile "
                                    "must hold the deployment package (a zip file).")
    return data


def _apply_options(record: FunctionRecord, params: dict[str, Any]) -> None:
    """The optional settings CreateFunction and UpdateFunctionConfiguration share."""
    if "Architectures" in params:
        record.architectures = list(params["Architectures"])
    if "EphemeralStorage" in params:
        record.ephemeral_storage_mb = params["EphemeralStorage"]["Size"]
    if "TracingConfig" in params:
        record.tracing_mode = params["TracingConfig"].get("Mode", "PassThrough")
    if "LoggingConfig" in params:
        record.logging_config = dict(params["LoggingConfig"])
    if "DeadLetterConfig" in params:
        record.dead_letter_target = params["DeadLetterConfig"].get("TargetArn") or None
    if "KMSKeyArn" in params:
        record.kms_key_arn = params["KMSKeyArn"] or None
    if "VpcConfig" in params:
        vpc = params["VpcConfig"] or {}
        record.vpc_config = {
            "SubnetIds": sorted(vpc.get("SubnetIds") or []),
            "SecurityGroupIds": sorted(vpc.get("SecurityGroupIds") or []),
            "Ipv6AllowedForDualStack": bool(vpc.get("Ipv6AllowedForDualStack", False)),
            "VpcId": "",
        }


def _set_code(record: FunctionRecord, stored: StoredCode) -> None:
    record.code_hex, record.code_sha256, record.code_size = (
        stored.hex, stored.sha256_b64, stored.size)


def _touch(record: FunctionRecord) -> None:
    record.revision_id = str(uuid.uuid4())
    record.last_modified = aws_timestamp()
