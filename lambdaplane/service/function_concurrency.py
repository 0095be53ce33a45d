"""Reserved concurrency and the account's settings, for the function rules
(service/functions.py): PutFunctionConcurrency / DeleteFunctionConcurrency with AWS's minimum
of unreserved concurrency, the unreserved capacity every invoke reads (Σ reserved per region,
kept here rather than summed again per invoke, forgotten on every change), and
GetAccountSettings' limits and usage. No HTTP, no kernel calls."""
from __future__ import annotations

from collections.abc import Callable

from ..config import Settings
from ..errors import InvalidParameterValue
from ..store.code import UNZIPPED_LIMIT, ZIPPED_LIMIT
from ..store.functions import FunctionRecord, FunctionStore

MIN_UNRESERVED = 100  # AWS keeps this much of the account's concurrency unreserved
TOTAL_CODE_SIZE = 80_530_636_800  # AWS: 75 GB of code per region


class FunctionConcurrency:
    """`lookup(region, ref)` finds the unqualified function (raising Lambda's errors);
    `versions_code_size(region)` is what the published versions' code adds to the usage."""

    def __init__(self, settings: Settings, store: FunctionStore,
                 lookup: Callable[[str, str], FunctionRecord],
                 versions_code_size: Callable[[str], int]) -> None:
        self.settings = settings
        self.store = store
        self._lookup = lookup
        self._versions_code_size = versions_code_size
        self._reserved: dict[str, int] = {}  # Σ reserved concurrency per region

    def forget(self, region: str) -> None:
        """The region's sum is read again on next use (a function went or changed)."""
        self._reserved.pop(region, None)

    def put_concurrency(self, region: str, ref: str, reserved: int) -> int:
        record = self._lookup(region, ref)
        others = self.store.reserved_total(region, excluding=record.name)
        if self.settings.account_concurrency - others - reserved < MIN_UNRESERVED:
            raise InvalidParameterValue(
                "Specified ReservedConcurrentExecutions for function decreases account's "
                f"UnreservedConcurrentExecution below its minimum value of [{MIN_UNRESERVED}].")
        record.reserved_concurrency = reserved
        self.store.save(record)
        self.forget(region)
        return reserved

    def delete_concurrency(self, region: str, ref: str) -> None:
        record = self._lookup(region, ref)
        record.reserved_concurrency = None
        self.store.save(record)
        self.forget(region)

    def unreserved_capacity(self, region: str) -> int:
        if region not in self._reserved:
            self._reserved[region] = self.store.reserved_total(region)
        return self.settings.account_concurrency - self._reserved[region]

    def account_settings(self, region: str) -> dict[str, dict[str, int]]:
        count, code_size = self.store.usage(region)
        code_size += self._versions_code_size(region)  # published versions keep their code
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
