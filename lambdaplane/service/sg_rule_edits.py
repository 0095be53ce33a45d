"""Security group rules edited by their ids, as AWS allows since rule ids exist:
ModifySecurityGroupRules (a rule rewritten in place, keeping its id, direction and tags) and
UpdateSecurityGroupRuleDescriptionsIngress/Egress (by rule id, or by the permission it
matches). A part of VpcService next to service/security_groups.py, whose lookups it uses;
writes the store only, the kernel follows through `reconcile`."""
from __future__ import annotations

import dataclasses
from typing import Any

from ..errors import ec2_error
from ..store.ec2 import SecurityGroup, SgRule
from .ec2_core import Ec2Core
from .security_groups import SecurityGroups
from .sg_rules import describe_rule, legacy_permissions, rules_from_permissions

MAX_DESCRIPTION = 255


def check_description(text: str) -> str:
    if len(text) > MAX_DESCRIPTION:
        raise ec2_error("InvalidParameterValue",
                        f"Invalid rule description. Valid descriptions are strings less than "
                        f"{MAX_DESCRIPTION + 1} characters.")
    return text


def permission_of_request(req: dict[str, Any]) -> dict[str, Any]:
    """A SecurityGroupRuleRequest (one protocol, port range and peer) as an IpPermission."""
    peers = [k for k in ("CidrIpv4", "CidrIpv6", "PrefixListId", "ReferencedGroupId")
             if req.get(k)]
    if len(peers) != 1:
        raise ec2_error("InvalidParameterValue",  # [?] wording
                        "A security group rule must have exactly one of CidrIpv4, CidrIpv6, "
                        "PrefixListId or ReferencedGroupId")
    description = check_description(req.get("Description") or "")
    perm: dict[str, Any] = {"IpProtocol": req.get("IpProtocol"), "FromPort": req.get("FromPort"),
                            "ToPort": req.get("ToPort")}
    if req.get("CidrIpv4"):
        perm["IpRanges"] = [{"CidrIp": req["CidrIpv4"], "Description": description}]
    elif req.get("ReferencedGroupId"):
        perm["UserIdGroupPairs"] = [{"GroupId": req["ReferencedGroupId"],
                                     "Description": description}]
    elif req.get("CidrIpv6"):
        perm["Ipv6Ranges"] = [{"CidrIpv6": req["CidrIpv6"], "Description": description}]
    else:
        perm["PrefixListIds"] = [{"PrefixListId": req["PrefixListId"]}]
    return perm


class SecurityGroupRuleEdits:
    """The rule-id part of VpcService's security groups."""

    def __init__(self, core: Ec2Core, groups: SecurityGroups) -> None:
        self.core = core
        self.db, self.store = core.db, core.store
        self.groups = groups

    @staticmethod
    def _rule_by_id(rules: list[SgRule], rule_id: str, group: SecurityGroup) -> SgRule:
        rule = next((r for r in rules if r.id == rule_id), None)
        if rule is None:
            raise ec2_error("InvalidSecurityGroupRuleId.NotFound",
                            f"The security group rule ID '{rule_id}' does not exist in "
                            f"security group '{group.id}'")
        return rule

    async def modify_rules(self, region: str, group_id: str | None,
                           updates: list[dict[str, Any]]) -> None:
        self.core.ensure_region(region)
        if not group_id:
            raise ec2_error("MissingParameter", "The request must contain the parameter groupId")
        group = self.core.group(region, group_id)
        if not updates:
            raise ec2_error("MissingParameter",
                            "The request must contain the parameter securityGroupRules")
        rules = self.store.rules(group.id)
        after = {r.id: r for r in rules}
        for update in updates:
            old = self._rule_by_id(rules, update.get("SecurityGroupRuleId") or "", group)
            (new,) = rules_from_permissions(
                group.id, old.egress, [permission_of_request(update.get("SecurityGroupRule")
                                                             or {})],
                lambda pair: self.groups.pair_group(region, group, pair))
            after[old.id] = dataclasses.replace(new, id=old.id)
        seen: set[tuple[object, ...]] = set()
        for rule in after.values():  # the group after the change has no two equal rules
            if rule.key in seen:
                raise ec2_error("InvalidPermission.Duplicate",
                                f'the specified rule "{describe_rule(rule)}" already exists')
            seen.add(rule.key)
        with self.db.transaction():
            for rule in after.values():
                if rule != next(r for r in rules if r.id == rule.id):
                    self.store.update_rule(rule)
        await self.core.reconcile()

    async def update_rule_descriptions(self, region: str, params: dict[str, Any],
                                       egress: bool) -> None:
        self.core.ensure_region(region)
        group = self.groups.resolve(region, params.get("GroupId"), params.get("GroupName"))
        have = [r for r in self.store.rules(group.id) if r.egress == egress]
        changed: dict[str, SgRule] = {}
        for item in params.get("SecurityGroupRuleDescriptions") or []:
            rule = self._rule_by_id(have, item.get("SecurityGroupRuleId") or "", group)
            changed[rule.id] = dataclasses.replace(
                rule, description=check_description(item.get("Description") or ""))
        perms = (params.get("IpPermissions") or []) + legacy_permissions(params)
        if perms:
            by_key = {r.key: r for r in have}
            for wanted in rules_from_permissions(group.id, egress, perms,
                                                 lambda pair: self.groups.pair_group(region, group,
                                                                               pair)):
                if wanted.key not in by_key:
                    raise ec2_error("InvalidPermission.NotFound",
                                    "The specified rule does not exist in this security group.")
                changed[by_key[wanted.key].id] = dataclasses.replace(
                    by_key[wanted.key], description=check_description(wanted.description))
        if not changed:
            raise ec2_error("MissingParameter",
                            "The request must contain the parameter ipPermissions")
        with self.db.transaction():
            for rule in changed.values():
                self.store.update_rule(rule)
