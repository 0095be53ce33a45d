"""Whether a function's runtime can run on this host, as its State says it: a runtime AWS
accepts (service/runtime_names.py) but not installed here (sandbox/runtimes/registry.py)
makes the function Failed with StateReasonCode InvalidRuntime and a StateReason saying what
to install or which `serve --runtime` flag maps it; invoking it then gets AWS's answer for a
Failed function (ResourceConflictException, service/function_lifecycle.py). Installing or
mapping the runtime and restarting the server (or updating the function) makes it Active.
No HTTP, no kernel calls."""
from __future__ import annotations

import logging

from ..sandbox.runtimes import registry
from ..store.functions import FunctionRecord, FunctionStore

log = logging.getLogger("lambdaplane.functions")
INVALID_RUNTIME = "InvalidRuntime"


def missing(runtime: str) -> str | None:
    """The StateReason if `runtime` cannot run here, else None."""
    return None if registry.get(runtime) is not None else registry.missing_reason(runtime)


def mark(record: FunctionRecord) -> bool:
    """Failed/InvalidRuntime if its runtime is missing; back to Active if it was Failed only
    for that and the runtime is here now. True if the state changed."""
    reason = missing(record.runtime)
    if reason is not None:
        changed = (record.state, record.state_reason) != ("Failed", reason)
        record.state, record.state_reason = "Failed", reason
        record.state_reason_code = INVALID_RUNTIME
        return changed
    if record.state == "Failed" and record.state_reason_code == INVALID_RUNTIME:
        record.state, record.state_reason, record.state_reason_code = "Active", None, None
        return True
    return False


def reconcile(store: FunctionStore) -> None:
    """At server start: what runs here may have changed (an interpreter installed, a
    --runtime flag added or dropped)."""
    for record in store.all():
        if record.state not in ("Active", "Failed"):
            continue  # Pending/Inactive settle on their own; their runtime is checked then
        if mark(record):
            store.save(record)
            log.info("%s is %s (%s)", record.arn, record.state, record.runtime)
