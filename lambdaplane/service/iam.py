"""IAM's rules for roles and managed policies: names, paths, policy documents, tags, who may be
deleted, what may be attached — with IAM's own errors (NoSuchEntity, EntityAlreadyExists,
MalformedPolicyDocument, DeleteConflict, ValidationError, LimitExceeded). AWS-managed policies
(`arn:aws:iam::aws:policy/…`) are attachable by ARN without being stored. Also answers the one
question Lambda asks of IAM: may lambda.amazonaws.com assume this role? No HTTP here."""
from __future__ import annotations

import datetime as dt
import json
import re
import secrets
import string
from dataclasses import dataclass
from typing import Any

from ..config import Settings
from ..errors import AwsError
from ..store.db import Database
from ..store.iam import EntityExists, IamStore, ManagedPolicy, Role

NAME = re.compile(r"[\w+=,.@-]+")
PATH = re.compile(r"/|/[\u0021-\u007E]*/")
AWS_MANAGED = re.compile(r"arn:aws:iam::aws:policy(/[\u0021-\u007E]*/|/)([\w+=,.@-]+)")
ID_CHARS = string.ascii_uppercase + string.digits
MAX_TAGS = 50
DOCUMENT_LIMIT = {"trust": 2048, "inline": 10240, "managed": 6144}


def iam_error(code: str, message: str, status: int = 400) -> AwsError:
    return AwsError(code, message, status, "Sender")


def no_such_entity(message: str) -> AwsError:
    return iam_error("NoSuchEntity", message, 404)


def validation(value: object, where: str, constraint: str) -> AwsError:
    return iam_error("ValidationError", f"1 validation error detected: Value '{value}' at "
                                        f"'{where}' failed to satisfy constraint: {constraint}")


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_id(prefix: str) -> str:
    return prefix + "".join(secrets.choice(ID_CHARS) for _ in range(17))


def check_name(name: str | None, where: str, limit: int) -> str:
    if not name or len(name) > limit:
        raise validation(name, where, f"Member must have length less than or equal to {limit}")
    if not NAME.fullmatch(name):
        raise validation(name, where, "Member must satisfy regular expression pattern: "
                                      "[\\w+=,.@-]+")
    return name


def check_path(path: str | None) -> str:
    path = path or "/"
    if len(path) > 512 or not PATH.fullmatch(path):
        raise validation(path, "path", "Member must satisfy regular expression pattern: "
                                       "(\\u002F)|(\\u002F[\\u0021-\\u007E]+\\u002F)")
    return path


def check_document(document: str | None, kind: str) -> str:
    """The policy grammar's outline: JSON, an object, a Statement of statements each with an
    Effect of Allow/Deny. IAM answers MalformedPolicyDocument for anything else."""
    if not document:
        raise validation(document, "policyDocument", "Member must not be null")
    if len(document) > DOCUMENT_LIMIT[kind]:
        raise iam_error("LimitExceeded", f"Cannot exceed quota for PolicySize: "
                                         f"{DOCUMENT_LIMIT[kind]}", 409)
    try:
        parsed = json.loads(document)
    except ValueError:
        raise iam_error("MalformedPolicyDocument", "This policy contains invalid Json") from None
    if not isinstance(parsed, dict):
        raise iam_error("MalformedPolicyDocument", "This policy contains invalid Json")
    statements = parsed.get("Statement")
    if isinstance(statements, dict):
        statements = [statements]
    if not statements or not isinstance(statements, list) or \
            not all(isinstance(s, dict) for s in statements):
        raise iam_error("MalformedPolicyDocument", "Syntax errors in policy.")
    for statement in statements:
        if statement.get("Effect") not in ("Allow", "Deny"):
            raise iam_error("MalformedPolicyDocument", "Syntax errors in policy.")
        if kind == "trust" and "Principal" not in statement and "NotPrincipal" not in statement:
            raise iam_error("MalformedPolicyDocument",
                            "Has prohibited field Resource" if "Resource" in statement
                            else "Missing required field Principal")
    return document


def check_tags(tags: list[dict[str, str]] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for tag in tags or []:
        key, value = tag.get("Key"), tag.get("Value", "")
        if not key or len(key) > 128:
            raise validation(key, "tags.member.key",
                             "Member must have length less than or equal to 128")
        if len(value) > 256:
            raise validation(value, "tags.member.value",
                             "Member must have length less than or equal to 256")
        out[key] = value
    if len(out) > MAX_TAGS:
        raise iam_error("LimitExceeded", f"The number of tags has reached the maximum limit "
                                         f"of {MAX_TAGS}.", 409)
    return out


def trusts_lambda(document: str) -> bool:
    """Does the trust policy let lambda.amazonaws.com call sts:AssumeRole?"""
    try:
        statements = json.loads(document).get("Statement")
    except (ValueError, AttributeError):
        return False
    if isinstance(statements, dict):
        statements = [statements]

    def listed(value: Any) -> list[Any]:
        return value if isinstance(value, list) else [value]

    for s in statements or []:
        if not isinstance(s, dict) or s.get("Effect") != "Allow":
            continue
        actions = listed(s.get("Action", []))
        if not any(a in ("sts:AssumeRole", "sts:*", "*") for a in actions):
            continue
        principal = s.get("Principal")
        if principal == "*":
            return True
        if isinstance(principal, dict):
            if "lambda.amazonaws.com" in listed(principal.get("Service", [])):
                return True
            if "*" in listed(principal.get("AWS", [])):
                return True
    return False


@dataclass(frozen=True)
class AwsManagedPolicy:
    """An AWS-managed policy known only by its ARN (not stored; any name is accepted)."""
    name: str
    arn: str
    path: str


class IamService:
    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings = settings
        self.store = IamStore(db)

    @property
    def account(self) -> str:
        return self.settings.account_id

    # -- roles ---------------------------------------------------------------------------------
    def role(self, name: str | None) -> Role:
        check_name(name, "roleName", 64)
        role = self.store.role(name or "")
        if role is None:
            raise no_such_entity(f"The role with name {name} cannot be found.")
        return role

    def create_role(self, p: dict[str, Any]) -> Role:
        name = check_name(p.get("RoleName"), "roleName", 64)
        path = check_path(p.get("Path"))
        trust = check_document(p.get("AssumeRolePolicyDocument"), "trust")
        duration = self._session_duration(p.get("MaxSessionDuration", 3600))
        description = self._description(p.get("Description"))
        role = Role(name=name, role_id=new_id("AROA"), path=path, created=now_iso(),
                    arn=f"arn:aws:iam::{self.account}:role{path}{name}", trust_policy=trust,
                    description=description, max_session_duration=duration,
                    tags=check_tags(p.get("Tags")))
        try:
            self.store.insert_role(role)
        except EntityExists:
            raise iam_error("EntityAlreadyExists", f"Role with name {name} already exists.",
                            409) from None
        return role

    def delete_role(self, name: str | None) -> None:
        role = self.role(name)
        if role.attached:
            raise iam_error("DeleteConflict",
                            "Cannot delete entity, must detach all policies first.", 409)
        if role.inline_policies:
            raise iam_error("DeleteConflict",
                            "Cannot delete entity, must delete policies first.", 409)
        self.store.delete_role(role.name)

    def update_trust(self, name: str | None, document: str | None) -> None:
        role = self.role(name)
        role.trust_policy = check_document(document, "trust")
        self.store.save_role(role)

    def update_role(self, p: dict[str, Any]) -> None:
        role = self.role(p.get("RoleName"))
        if p.get("Description") is not None:
            role.description = self._description(p["Description"])
        if p.get("MaxSessionDuration") is not None:
            role.max_session_duration = self._session_duration(p["MaxSessionDuration"])
        self.store.save_role(role)

    def update_role_description(self, name: str | None, description: str | None) -> Role:
        role = self.role(name)
        role.description = self._description(description)
        self.store.save_role(role)
        return role

    @staticmethod
    def _session_duration(value: int) -> int:
        if not 3600 <= int(value) <= 43200:
            raise validation(value, "maxSessionDuration",
                             "Member must have value less than or equal to 43200 and greater "
                             "than or equal to 3600")
        return int(value)

    @staticmethod
    def _description(value: str | None) -> str:
        if value and len(value) > 1000:
            raise validation(value, "description",
                             "Member must have length less than or equal to 1000")
        return value or ""

    # -- inline policies -----------------------------------------------------------------------
    def put_role_policy(self, p: dict[str, Any]) -> None:
        role = self.role(p.get("RoleName"))
        name = check_name(p.get("PolicyName"), "policyName", 128)
        role.inline_policies[name] = check_document(p.get("PolicyDocument"), "inline")
        self.store.save_role(role)

    def role_policy(self, role_name: str | None, policy_name: str | None) -> tuple[Role, str]:
        role = self.role(role_name)
        check_name(policy_name, "policyName", 128)
        if policy_name not in role.inline_policies:
            raise no_such_entity(f"The role policy with name {policy_name} cannot be found.")
        return role, policy_name

    def delete_role_policy(self, role_name: str | None, policy_name: str | None) -> None:
        role, name = self.role_policy(role_name, policy_name)
        del role.inline_policies[name]
        self.store.save_role(role)

    # -- managed policies ----------------------------------------------------------------------
    def create_policy(self, p: dict[str, Any]) -> ManagedPolicy:
        name = check_name(p.get("PolicyName"), "policyName", 128)
        path = check_path(p.get("Path"))
        document = check_document(p.get("PolicyDocument"), "managed")
        created = now_iso()
        policy = ManagedPolicy(name=name, policy_id=new_id("ANPA"), path=path,
                               arn=f"arn:aws:iam::{self.account}:policy{path}{name}",
                               created=created, updated=created, document=document,
                               description=self._description(p.get("Description")),
                               tags=check_tags(p.get("Tags")))
        try:
            self.store.insert_policy(policy)
        except EntityExists:
            raise iam_error("EntityAlreadyExists", f"A policy called {name} already exists. "
                                                   f"Duplicate names are not allowed.", 409) \
                from None
        return policy

    def policy(self, arn: str | None) -> ManagedPolicy | AwsManagedPolicy:
        if not arn or len(arn) < 20:
            raise validation(arn, "policyArn", "Member must have length greater than or equal "
                                               "to 20")
        found = AWS_MANAGED.fullmatch(arn)
        if found:
            return AwsManagedPolicy(found.group(2), arn, found.group(1))
        policy = self.store.policy(arn)
        if policy is None:
            raise no_such_entity(f"Policy {arn} does not exist or is not attachable.")
        return policy

    def delete_policy(self, arn: str | None) -> None:
        policy = self.policy(arn)
        if isinstance(policy, AwsManagedPolicy):
            raise iam_error("AccessDenied", f"Cannot delete the AWS managed policy {arn}.", 403)
        if self.store.attachment_count(policy.arn):
            raise iam_error("DeleteConflict", "Cannot delete a policy attached to entities.",
                            409)
        self.store.delete_policy(policy.arn)

    def policy_version(self, arn: str | None, version: str | None) -> ManagedPolicy:
        policy = self.policy(arn)
        if isinstance(policy, AwsManagedPolicy):
            raise no_such_entity(f"lambdaplane does not hold the documents of AWS managed "
                                 f"policies: {arn}")
        if version != "v1":
            raise no_such_entity(f"Policy {arn} version {version} does not exist or is not "
                                 f"attachable.")
        return policy

    def attach(self, role_name: str | None, arn: str | None) -> None:
        role = self.role(role_name)
        policy = self.policy(arn)
        if policy.arn not in role.attached:
            if len(role.attached) >= 20:
                raise iam_error("LimitExceeded", "Cannot exceed quota for "
                                                 "PoliciesPerRole: 20", 409)
            role.attached.append(policy.arn)
            self.store.save_role(role)

    def detach(self, role_name: str | None, arn: str | None) -> None:
        role = self.role(role_name)
        if arn not in role.attached:
            self.policy(arn)  # NoSuchEntity for a policy that does not exist at all
            raise no_such_entity(f"Policy {arn} was not found.")
        role.attached.remove(arn)
        self.store.save_role(role)

    def attached_policies(self, role_name: str | None) -> list[ManagedPolicy | AwsManagedPolicy]:
        role = self.role(role_name)
        out: list[ManagedPolicy | AwsManagedPolicy] = []
        for arn in role.attached:
            try:
                out.append(self.policy(arn))
            except AwsError:  # deleted since: not listed
                continue
        return out

    def list_policies(self, scope: str, only_attached: bool,
                      prefix: str) -> list[ManagedPolicy | AwsManagedPolicy]:
        found: list[ManagedPolicy | AwsManagedPolicy] = []
        if scope in ("All", "Local"):
            found += [p for p in self.store.policies()
                      if not only_attached or self.store.attachment_count(p.arn)]
        if scope in ("All", "AWS"):  # only those in use: lambdaplane holds no catalogue
            arns = sorted({a for r in self.store.roles() for a in r.attached
                           if AWS_MANAGED.fullmatch(a)})
            found += [self.policy(a) for a in arns]
        return [p for p in found if p.path.startswith(prefix or "/")]

    # -- tags ----------------------------------------------------------------------------------
    def tag_role(self, name: str | None, tags: list[dict[str, str]] | None) -> None:
        role = self.role(name)
        role.tags.update(check_tags(tags))
        check_tags([{"Key": k, "Value": v} for k, v in role.tags.items()])
        self.store.save_role(role)

    def untag_role(self, name: str | None, keys: list[str] | None) -> None:
        role = self.role(name)
        for key in keys or []:
            role.tags.pop(key, None)
        self.store.save_role(role)

    # -- what Lambda asks ----------------------------------------------------------------------
    def check_lambda_role(self, role_arn: str) -> None:
        """Lambda's InvalidParameterValueException for a role this IAM knows that does not
        trust lambda.amazonaws.com; a role ARN IAM does not know is left alone."""
        found = re.fullmatch(r"arn:aws[a-zA-Z-]*:iam::(\d{12}):role/(?:[^/]+/)*([\w+=,.@-]+)",
                             role_arn or "")
        if not found or found.group(1) != self.account:
            return
        role = self.store.role(found.group(2))
        if role is None or role.arn != role_arn:
            return
        if not trusts_lambda(role.trust_policy):
            raise AwsError("InvalidParameterValueException",
                           "The role defined for the function cannot be assumed by Lambda.", 400)
