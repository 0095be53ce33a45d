"""IAM's Query API (`POST /`, `Version=2010-05-08`, XML out through api/query_protocol.py):
roles, inline and managed policies, attachments, role tags. Turns service/iam.py's records into
the model's output shapes; policy documents leave URL-encoded, as IAM sends them (botocore and
the Terraform provider decode them). Lists page with Marker/MaxItems as IAM does."""
from __future__ import annotations

import base64
import hashlib
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

from aiohttp import web

from ..service.iam import AwsManagedPolicy, IamService, iam_error
from ..store.iam import ManagedPolicy, Role
from . import query_protocol

API_VERSION = "2010-05-08"
Handler = Callable[[IamService, dict[str, Any]], Awaitable[dict[str, Any]]]


def encoded(document: str) -> str:
    return quote(document, safe="")


def tags_out(tags: dict[str, str]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in tags.items()]


def role_out(role: Role, full: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {
        "Path": role.path, "RoleName": role.name, "RoleId": role.role_id, "Arn": role.arn,
        "CreateDate": role.created, "AssumeRolePolicyDocument": encoded(role.trust_policy),
        "MaxSessionDuration": role.max_session_duration}
    if role.description:
        out["Description"] = role.description
    if full:
        out["Tags"] = tags_out(role.tags) or None
        out["RoleLastUsed"] = {}
    return out


def policy_out(policy: ManagedPolicy | AwsManagedPolicy, svc: IamService) -> dict[str, Any]:
    count = svc.store.attachment_count(policy.arn)
    if isinstance(policy, AwsManagedPolicy):
        digest = hashlib.sha256(policy.arn.encode()).hexdigest().upper()
        return {"PolicyName": policy.name, "PolicyId": "ANPA" + digest[:17], "Arn": policy.arn,
                "Path": policy.path, "DefaultVersionId": "v1", "AttachmentCount": count,
                "PermissionsBoundaryUsageCount": 0, "IsAttachable": True}
    out = {"PolicyName": policy.name, "PolicyId": policy.policy_id, "Arn": policy.arn,
           "Path": policy.path, "DefaultVersionId": "v1", "AttachmentCount": count,
           "PermissionsBoundaryUsageCount": 0, "IsAttachable": True,
           "CreateDate": policy.created, "UpdateDate": policy.updated,
           "Tags": tags_out(policy.tags) or None}
    if policy.description:
        out["Description"] = policy.description
    return out


def page(items: list[Any], key: Callable[[Any], str], p: dict[str, Any],
         field: str) -> dict[str, Any]:
    """IAM's paging: MaxItems (1-1000, default 100), an opaque Marker, IsTruncated."""
    limit = p.get("MaxItems") or 100
    if not 1 <= limit <= 1000:
        raise iam_error("ValidationError", f"1 validation error detected: Value '{limit}' at "
                        f"'maxItems' failed to satisfy constraint: Member must have value less "
                        f"than or equal to 1000 and greater than or equal to 1")
    start = 0
    if p.get("Marker"):
        try:
            after = base64.urlsafe_b64decode(p["Marker"].encode()).decode()
        except ValueError:
            raise iam_error("ValidationError", "Invalid Marker.") from None
        start = next((i + 1 for i, item in enumerate(items) if key(item) == after), len(items))
    chosen = items[start:start + limit]
    out: dict[str, Any] = {field: chosen, "IsTruncated": start + limit < len(items)}
    if out["IsTruncated"]:
        out["Marker"] = base64.urlsafe_b64encode(key(chosen[-1]).encode()).decode()
    return out


# --- actions -------------------------------------------------------------------------------------

async def create_role(svc: IamService, p: dict[str, Any]) -> dict[str, Any]:
    return {"Role": role_out(svc.create_role(p))}


async def get_role(svc: IamService, p: dict[str, Any]) -> dict[str, Any]:
    return {"Role": role_out(svc.role(p.get("RoleName")))}


async def list_roles(svc: IamService, p: dict[str, Any]) -> dict[str, Any]:
    roles = [r for r in svc.store.roles() if r.path.startswith(p.get("PathPrefix") or "/")]
    out = page(roles, lambda r: r.name, p, "Roles")
    out["Roles"] = [role_out(r, full=False) for r in out["Roles"]]
    return out


async def delete_role(svc: IamService, p: dict[str, Any]) -> dict[str, Any]:
    svc.delete_role(p.get("RoleName"))
    return {}


async def update_assume_role_policy(svc: IamService, p: dict[str, Any]) -> dict[str, Any]:
    svc.update_trust(p.get("RoleName"), p.get("PolicyDocument"))
    return {}


async def update_role(svc: IamService, p: dict[str, Any]) -> dict[str, Any]:
    svc.update_role(p)
    return {}


async def update_role_description(svc: IamService, p: dict[str, Any]) -> dict[str, Any]:
    return {"Role": role_out(svc.update_role_description(p.get("RoleName"),
                                                         p.get("Description")))}


async def put_role_policy(svc: IamService, p: dict[str, Any]) -> dict[str, Any]:
    svc.put_role_policy(p)
    return {}


async def get_role_policy(svc: IamService, p: dict[str, Any]) -> dict[str, Any]:
    role, name = svc.role_policy(p.get("RoleName"), p.get("PolicyName"))
    return {"RoleName": role.name, "PolicyName": name,
            "PolicyDocument": encoded(role.inline_policies[name])}


async def delete_role_policy(svc: IamService, p: dict[str, Any]) -> dict[str, Any]:
    svc.delete_role_policy(p.get("RoleName"), p.get("PolicyName"))
    return {}


async def list_role_policies(svc: IamService, p: dict[str, Any]) -> dict[str, Any]:
    names = sorted(svc.role(p.get("RoleName")).inline_policies)
    return page(names, lambda n: n, p, "PolicyNames")


async def attach_role_policy(svc: IamService, p: dict[str, Any]) -> dict[str, Any]:
    svc.attach(p.get("RoleName"), p.get("PolicyArn"))
    return {}


async def detach_role_policy(svc: IamService, p: dict[str, Any]) -> dict[str, Any]:
    svc.detach(p.get("RoleName"), p.get("PolicyArn"))
    return {}


async def list_attached_role_policies(svc: IamService, p: dict[str, Any]) -> dict[str, Any]:
    prefix = p.get("PathPrefix") or "/"
    attached = [{"PolicyName": a.name, "PolicyArn": a.arn}
                for a in svc.attached_policies(p.get("RoleName")) if a.path.startswith(prefix)]
    return page(attached, lambda a: a["PolicyArn"], p, "AttachedPolicies")


async def create_policy(svc: IamService, p: dict[str, Any]) -> dict[str, Any]:
    return {"Policy": policy_out(svc.create_policy(p), svc)}


async def get_policy(svc: IamService, p: dict[str, Any]) -> dict[str, Any]:
    return {"Policy": policy_out(svc.policy(p.get("PolicyArn")), svc)}


async def get_policy_version(svc: IamService, p: dict[str, Any]) -> dict[str, Any]:
    policy = svc.policy_version(p.get("PolicyArn"), p.get("VersionId"))
    return {"PolicyVersion": {"Document": encoded(policy.document), "VersionId": "v1",
                              "IsDefaultVersion": True, "CreateDate": policy.created}}


async def list_policy_versions(svc: IamService, p: dict[str, Any]) -> dict[str, Any]:
    policy = svc.policy_version(p.get("PolicyArn"), "v1")
    return {"Versions": [{"VersionId": "v1", "IsDefaultVersion": True,
                          "CreateDate": policy.created}], "IsTruncated": False}


async def delete_policy(svc: IamService, p: dict[str, Any]) -> dict[str, Any]:
    svc.delete_policy(p.get("PolicyArn"))
    return {}


async def list_policies(svc: IamService, p: dict[str, Any]) -> dict[str, Any]:
    scope = p.get("Scope") or "All"
    if scope not in ("All", "AWS", "Local"):
        raise iam_error("ValidationError", f"1 validation error detected: Value '{scope}' at "
                        f"'scope' failed to satisfy constraint: Member must satisfy enum value "
                        f"set: [All, AWS, Local]")
    found = svc.list_policies(scope, bool(p.get("OnlyAttached")), p.get("PathPrefix") or "/")
    out = page(found, lambda x: x.arn, p, "Policies")
    out["Policies"] = [policy_out(x, svc) for x in out["Policies"]]
    return out


async def tag_role(svc: IamService, p: dict[str, Any]) -> dict[str, Any]:
    svc.tag_role(p.get("RoleName"), p.get("Tags"))
    return {}


async def untag_role(svc: IamService, p: dict[str, Any]) -> dict[str, Any]:
    svc.untag_role(p.get("RoleName"), p.get("TagKeys"))
    return {}


async def list_role_tags(svc: IamService, p: dict[str, Any]) -> dict[str, Any]:
    tags = tags_out(svc.role(p.get("RoleName")).tags)
    return page(tags, lambda t: t["Key"], p, "Tags")


async def list_instance_profiles_for_role(svc: IamService, p: dict[str, Any]) -> dict[str, Any]:
    """lambdaplane has no instance profiles (no EC2 instances): always none, for a real role.
    The Terraform provider lists them before it deletes a role."""
    svc.role(p.get("RoleName"))
    return {"InstanceProfiles": [], "IsTruncated": False}


ACTIONS: dict[str, Handler] = {
    "CreateRole": create_role, "GetRole": get_role, "ListRoles": list_roles,
    "DeleteRole": delete_role, "UpdateAssumeRolePolicy": update_assume_role_policy,
    "UpdateRole": update_role, "UpdateRoleDescription": update_role_description,
    "PutRolePolicy": put_role_policy, "GetRolePolicy": get_role_policy,
    "DeleteRolePolicy": delete_role_policy, "ListRolePolicies": list_role_policies,
    "AttachRolePolicy": attach_role_policy, "DetachRolePolicy": detach_role_policy,
    "ListAttachedRolePolicies": list_attached_role_policies,
    "CreatePolicy": create_policy, "GetPolicy": get_policy,
    "GetPolicyVersion": get_policy_version, "ListPolicyVersions": list_policy_versions,
    "DeletePolicy": delete_policy, "ListPolicies": list_policies,
    "TagRole": tag_role, "UntagRole": untag_role, "ListRoleTags": list_role_tags,
    "ListInstanceProfilesForRole": list_instance_profiles_for_role,
}


def add_routes(app: web.Application, platform: Any) -> None:
    from .dispatch import serve_query

    async def iam(request: web.Request) -> web.Response:
        return await query_protocol.handle("iam", ACTIONS, request, platform.iam)

    serve_query(app, "iam", API_VERSION, iam)
