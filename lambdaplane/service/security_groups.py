"""Security groups and their rules with AWS's rules (names, defaults, references between
groups, duplicates, dependencies, error codes). A part of VpcService (service/vpc.py), given its
Ec2Core (the store, the VPC and group lookups, `reconcile`); the rule shapes themselves are
service/sg_rules.py's. Writes the store only; the kernel follows through `reconcile`."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import ec2_error
from ..store.ec2 import SecurityGroup, SgRule, Vpc
from .ec2_core import Ec2Core
from .ec2_filters import check_names, matches
from .ec2_ids import check_id, new_id
from .ec2_tags import specified_tags
from .sg_rules import (
    PERMISSION_FILTERS,
    describe_rule,
    legacy_permissions,
    new_rule_id,
    permission_filter_values,
    rules_from_permissions,
)


class SecurityGroups:
    """The security group part of VpcService."""

    def __init__(self, core: Ec2Core, has_ipv6: Callable[[str], bool]) -> None:
        self.core = core
        self.settings, self.db, self.store = core.settings, core.db, core.store
        self.has_ipv6 = has_ipv6  # whether a VPC has an IPv6 block (service/ipv6.py)

    def _default_vpc(self, region: str) -> Vpc | None:
        return next((v for v in self.store.vpcs(region) if v.is_default), None)

    def group_by_name(self, region: str, name: str, vpc_id: str | None = None) -> SecurityGroup:
        vpc = self.core.vpc(region, vpc_id) if vpc_id else self._default_vpc(region)
        for g in self.store.groups(region):
            if vpc is not None and g.vpc_id == vpc.id and g.name == name:
                return g
        where = f"default VPC '{vpc.id}'" if vpc and vpc.is_default else f"VPC '{vpc_id}'"
        raise ec2_error("InvalidGroup.NotFound",
                        f"The security group '{name}' does not exist in {where}")

    def resolve(self, region: str, group_id: str | None, group_name: str | None) -> SecurityGroup:
        if group_id:
            return self.core.group(region, group_id)
        if group_name:
            return self.group_by_name(region, group_name)
        raise ec2_error("MissingParameter", "The request must contain the parameter groupId")

    async def create_security_group(self, region: str, name: str | None, description: str | None,
                                    vpc_id: str | None,
                                    tag_specs: list[dict[str, Any]] | None) -> SecurityGroup:
        self.core.ensure_region(region)
        if not name:
            raise ec2_error("MissingParameter", "The request must contain the parameter groupName")
        if description is None:
            raise ec2_error("MissingParameter",
                            "The request must contain the parameter groupDescription")
        if name.lower().startswith("sg-"):
            raise ec2_error("InvalidParameterValue",
                            "Group names may not be in the format sg-*.")
        vpc = self.core.vpc(region, vpc_id) if vpc_id else self._default_vpc(region)
        if vpc is None:
            raise ec2_error("VPCIdNotSpecified", "No default VPC for this user")
        if any(g.vpc_id == vpc.id and g.name == name for g in self.store.groups(region)):
            raise ec2_error("InvalidGroup.Duplicate",
                            f"The security group '{name}' already exists for VPC '{vpc.id}'")
        group = SecurityGroup(new_id("sg"), region, vpc.id, name, description)
        with self.db.transaction():
            self.store.add_group(group)
            self.store.add_rule(SgRule(new_rule_id(), group.id, True, "-1", -1, -1,
                                       "0.0.0.0/0", None))
            if self.has_ipv6(vpc.id):  # AWS adds ::/0 too
                self.store.add_rule(SgRule(new_rule_id(), group.id, True, "-1", -1, -1, "::/0",
                                           None))
            self.store.set_tags(group.id, specified_tags(tag_specs, "security-group"))
        await self.core.reconcile()
        return group

    def describe_security_groups(self, region: str, ids: list[str], names: list[str],
                                 filters: list[dict[str, Any]]) -> list[SecurityGroup]:
        self.core.ensure_region(region)
        check_names(filters, ["group-id", "group-name", "vpc-id", "description", "owner-id",
                              *(p + f for p in ("ip-permission.", "egress.ip-permission.")
                                for f in PERMISSION_FILTERS)])
        wanted = {self.core.group(region, gid).id for gid in ids}
        wanted |= {self.group_by_name(region, n).id for n in names}
        tags = self.store.tags()
        groups = self.store.groups(region)
        names_by_id = {g.id: g.name for g in groups}
        rules = self.store.rules()
        out = []
        for g in groups:
            mine = [r for r in rules if r.group_id == g.id]
            attrs = {"group-id": [g.id], "group-name": [g.name], "vpc-id": [g.vpc_id],
                     "description": [g.description], "owner-id": [self.settings.account_id],
                     **permission_filter_values([r for r in mine if not r.egress],
                                                "ip-permission.", names_by_id,
                                                self.settings.account_id),
                     **permission_filter_values([r for r in mine if r.egress],
                                                "egress.ip-permission.", names_by_id,
                                                self.settings.account_id)}
            if (not wanted or g.id in wanted) and matches(filters, attrs, tags.get(g.id, {})):
                out.append(g)
        return out

    async def delete_security_group(self, region: str, group_id: str | None,
                                    group_name: str | None) -> SecurityGroup:
        self.core.ensure_region(region)
        group = self.resolve(region, group_id, group_name)
        if group.name == "default":
            raise ec2_error("CannotDelete", f'the specified group: "{group.id}" name: "default" '
                                            "cannot be deleted by a user")
        in_use = any(group.id in e.group_ids for e in self.store.enis())
        referenced = any(r.ref_group_id == group.id and r.group_id != group.id
                         for r in self.store.rules())
        if in_use or referenced:
            raise ec2_error("DependencyViolation", f"resource {group.id} has a dependent object")
        with self.db.transaction():
            self.store.delete_group(group.id)
        await self.core.reconcile()
        return group

    def rules_of(self, group_id: str) -> list[SgRule]:
        return self.store.rules(group_id)

    def pair_group(self, region: str, group: SecurityGroup, pair: dict[str, Any]) -> str:
        if pair.get("GroupId"):
            ref = self.core.group(region, pair["GroupId"])
        elif pair.get("GroupName"):
            ref = self.group_by_name(region, pair["GroupName"], group.vpc_id)
        else:
            raise ec2_error("MissingParameter", "The request must contain the parameter groupId")
        if ref.vpc_id != group.vpc_id:
            raise ec2_error("InvalidGroup.NotFound",
                            "You have specified two resources that belong to different "
                            "networks.")
        return ref.id

    async def authorize(self, region: str, params: dict[str, Any], egress: bool) -> list[SgRule]:
        self.core.ensure_region(region)
        group = self.resolve(region, params.get("GroupId"), params.get("GroupName"))
        perms = (params.get("IpPermissions") or []) + legacy_permissions(params)
        if not perms:
            raise ec2_error("MissingParameter",
                            "The request must contain the parameter ipPermissions")
        new = rules_from_permissions(group.id, egress, perms,
                                     lambda pair: self.pair_group(region, group, pair))
        existing = {r.key for r in self.store.rules(group.id)}
        seen: set[tuple[object, ...]] = set()
        for rule in new:
            if rule.key in existing or rule.key in seen:
                raise ec2_error("InvalidPermission.Duplicate",
                                f'the specified rule "{describe_rule(rule)}" already exists')
            seen.add(rule.key)
        rule_tags = specified_tags(params.get("TagSpecifications"), "security-group-rule")
        with self.db.transaction():
            for rule in new:
                self.store.add_rule(rule)
                self.store.set_tags(rule.id, rule_tags)
        await self.core.reconcile()
        return new

    async def revoke(self, region: str, params: dict[str, Any], egress: bool) -> list[SgRule]:
        self.core.ensure_region(region)
        group = self.resolve(region, params.get("GroupId"), params.get("GroupName"))
        have = [r for r in self.store.rules(group.id) if r.egress == egress]
        doomed: list[SgRule] = []
        for rid in params.get("SecurityGroupRuleIds") or []:
            rule = next((r for r in have if r.id == rid), None)
            if rule is None:
                raise ec2_error("InvalidSecurityGroupRuleId.NotFound",
                                f"The security group rule ID '{rid}' does not exist")
            doomed.append(rule)
        perms = (params.get("IpPermissions") or []) + legacy_permissions(params)
        if any(p.get("PrefixListIds") for p in perms):
            # none can exist here (lambdaplane holds no prefix lists): AWS's answer for a rule
            # that is not there
            raise ec2_error("InvalidPermission.NotFound",
                            "The specified rule does not exist in this security group.")
        if perms:
            by_key = {r.key: r for r in have}
            for wanted in rules_from_permissions(group.id, egress, perms,
                                                 lambda pair: self.pair_group(region, group, pair)):
                if wanted.key not in by_key:
                    raise ec2_error("InvalidPermission.NotFound",
                                    "The specified rule does not exist in this security group.")
                doomed.append(by_key[wanted.key])
        if not doomed:
            raise ec2_error("MissingParameter",
                            "The request must contain the parameter ipPermissions")
        with self.db.transaction():
            for rule in doomed:
                self.store.delete_rule(rule.id)
        await self.core.reconcile()
        return doomed

    def describe_rules(self, region: str, ids: list[str],
                       filters: list[dict[str, Any]]) -> list[SgRule]:
        self.core.ensure_region(region)
        check_names(filters, ["group-id", "security-group-rule-id"])
        for rid in ids:
            check_id(rid, "sgr", "InvalidSecurityGroupRuleId.Malformed")
        groups = {g.id for g in self.store.groups(region)}
        rules = [r for r in self.store.rules() if r.group_id in groups]
        for rid in ids:
            if rid not in {r.id for r in rules}:
                raise ec2_error("InvalidSecurityGroupRuleId.NotFound",
                                f"The security group rule ID '{rid}' does not exist")
        tags = self.store.tags()
        return [r for r in rules if (not ids or r.id in ids) and matches(
            filters, {"group-id": [r.group_id], "security-group-rule-id": [r.id]},
            tags.get(r.id, {}))]
