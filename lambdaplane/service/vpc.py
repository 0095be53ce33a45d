"""VPCs, subnets, security groups and network interfaces with AWS's rules (ids, defaults,
dependencies, error codes). Writes the store, then has the kernel made to match it
(net/reconcile.py on the net thread). No HTTP and no kernel calls of its own.

Also owns the life of `lambdaplane run` interfaces: each records the CLI's pid, and an
interface whose CLI died is released, so a killed CLI leaks nothing."""
from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from dataclasses import dataclass, replace

from ..config import Settings
from ..errors import ec2_error
from ..net import reconcile as net_reconcile
from ..net.executor import NetThread
from ..net.names import Names
from ..net.vpc import desired_state
from ..store.db import Database
from ..store.ec2 import Ec2Store, Eni, FarEnd, SecurityGroup, SgRule, Subnet, Vpc
from . import ipam
from .ec2_filters import bool_text, check_names, matches
from .sg_rules import describe_rule, legacy_permissions, new_rule_id, rules_from_permissions

log = logging.getLogger("lambdaplane.vpc")

DEFAULT_VPC_CIDR = "172.31.0.0/16"
OWNER_CHECK_S = 0.5
_ZONE_COUNT = {"us-east-1": 6, "us-west-2": 4}
_DIRECTIONS = {"east": "e", "west": "w", "north": "n", "south": "s", "central": "c",
               "northeast": "ne", "southeast": "se", "northwest": "nw", "southwest": "sw"}


def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(9)[:17]}"


def new_mac() -> str:
    # AWS ENIs use locally administered unicast addresses like 02:xx:…
    return "02:" + ":".join(secrets.token_hex(1) for _ in range(5))


@dataclass(frozen=True)
class Zone:
    name: str
    zone_id: str
    region: str


def zones(region: str) -> list[Zone]:
    parts = region.split("-")
    abbr = parts[0] + "".join(_DIRECTIONS.get(p, p[:1]) for p in parts[1:-1]) + parts[-1]
    count = _ZONE_COUNT.get(region, 3)
    return [Zone(f"{region}{chr(ord('a') + i)}", f"{abbr}-az{i + 1}", region) for i in range(count)]


def check_id(value: str, prefix: str, code: str) -> None:
    body = value.removeprefix(prefix + "-")
    ok = value.startswith(prefix + "-") and len(body) in (8, 17) and \
        all(c in "0123456789abcdef" for c in body)
    if not ok:
        raise ec2_error(code, f'Invalid id: "{value}" (expecting "{prefix}-...")')


class VpcService:
    def __init__(self, settings: Settings, names: Names, db: Database, net: NetThread) -> None:
        self.settings = settings
        self.names = names
        self.db = db
        self.net = net
        self.store = Ec2Store(db)
        self._apply_lock = asyncio.Lock()
        # reconcile() calls asked for / served: one run serves every call made before it began
        self._reconcile_asked = 0
        self._reconcile_served = 0
        self._watcher: asyncio.Task[None] | None = None

    # lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        await self._release_orphans()
        changes = await self.reconcile()
        log.info("VPC reconcile at start: %d changes", len(changes))
        self._watcher = asyncio.create_task(self._watch_owners())

    async def stop(self) -> None:
        if self._watcher:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        async with self._apply_lock:
            await self.net.run(net_reconcile.teardown, self.names)

    async def reconcile(self) -> list[str]:
        """Make the kernel match the store; returns the changes made (none when it already did).
        Calls that queue up while a run is going share the next run: it reads the whole store,
        so it serves every change made before it began (a burst of N interface changes, e.g.
        legacy-mode cold starts, costs ~2 runs instead of N)."""
        self._reconcile_asked += 1
        ticket = self._reconcile_asked
        async with self._apply_lock:
            if self._reconcile_served >= ticket:
                return []  # a run that began after this call's change has made it
            upto = self._reconcile_asked
            desired = desired_state(self.names, self.store.snapshot())
            changes = await self.net.run(net_reconcile.reconcile, self.names, desired)
            self._reconcile_served = upto
            return changes

    async def _watch_owners(self) -> None:
        while True:
            await asyncio.sleep(OWNER_CHECK_S)
            try:
                await self._release_orphans()
            except Exception:
                log.exception("releasing interfaces of exited programs failed")

    async def _release_orphans(self) -> None:
        dead = [e for e in self.store.enis() if e.owner_pid is not None
                and not net_reconcile.process_alive(e.owner_pid, e.owner_start)]
        if not dead:
            return
        with self.db.transaction():
            for eni in dead:
                log.info("releasing %s: its program's CLI (pid %s) exited", eni.id, eni.owner_pid)
                self.store.delete_eni(eni.id)
        await self.reconcile()

    # regions and zones ---------------------------------------------------------------------
    async def use_region(self, region: str) -> None:
        """Called before every EC2 action: a region's first use makes its default VPC."""
        if self.ensure_region(region):
            await self.reconcile()

    def ensure_region(self, region: str) -> bool:
        """Every region has a default VPC with a default subnet per zone, made on first use.
        True when this call made them."""
        if self.store.region_initialised(region):
            return False
        with self.db.transaction():
            self.store.mark_region(region)
            vpc = self._insert_vpc(region, DEFAULT_VPC_CIDR, is_default=True)
            for zone, cidr in zip(zones(region), ipam.default_subnets(DEFAULT_VPC_CIDR,
                                                                      len(zones(region)))):
                self.store.add_subnet(Subnet(new_id("subnet"), region, vpc.id, cidr, zone.name, True))
        return True

    def availability_zones(self, region: str, names: list[str], ids: list[str],
                           filters: list[dict]) -> list[Zone]:
        check_names(filters, ["zone-name", "zone-id", "region-name", "state", "zone-type"])
        out = []
        for z in zones(region):
            if names and z.name not in names or ids and z.zone_id not in ids:
                continue
            attrs = {"zone-name": [z.name], "zone-id": [z.zone_id], "region-name": [region],
                     "state": ["available"], "zone-type": ["availability-zone"]}
            if matches(filters, attrs, {}):
                out.append(z)
        for n in names:
            if n not in {z.name for z in zones(region)}:
                raise ec2_error("InvalidParameterValue",
                                f"Invalid availability zone: [{n}]")
        return out

    def _zone(self, region: str, name: str | None, zone_id: str | None) -> Zone:
        all_zones = zones(region)
        if not name and not zone_id:
            return all_zones[0]  # AWS picks one for you [?]: the first is predictable
        for z in all_zones:
            if z.name == name or z.zone_id == zone_id:
                return z
        raise ec2_error("InvalidParameterValue",
                        f"Value ({name or zone_id}) for parameter availabilityZone is invalid. "
                        "Subnets can currently only be created in the following availability "
                        f"zones: {', '.join(z.name for z in all_zones)}.")

    # tags --------------------------------------------------------------------------------
    def tags_of(self, resource_id: str) -> dict[str, str]:
        return self.store.tags().get(resource_id, {})

    def _tag_specs(self, specs: list[dict] | None, resource_type: str) -> dict[str, str]:
        tags: dict[str, str] = {}
        for spec in specs or []:
            if spec.get("ResourceType") in (None, resource_type):
                tags.update({t["Key"]: t.get("Value") or "" for t in spec.get("Tags") or []})
        return tags

    async def create_tags(self, region: str, resource_ids: list[str], tags: list[dict]) -> None:
        self.ensure_region(region)
        known = ({v.id for v in self.store.vpcs(region)} | {s.id for s in self.store.subnets(region)}
                 | {g.id for g in self.store.groups(region)} | {e.id for e in self.store.enis(region)}
                 | {r.id for r in self.store.rules()})
        for rid in resource_ids:
            if rid not in known:
                prefix = rid.split("-")[0]
                kinds = {"vpc": "InvalidVpcID.NotFound", "subnet": "InvalidSubnetID.NotFound",
                         "sg": "InvalidGroup.NotFound", "eni": "InvalidNetworkInterfaceID.NotFound"}
                if prefix in kinds:
                    raise ec2_error(kinds[prefix], f"The ID '{rid}' does not exist")
                raise ec2_error("InvalidID", f"The ID '{rid}' is not valid")
        with self.db.transaction():
            for rid in resource_ids:
                self.store.set_tags(rid, {t["Key"]: t.get("Value") or "" for t in tags})

    # VPCs --------------------------------------------------------------------------------
    def _insert_vpc(self, region: str, cidr: str, is_default: bool) -> Vpc:
        vpc = Vpc(new_id("vpc"), region, cidr, is_default)
        self.store.add_vpc(vpc)
        group = SecurityGroup(new_id("sg"), region, vpc.id, "default",
                              "default VPC security group")
        self.store.add_group(group)
        # AWS's default group: all traffic from its own members in, all traffic out.
        self.store.add_rule(SgRule(new_rule_id(), group.id, False, "-1", -1, -1, None, group.id))
        self.store.add_rule(SgRule(new_rule_id(), group.id, True, "-1", -1, -1, "0.0.0.0/0", None))
        return vpc

    async def create_vpc(self, region: str, cidr: str | None, tag_specs: list[dict] | None) -> Vpc:
        self.ensure_region(region)
        if not cidr:
            raise ec2_error("MissingParameter", "The request must contain the parameter cidrBlock")
        net = ipam.check_vpc_cidr(cidr)
        with self.db.transaction():
            vpc = self._insert_vpc(region, str(net), is_default=False)
            self.store.set_tags(vpc.id, self._tag_specs(tag_specs, "vpc"))
        await self.reconcile()
        return vpc

    def vpc(self, region: str, vpc_id: str) -> Vpc:
        check_id(vpc_id, "vpc", "InvalidVpcID.Malformed")
        vpc = self.store.vpc(vpc_id)
        if vpc is None or vpc.region != region:
            raise ec2_error("InvalidVpcID.NotFound", f"The vpc ID '{vpc_id}' does not exist")
        return vpc

    def describe_vpcs(self, region: str, ids: list[str], filters: list[dict]) -> list[Vpc]:
        self.ensure_region(region)
        check_names(filters, ["vpc-id", "cidr", "cidr-block", "cidr-block-association.cidr-block",
                              "is-default", "state", "owner-id", "dhcp-options-id"])
        for vid in ids:
            self.vpc(region, vid)
        tags = self.store.tags()
        out = []
        for v in self.store.vpcs(region):
            attrs = {"vpc-id": [v.id], "cidr": [v.cidr], "cidr-block": [v.cidr],
                     "cidr-block-association.cidr-block": [v.cidr],
                     "is-default": [bool_text(v.is_default)], "state": ["available"],
                     "owner-id": [self.settings.account_id], "dhcp-options-id": ["default"]}
            if (not ids or v.id in ids) and matches(filters, attrs, tags.get(v.id, {})):
                out.append(v)
        return out

    async def delete_vpc(self, region: str, vpc_id: str) -> None:
        self.ensure_region(region)
        vpc = self.vpc(region, vpc_id)
        groups = [g for g in self.store.groups(region) if g.vpc_id == vpc.id]
        if any(s.vpc_id == vpc.id for s in self.store.subnets(region)) or \
                any(g.name != "default" for g in groups):
            raise ec2_error("DependencyViolation",
                            f"The vpc '{vpc.id}' has dependencies and cannot be deleted.")
        with self.db.transaction():
            for g in groups:
                self.store.delete_group(g.id)
            self.store.delete_vpc(vpc.id)
        await self.reconcile()

    # subnets -----------------------------------------------------------------------------
    def subnet(self, region: str, subnet_id: str) -> Subnet:
        check_id(subnet_id, "subnet", "InvalidSubnetID.Malformed")
        subnet = self.store.subnet(subnet_id)
        if subnet is None or subnet.region != region:
            raise ec2_error("InvalidSubnetID.NotFound",
                            f"The subnet ID '{subnet_id}' does not exist")
        return subnet

    def available_ips(self, subnet: Subnet) -> int:
        used = sum(1 for e in self.store.enis() if e.subnet_id == subnet.id)
        return ipam.capacity(subnet.cidr) - used

    def zone_of(self, subnet: Subnet) -> Zone:
        return next(z for z in zones(subnet.region) if z.name == subnet.az)

    async def create_subnet(self, region: str, vpc_id: str | None, cidr: str | None,
                            az: str | None, az_id: str | None,
                            tag_specs: list[dict] | None) -> Subnet:
        self.ensure_region(region)
        if not vpc_id:
            raise ec2_error("MissingParameter", "The request must contain the parameter vpcId")
        if not cidr:
            raise ec2_error("MissingParameter", "The request must contain the parameter cidrBlock")
        vpc = self.vpc(region, vpc_id)
        zone = self._zone(region, az, az_id)
        siblings = [s.cidr for s in self.store.subnets(region) if s.vpc_id == vpc.id]
        net = ipam.check_subnet_cidr(cidr, vpc.cidr, siblings)
        subnet = Subnet(new_id("subnet"), region, vpc.id, str(net), zone.name, False)
        with self.db.transaction():
            self.store.add_subnet(subnet)
            self.store.set_tags(subnet.id, self._tag_specs(tag_specs, "subnet"))
        await self.reconcile()
        return subnet

    def describe_subnets(self, region: str, ids: list[str], filters: list[dict]) -> list[Subnet]:
        self.ensure_region(region)
        check_names(filters, ["subnet-id", "vpc-id", "cidr-block", "cidr", "cidrBlock",
                              "availability-zone", "availability-zone-id", "availabilityZone",
                              "default-for-az", "defaultForAz", "state", "owner-id",
                              "available-ip-address-count"])
        for sid in ids:
            self.subnet(region, sid)
        tags = self.store.tags()
        out = []
        for s in self.store.subnets(region):
            z = self.zone_of(s)
            attrs = {"subnet-id": [s.id], "vpc-id": [s.vpc_id], "cidr-block": [s.cidr],
                     "cidr": [s.cidr], "cidrBlock": [s.cidr], "availability-zone": [s.az],
                     "availabilityZone": [s.az], "availability-zone-id": [z.zone_id],
                     "default-for-az": [bool_text(s.default_for_az)],
                     "defaultForAz": [bool_text(s.default_for_az)], "state": ["available"],
                     "owner-id": [self.settings.account_id],
                     "available-ip-address-count": [str(self.available_ips(s))]}
            if (not ids or s.id in ids) and matches(filters, attrs, tags.get(s.id, {})):
                out.append(s)
        return out

    async def delete_subnet(self, region: str, subnet_id: str) -> None:
        self.ensure_region(region)
        subnet = self.subnet(region, subnet_id)
        if any(e.subnet_id == subnet.id for e in self.store.enis()):
            raise ec2_error("DependencyViolation",
                            f"The subnet '{subnet.id}' has dependencies and cannot be deleted.")
        with self.db.transaction():
            self.store.delete_subnet(subnet.id)
        await self.reconcile()

    # security groups ---------------------------------------------------------------------
    def _default_vpc(self, region: str) -> Vpc | None:
        return next((v for v in self.store.vpcs(region) if v.is_default), None)

    def group(self, region: str, group_id: str) -> SecurityGroup:
        check_id(group_id, "sg", "InvalidGroupId.Malformed")
        group = self.store.group(group_id)
        if group is None or group.region != region:
            raise ec2_error("InvalidGroup.NotFound",
                            f"The security group '{group_id}' does not exist")
        return group

    def group_by_name(self, region: str, name: str, vpc_id: str | None = None) -> SecurityGroup:
        vpc = self.vpc(region, vpc_id) if vpc_id else self._default_vpc(region)
        for g in self.store.groups(region):
            if vpc is not None and g.vpc_id == vpc.id and g.name == name:
                return g
        where = f"default VPC '{vpc.id}'" if vpc and vpc.is_default else f"VPC '{vpc_id}'"
        raise ec2_error("InvalidGroup.NotFound",
                        f"The security group '{name}' does not exist in {where}")

    def _resolve(self, region: str, group_id: str | None, group_name: str | None) -> SecurityGroup:
        if group_id:
            return self.group(region, group_id)
        if group_name:
            return self.group_by_name(region, group_name)
        raise ec2_error("MissingParameter", "The request must contain the parameter groupId")

    async def create_security_group(self, region: str, name: str | None, description: str | None,
                                    vpc_id: str | None, tag_specs: list[dict] | None) -> SecurityGroup:
        self.ensure_region(region)
        if not name:
            raise ec2_error("MissingParameter", "The request must contain the parameter groupName")
        if description is None:
            raise ec2_error("MissingParameter",
                            "The request must contain the parameter groupDescription")
        if name.lower().startswith("sg-"):
            raise ec2_error("InvalidParameterValue",
                            "Group names may not be in the format sg-*.")
        vpc = self.vpc(region, vpc_id) if vpc_id else self._default_vpc(region)
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
            self.store.set_tags(group.id, self._tag_specs(tag_specs, "security-group"))
        await self.reconcile()
        return group

    def describe_security_groups(self, region: str, ids: list[str], names: list[str],
                                 filters: list[dict]) -> list[SecurityGroup]:
        self.ensure_region(region)
        check_names(filters, ["group-id", "group-name", "vpc-id", "description", "owner-id"])
        wanted = {self.group(region, gid).id for gid in ids}
        wanted |= {self.group_by_name(region, n).id for n in names}
        tags = self.store.tags()
        out = []
        for g in self.store.groups(region):
            attrs = {"group-id": [g.id], "group-name": [g.name], "vpc-id": [g.vpc_id],
                     "description": [g.description], "owner-id": [self.settings.account_id]}
            if (not wanted or g.id in wanted) and matches(filters, attrs, tags.get(g.id, {})):
                out.append(g)
        return out

    async def delete_security_group(self, region: str, group_id: str | None,
                                    group_name: str | None) -> SecurityGroup:
        self.ensure_region(region)
        group = self._resolve(region, group_id, group_name)
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
        await self.reconcile()
        return group

    def rules_of(self, group_id: str) -> list[SgRule]:
        return self.store.rules(group_id)

    def _pair_group(self, region: str, group: SecurityGroup, pair: dict) -> str:
        if pair.get("GroupId"):
            ref = self.group(region, pair["GroupId"])
        elif pair.get("GroupName"):
            ref = self.group_by_name(region, pair["GroupName"], group.vpc_id)
        else:
            raise ec2_error("MissingParameter", "The request must contain the parameter groupId")
        if ref.vpc_id != group.vpc_id:
            raise ec2_error("InvalidGroup.NotFound",
                            f"You have specified two resources that belong to different "
                            f"networks.")
        return ref.id

    async def authorize(self, region: str, params: dict, egress: bool) -> list[SgRule]:
        self.ensure_region(region)
        group = self._resolve(region, params.get("GroupId"), params.get("GroupName"))
        perms = (params.get("IpPermissions") or []) + legacy_permissions(params)
        if not perms:
            raise ec2_error("MissingParameter",
                            "The request must contain the parameter ipPermissions")
        new = rules_from_permissions(group.id, egress, perms,
                                     lambda pair: self._pair_group(region, group, pair))
        existing = {r.key for r in self.store.rules(group.id)}
        seen: set[tuple[object, ...]] = set()
        for rule in new:
            if rule.key in existing or rule.key in seen:
                raise ec2_error("InvalidPermission.Duplicate",
                                f'the specified rule "{describe_rule(rule)}" already exists')
            seen.add(rule.key)
        with self.db.transaction():
            for rule in new:
                self.store.add_rule(rule)
        await self.reconcile()
        return new

    async def revoke(self, region: str, params: dict, egress: bool) -> list[SgRule]:
        self.ensure_region(region)
        group = self._resolve(region, params.get("GroupId"), params.get("GroupName"))
        have = [r for r in self.store.rules(group.id) if r.egress == egress]
        doomed: list[SgRule] = []
        for rid in params.get("SecurityGroupRuleIds") or []:
            rule = next((r for r in have if r.id == rid), None)
            if rule is None:
                raise ec2_error("InvalidSecurityGroupRuleId.NotFound",
                                f"The security group rule ID '{rid}' does not exist")
            doomed.append(rule)
        perms = (params.get("IpPermissions") or []) + legacy_permissions(params)
        if perms:
            by_key = {r.key: r for r in have}
            for wanted in rules_from_permissions(group.id, egress, perms,
                                                 lambda pair: self._pair_group(region, group, pair)):
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
        await self.reconcile()
        return doomed

    def describe_rules(self, region: str, ids: list[str], filters: list[dict]) -> list[SgRule]:
        self.ensure_region(region)
        check_names(filters, ["group-id", "security-group-rule-id"])
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

    # network interfaces ------------------------------------------------------------------
    def interface(self, region: str, eni_id: str) -> Eni:
        check_id(eni_id, "eni", "InvalidNetworkInterfaceID.Malformed")
        eni = self.store.eni(eni_id)
        if eni is None or eni.region != region:
            raise ec2_error("InvalidNetworkInterfaceID.NotFound",
                            f"The networkInterface ID '{eni_id}' does not exist")
        return eni

    async def create_interface(self, region: str, subnet_id: str | None, group_ids: list[str],
                               ip: str | None = None, description: str = "",
                               interface_type: str = "interface",
                               requester_managed: bool = False, far_end: FarEnd | None = None,
                               own_netns: bool = False, owner_pid: int | None = None,
                               name: str | None = None, argv: str | None = None,
                               tag_specs: list[dict] | None = None) -> Eni:
        """Create an ENI. Its kernel port exists when it has a far end: `far_end` names a
        namespace (and link name) of the caller's (e.g. a Hyperplane namespace), or
        `own_netns=True` gives it a namespace of its own (`lambdaplane run`). The returned
        Eni's `far_end` says where that end lives."""
        self.ensure_region(region)
        if not subnet_id:
            raise ec2_error("MissingParameter", "The request must contain the parameter subnetId")
        subnet = self.subnet(region, subnet_id)
        groups = [self.group(region, g) for g in group_ids] if group_ids else \
            [g for g in self.store.groups(region) if g.vpc_id == subnet.vpc_id and g.name == "default"]
        for g in groups:
            if g.vpc_id != subnet.vpc_id:
                raise ec2_error("InvalidParameterValue",
                                f"The security group '{g.id}' does not belong to VPC "
                                f"'{subnet.vpc_id}'")
        in_use = {e.ip for e in self.store.enis() if e.subnet_id == subnet.id}
        address = ipam.check_requested(ip, subnet.cidr, in_use) if ip \
            else ipam.pick_free(subnet.cidr, in_use)
        eni_id = new_id("eni")
        if own_netns:
            far_end = FarEnd(self.names.resource_netns(eni_id), "eth0", True)
        owner_start = net_reconcile.process_start(owner_pid) if owner_pid else None
        if owner_pid and owner_start is None:
            raise ec2_error("InvalidParameterValue", f"no process {owner_pid}")
        eni = Eni(eni_id, region, subnet.id, subnet.vpc_id, address, new_mac(), interface_type,
                  requester_managed, description, "in-use" if far_end else "available",
                  tuple(dict.fromkeys(g.id for g in groups)), far_end, owner_pid, owner_start,
                  name=name, argv=argv)
        with self.db.transaction():
            self.store.add_eni(eni)
            self.store.set_tags(eni.id, self._tag_specs(tag_specs, "network-interface"))
        try:
            await self.reconcile()
        except Exception:
            log.exception("making the kernel port of %s failed; releasing it", eni.id)
            with self.db.transaction():
                self.store.delete_eni(eni.id)
            await self.reconcile()
            raise
        return eni

    def describe_interfaces(self, region: str, ids: list[str], filters: list[dict]) -> list[Eni]:
        self.ensure_region(region)
        check_names(filters, ["network-interface-id", "subnet-id", "vpc-id", "interface-type",
                              "availability-zone", "private-ip-address",
                              "addresses.private-ip-address", "group-id", "group-name", "status",
                              "requester-managed", "description", "mac-address", "owner-id"])
        for eid in ids:
            self.interface(region, eid)
        tags = self.store.tags()
        groups = {g.id: g for g in self.store.groups(region)}
        out = []
        for e in self.store.enis(region):
            subnet = self.store.subnet(e.subnet_id)
            attrs = {"network-interface-id": [e.id], "subnet-id": [e.subnet_id],
                     "vpc-id": [e.vpc_id], "interface-type": [e.interface_type],
                     "availability-zone": [subnet.az if subnet else ""],
                     "private-ip-address": [e.ip], "addresses.private-ip-address": [e.ip],
                     "group-id": list(e.group_ids),
                     "group-name": [groups[g].name for g in e.group_ids if g in groups],
                     "status": [e.status], "requester-managed": [bool_text(e.requester_managed)],
                     "description": [e.description], "mac-address": [e.mac],
                     "owner-id": [self.settings.account_id]}
            if (not ids or e.id in ids) and matches(filters, attrs, tags.get(e.id, {})):
                out.append(e)
        return out

    async def delete_interface(self, region: str, eni_id: str, by_user: bool = True) -> None:
        """Users may not delete interfaces in use or managed by the service (Lambda's)."""
        self.ensure_region(region)
        eni = self.interface(region, eni_id)
        if by_user and (eni.requester_managed or eni.status == "in-use"):
            raise ec2_error("InvalidNetworkInterface.InUse",
                            f"The network interface '{eni.id}' is currently in use.")
        with self.db.transaction():
            self.store.delete_eni(eni.id)
        await self.reconcile()

    # `lambdaplane run` ---------------------------------------------------------------------
    async def create_resource(self, region: str, subnet_id: str, group_ids: list[str],
                              ip: str | None, name: str | None, argv: list[str],
                              owner_pid: int) -> Eni:
        return await self.create_interface(
            region, subnet_id, group_ids, ip,
            description=f"lambdaplane run {name or ' '.join(argv)}"[:255],
            own_netns=True, owner_pid=owner_pid, name=name, argv=" ".join(argv))

    async def attach_process(self, eni_id: str, pid: int) -> Eni:
        eni = self.store.eni(eni_id)
        if eni is None:
            raise ec2_error("InvalidNetworkInterfaceID.NotFound",
                            f"The networkInterface ID '{eni_id}' does not exist")
        with self.db.transaction():
            self.store.set_eni_process(eni_id, pid, net_reconcile.process_start(pid))
        return replace(eni, process_pid=pid)

    async def release_resource(self, eni_id: str) -> None:
        eni = self.store.eni(eni_id)
        if eni is None:
            return
        await self.delete_interface(eni.region, eni_id, by_user=False)

    def resources(self) -> list[Eni]:
        return [e for e in self.store.enis() if e.owner_pid is not None]

