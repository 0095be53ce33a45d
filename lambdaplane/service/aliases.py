"""Aliases: Create/Get/Update/Delete/ListAliases with AWS's checks (the versions must exist,
at most one additional version, weights in [0, 1], no $LATEST in a weighted alias), RevisionId
preconditions, and `pick`, the weighted choice an invoke of the alias makes between its primary
and additional version. No HTTP."""
from __future__ import annotations

import logging
import random
import uuid
from typing import TYPE_CHECKING, Any

from ..errors import InvalidParameterValue, ResourceConflict, ResourceNotFound
from ..store.versions import AliasRecord
from .versions import LATEST, Versions, paginate, precondition_failed

if TYPE_CHECKING:
    from .functions import FunctionService

log = logging.getLogger("lambdaplane.aliases")


class Aliases:
    def __init__(self, functions: FunctionService, versions: Versions) -> None:
        self.functions = functions
        self.versions = versions
        self.store = versions.store
        self._random = random.Random()

    def create(self, region: str, ref: str, alias_name: str, function_version: str,
               description: str = "", routing: dict[str, Any] | None = None) -> AliasRecord:
        name = self._function(region, ref)
        function_version, weights = self._checked(region, name, function_version, routing)
        arn = self.functions.arn(region, name, alias_name)
        if self.store.alias(region, name, alias_name) is not None:
            raise ResourceConflict(f"Alias already exists: {arn}")
        record = AliasRecord(region, name, alias_name, arn, function_version,
                             str(uuid.uuid4()), description, weights)
        self.store.put_alias(record)
        log.info("created alias %s → %s %s", arn, function_version, weights or "")
        return record

    def get(self, region: str, ref: str, alias_name: str) -> AliasRecord:
        name = self._function(region, ref)
        alias = self.store.alias(region, name, alias_name)
        if alias is None:
            raise ResourceNotFound(
                f"Alias not found: {self.functions.arn(region, name, alias_name)}")
        return alias

    def update(self, region: str, ref: str, alias_name: str, params: dict[str, Any]
               ) -> AliasRecord:
        alias = self.get(region, ref, alias_name)
        if params.get("RevisionId") and params["RevisionId"] != alias.revision_id:
            raise precondition_failed()
        version = params.get("FunctionVersion", alias.function_version)
        routing = params.get("RoutingConfig", {"AdditionalVersionWeights": alias.weights})
        version, alias.weights = self._checked(region, alias.function, version, routing)
        alias.function_version = version
        if "Description" in params:
            alias.description = params["Description"]
        alias.revision_id = str(uuid.uuid4())
        self.store.put_alias(alias)
        return alias

    def delete(self, region: str, ref: str, alias_name: str) -> None:
        name = self._function(region, ref)
        # AWS answers 204 for an alias that does not exist
        if self.store.delete_alias(region, name, alias_name):
            self.store.forget_qualifier(region, name, alias_name)

    def page(self, region: str, ref: str, function_version: str | None, marker: str | None,
             max_items: int | None) -> tuple[list[AliasRecord], str | None]:
        name = self._function(region, ref)
        aliases = [a for a in self.store.aliases(region, name)
                   if function_version is None or a.function_version == function_version
                   or function_version in a.weights]
        return paginate(aliases, marker, max_items, lambda a: a.name)

    def pick(self, alias: AliasRecord) -> str:
        """The version this invoke of the alias runs: an additional version with its weight's
        probability, else the primary."""
        draw = self._random.random()
        for version, weight in alias.weights.items():
            if draw < weight:
                return version
            draw -= weight
        return alias.function_version

    # -- checks -----------------------------------------------------------------------------------
    def _function(self, region: str, ref: str) -> str:
        name = self.versions.unqualified(region, ref)
        if self.functions.store.get(region, name) is None:
            raise ResourceNotFound(f"Function not found: {self.functions.arn(region, name)}")
        return name

    def _checked(self, region: str, name: str, version: str,
                 routing: dict[str, Any] | None) -> tuple[str, dict[str, float]]:
        """(the primary version, with $LATEST.PUBLISHED resolved; the checked weights)."""
        if version == "$LATEST.PUBLISHED":
            latest = self.store.latest(region, name)
            if latest is None:
                raise ResourceNotFound(
                    f"Function not found: {self.functions.arn(region, name, version)}")
            version = latest.version
        self.versions.by_version(region, name, version)  # ResourceNotFound
        weights = dict((routing or {}).get("AdditionalVersionWeights") or {})
        if not weights:
            return version, {}
        if len(weights) > 1:
            raise InvalidParameterValue(
                "Number of items in AdditionalVersionWeights cannot be greater than 1")
        if version == LATEST:
            raise InvalidParameterValue(
                "$LATEST is not supported for an alias pointing to more than 1 version")
        for extra, weight in weights.items():
            if extra == version:
                raise InvalidParameterValue(
                    f"Invalid function version {extra}. Function version {extra} is already "
                    f"included in routing configuration.")
            if not 0.0 <= weight <= 1.0:
                raise InvalidParameterValue(
                    f"Invalid weight {weight} for function version {extra}: weights must be "
                    f"between 0.0 and 1.0")
            if self.store.get(region, name, extra) is None:
                raise InvalidParameterValue(
                    f"Function version {extra} does not exist: "
                    f"{self.functions.arn(region, name, extra)}")
        return version, {k: float(v) for k, v in weights.items()}
