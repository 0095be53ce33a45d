"""A function's State and LastUpdateStatus, and everything that moves them in the background.
Every transition is in the `transitions` section below: Pending while a VPC function's ENIs are
made (`network`), an update InProgress while the previous configuration keeps serving invokes,
Inactive after a VPC function has been idle for `settings.inactive_after_s` (its ENIs released)
and Pending/Restoring on the next invoke. Also the per-function lock that orders updates,
deletes and going idle. Used by FunctionService (service/functions.py), which owns the API;
no HTTP, no kernel calls."""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace
from typing import Any, Protocol

from ..config import Settings
from ..errors import AwsError, ResourceConflict, ResourceNotReady
from ..model.vpc_config import VpcConfig
from ..store.functions import FunctionRecord, FunctionStore
from .function_config import touch

log = logging.getLogger("lambdaplane.functions")


class ExecutionEnvironmentsLike(Protocol):
    async def retire(self, key: tuple[str, str]) -> None: ...

    def in_flight(self, key: tuple[str, str]) -> int: ...


class NetworkPreparer(Protocol):
    """What the VPC work plugs in: make (or reuse) the function's Hyperplane ENIs and return
    the VPC id; raise AwsError (with a StateReasonCode as `extra["ReasonCode"]`) on failure."""

    async def prepare(self, record: FunctionRecord) -> str: ...

    async def release(self, record: FunctionRecord) -> None: ...


def pending_message(state: str) -> str:
    return ("The operation cannot be performed at this time. The function is currently in the "
            f"following state: {state}")


class FunctionLifecycle:
    def __init__(self, settings: Settings, store: FunctionStore,
                 environments: ExecutionEnvironmentsLike) -> None:
        self.settings = settings
        self.store = store
        self.environments = environments
        self.network: NetworkPreparer | None = None  # set by the VPC work
        # While an update is InProgress the previous configuration keeps serving invokes (AWS);
        # in memory only: a restart mid-update serves the new one once it has settled.
        self._previous: dict[tuple[str, str], FunctionRecord] = {}
        # Last invoke per function (monotonic), for Inactive; a start counts as a use.
        self._last_used: dict[tuple[str, str], float] = {}
        self._started_at = time.monotonic()
        self._idle_watch: asyncio.Task[None] | None = None
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._tasks: set[asyncio.Task[None]] = set()

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

    def lock(self, region: str, name: str) -> asyncio.Lock:
        return self._locks.setdefault((region, name), asyncio.Lock())

    # -- what the API side asks for -----------------------------------------------------------
    def start_create(self, record: FunctionRecord) -> None:
        """Give a new function, not yet stored, the State it starts in."""
        self._mark_created(record)

    def created(self, record: FunctionRecord) -> None:
        """A new function is stored: it counts as used; a Pending one settles in the
        background."""
        self._last_used[(record.region, record.name)] = time.monotonic()
        if record.state == "Pending":
            self._spawn_settle(record.region, record.name)

    async def commit_update(self, previous: FunctionRecord,
                            record: FunctionRecord) -> FunctionRecord:
        touch(record)
        self._mark_update_started(record)
        if previous.state == "Active":
            self._previous[(record.region, record.name)] = previous
        self.store.save(record)
        # Warm environments run the old revision: retire them so the next invoke is fresh.
        await self.environments.retire((record.region, record.name))
        self._spawn_settle(record.region, record.name)
        return record

    def forget(self, region: str, name: str) -> None:
        """A function is being deleted (under its lock): drop what is remembered of it."""
        self._previous.pop((region, name), None)
        self._last_used.pop((region, name), None)

    def deleted(self, record: FunctionRecord) -> None:
        """A deleted function's environments are retired: release its network and lock."""
        if self.network is not None:
            self._spawn(self._release_network(record))
        self._locks.pop((record.region, record.name), None)

    def check_invocable(self, record: FunctionRecord) -> None:
        """Raise what AWS answers an invoke in this state; an Inactive function starts being
        restored (Pending/Restoring) and this invoke gets 502 ResourceNotReadyException."""
        if record.state == "Active":
            return
        if record.state == "Inactive":
            self._restore(record.region, record.name)
            raise ResourceNotReady(pending_message("Inactive"))
        raise ResourceConflict(pending_message(record.state))

    def serving(self, record: FunctionRecord) -> FunctionRecord:
        """The configuration an invoke runs now: the previous one while an update is
        InProgress. Counts as a use of the function (Inactive is measured from the last one)."""
        key = (record.region, record.name)
        self._last_used[key] = time.monotonic()
        previous = self._previous.get(key)
        if previous is not None and record.last_update_status == "InProgress":
            return previous
        return record

    def vpc_configs_in_use(self) -> list[tuple[str, str, VpcConfig]]:
        """(region, function name, VpcConfig) of every configuration that needs its network:
        functions being created, active or restoring, and previous configurations still
        serving during an update. Inactive and Failed functions hold none."""
        out = [(r.region, r.name, r.vpc_config) for r in self.store.all()
               if r.vpc_config and r.vpc_config.attached and r.state in ("Pending", "Active")]
        out += [(r.region, r.name, r.vpc_config) for r in self._previous.values()
                if r.vpc_config and r.vpc_config.attached]
        return out

    # -- transitions: every State / LastUpdateStatus change ----------------------------------
    def _needs_network(self, record: FunctionRecord) -> bool:
        return record.has_vpc and self.network is not None

    def _mark_created(self, record: FunctionRecord) -> None:
        if self._needs_network(record):
            record.state, record.state_reason_code = "Pending", "Creating"
            record.state_reason = "The function is being created."
        else:
            record.state, record.state_reason, record.state_reason_code = "Active", None, None
        record.last_update_status = "Successful"
        record.last_update_status_reason = record.last_update_status_reason_code = None

    def _mark_update_started(self, record: FunctionRecord) -> None:
        record.last_update_status = "InProgress"
        record.last_update_status_reason = "The function is being updated."
        record.last_update_status_reason_code = None

    def _mark_settled(self, record: FunctionRecord, error: AwsError | None) -> None:
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

    def _mark_restoring(self, record: FunctionRecord) -> None:
        record.state, record.state_reason_code = "Pending", "Restoring"
        record.state_reason = "The function is being restored."

    def _mark_idle(self, record: FunctionRecord) -> None:
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
            except Exception as e:  # any failure makes the function Failed
                log.exception("preparing the network of %s failed", record.arn)
                error = AwsError("ServiceException", f"Network setup failed: {e}", 500)
        current = self.store.get(region, name)
        if current is None or current.revision_id != record.revision_id:
            return  # deleted or changed meanwhile; that change settles itself
        previous = self._previous.pop(key, None)
        if error is None and record.has_vpc:
            current.vpc_config = current.vpc_config.with_vpc_id(vpc_id) \
                if current.vpc_config is not None else None
        if error is not None and previous is not None:
            # [?] A failed update leaves the function on its previous configuration (it served
            # every invoke meanwhile); only the failure is reported.
            current = replace(previous, revision_id=current.revision_id,
                              last_modified=current.last_modified,
                              reserved_concurrency=current.reserved_concurrency,
                              tags=current.tags, last_update_status="InProgress")
        self._mark_settled(current, error)
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
        self._mark_restoring(record)
        self.store.save(record)
        self._last_used[(region, name)] = time.monotonic()
        self._spawn_settle(region, name)

    async def _watch_idle(self) -> None:
        period = min(60.0, max(0.2, self.settings.inactive_after_s / 4))
        while True:
            await asyncio.sleep(period)
            try:
                await self._deactivate_idle()
            except Exception:  # logged; the next round tries again
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
            async with self.lock(record.region, record.name):
                current = self.store.get(record.region, record.name)
                if current is None or not self._idle(current, time.monotonic()):
                    continue
                self._mark_idle(current)
                self.store.save(current)
            log.info("%s is Inactive (idle)", current.arn)
            await self.environments.retire((current.region, current.name))
            await self._release_network(current)

    async def _release_network(self, record: FunctionRecord) -> None:
        if self.network is None:
            return
        try:
            await self.network.release(record)
        except Exception:  # logged; the VPC reconciler retries
            log.exception("releasing the network of %s failed", record.arn)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

