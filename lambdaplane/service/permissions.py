"""Resource-based policies of functions: AddPermission / RemovePermission / GetPolicy per
qualifier (unqualified = $LATEST, a version or an alias), in AWS's policy JSON (statement ids,
principals, the SourceArn / SourceAccount / PrincipalOrgID / FunctionUrlAuthType /
EventSourceToken conditions), duplicate statement ids, RevisionId preconditions and the 20 KB
size limit; and `allows_public_url`, the rule function URLs with AuthType NONE are held to.
No HTTP."""
from __future__ import annotations

import json
import re
import uuid
from typing import TYPE_CHECKING, Any

from ..errors import AwsError, InvalidParameterValue, ResourceConflict, ResourceNotFound
from .versions import LATEST, precondition_failed

if TYPE_CHECKING:
    from .functions import FunctionService

POLICY = "policy"
POLICY_LIMIT = 20_480


def principal_of(principal: str, account_id: str) -> Any:
    """AddPermission's Principal as a policy's: *, a service, an account or an ARN."""
    if principal == "*":
        return "*"
    if re.fullmatch(r"\d{12}", principal):
        return {"AWS": f"arn:aws:iam::{principal}:root"}
    if principal.startswith("arn:"):
        return {"AWS": principal}
    if "." in principal:
        return {"Service": principal}
    raise InvalidParameterValue(
        "The provided principal was invalid. Please check the principal and try again.")


def _conditions(p: dict[str, Any]) -> dict[str, dict[str, str]]:
    condition: dict[str, dict[str, str]] = {}
    for member, operator, key in (("SourceAccount", "StringEquals", "AWS:SourceAccount"),
                                  ("SourceArn", "ArnLike", "AWS:SourceArn"),
                                  ("PrincipalOrgID", "StringEquals", "aws:PrincipalOrgID"),
                                  ("FunctionUrlAuthType", "StringEquals",
                                   "lambda:FunctionUrlAuthType"),
                                  ("EventSourceToken", "StringEquals",
                                   "lambda:EventSourceToken")):
        if p.get(member):
            condition.setdefault(operator, {})[key] = p[member]
    if p.get("InvokedViaFunctionUrl"):
        condition.setdefault("Bool", {})["lambda:InvokedViaFunctionUrl"] = "true"
    return condition


class Permissions:
    def __init__(self, functions: FunctionService) -> None:
        self.functions = functions
        self.store = functions.versions.store

    def _target(self, region: str, ref: str, qualifier: str | None) -> tuple[str, str, str]:
        """(function name, policy key, resource ARN); the qualifier must exist."""
        name, qualifier = self.functions.resolve(region, ref, qualifier)
        self.functions.get(region, name, qualifier)  # ResourceNotFound
        key = "" if qualifier in (None, LATEST) else qualifier
        return name, key, self.functions.arn(region, name, key or None)

    def _document(self, region: str, name: str, key: str) -> dict[str, Any] | None:
        document: dict[str, Any] | None = self.store.extra(region, name, key, POLICY)
        return document

    def add(self, region: str, ref: str, p: dict[str, Any]) -> dict[str, Any]:
        name, key, resource = self._target(region, ref, p.get("Qualifier"))
        stored = self._document(region, name, key) or {
            "policy": {"Version": "2012-10-17", "Id": "default", "Statement": []},
            "revision": str(uuid.uuid4())}
        if p.get("RevisionId") and p["RevisionId"] != stored["revision"]:
            raise precondition_failed()
        statements = stored["policy"]["Statement"]
        if any(s["Sid"] == p["StatementId"] for s in statements):
            raise ResourceConflict(
                f"The statement id ({p['StatementId']}) provided already exists. Please "
                f"provide a new statement id, or remove the existing statement.")
        if p.get("FunctionUrlAuthType") and p["Action"] not in (
                "lambda:InvokeFunctionUrl", "lambda:*", "*"):
            raise InvalidParameterValue(
                "The FunctionUrlAuthType condition applies only to the "
                "lambda:InvokeFunctionUrl action.")
        statement: dict[str, Any] = {
            "Sid": p["StatementId"], "Effect": "Allow",
            "Principal": principal_of(p["Principal"], self.functions.settings.account_id),
            "Action": p["Action"], "Resource": resource}
        condition = _conditions(p)
        if condition:
            statement["Condition"] = condition
        statements.append(statement)
        size = len(json.dumps(stored["policy"], separators=(",", ":")))
        if size > POLICY_LIMIT:
            raise AwsError("PolicyLengthExceededException",
                           f"The final policy size ({size}) is bigger than the limit "
                           f"({POLICY_LIMIT}).", 400)
        stored["revision"] = str(uuid.uuid4())
        self.store.put_extra(region, name, key, POLICY, stored)
        return statement

    def remove(self, region: str, ref: str, statement_id: str, qualifier: str | None,
               revision_id: str | None) -> None:
        name, key, _ = self._target(region, ref, qualifier)
        stored = self._document(region, name, key)
        if stored is None:
            raise ResourceNotFound("No policy is associated with the given resource.")
        if revision_id and revision_id != stored["revision"]:
            raise precondition_failed()
        statements = stored["policy"]["Statement"]
        kept = [s for s in statements if s["Sid"] != statement_id]
        if len(kept) == len(statements):
            raise ResourceNotFound(f"Statement {statement_id} is not found in resource policy.")
        if not kept:
            self.store.delete_extra(region, name, key, POLICY)
            return
        stored["policy"]["Statement"] = kept
        stored["revision"] = str(uuid.uuid4())
        self.store.put_extra(region, name, key, POLICY, stored)

    def get(self, region: str, ref: str, qualifier: str | None) -> tuple[str, str]:
        """(the policy JSON, its RevisionId)."""
        name, key, _ = self._target(region, ref, qualifier)
        stored = self._document(region, name, key)
        if stored is None:
            raise ResourceNotFound("The resource you requested does not exist.")
        return json.dumps(stored["policy"], separators=(",", ":")), stored["revision"]

    def allows_public_url(self, region: str, name: str, key: str) -> bool:
        """AuthType NONE: a statement must allow lambda:InvokeFunctionUrl to everyone (AWS's
        rule; without it the URL answers 403)."""
        stored = self._document(region, name, key)
        for statement in (stored or {}).get("policy", {}).get("Statement", []):
            if statement.get("Effect") != "Allow" or statement.get("Principal") != "*":
                continue
            if statement.get("Action") not in ("lambda:InvokeFunctionUrl", "lambda:*", "*"):
                continue
            condition = statement.get("Condition") or {}
            auth_type = condition.get("StringEquals", {}).get("lambda:FunctionUrlAuthType")
            if auth_type not in (None, "NONE"):
                continue
            if set(condition) - {"StringEquals"} or \
                    set(condition.get("StringEquals", {})) - {"lambda:FunctionUrlAuthType"}:
                continue  # other conditions (source account, org) cannot hold for the public
            return True
        return False
