"""Tags on every EC2 network object, with AWS's rules: CreateTags / DeleteTags / DescribeTags,
`TagSpecifications` on the Create calls, key and value limits, the reserved `aws:` prefix and 50
tags per resource. A part of VpcService (service/vpc.py), given its Ec2Core
(service/ec2_core.py) and a callable that lists the taggable ids of the other parts. Which ids
are taggable, and as what resource type, is `TAGGABLE`: a prefix per kind of object."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import ec2_error
from .ec2_core import Ec2Core
from .ec2_filters import check_names, matches

MAX_TAGS = 50
MAX_KEY = 128
MAX_VALUE = 256


@dataclass(frozen=True)
class Taggable:
    resource_type: str  # as DescribeTags and TagSpecifications name it
    not_found: str  # the error code of an id of this kind that does not exist


TAGGABLE: dict[str, Taggable] = {
    "vpc": Taggable("vpc", "InvalidVpcID.NotFound"),
    "subnet": Taggable("subnet", "InvalidSubnetID.NotFound"),
    "sg": Taggable("security-group", "InvalidGroup.NotFound"),
    "sgr": Taggable("security-group-rule", "InvalidSecurityGroupRuleId.NotFound"),
    "eni": Taggable("network-interface", "InvalidNetworkInterfaceID.NotFound"),
    "rtb": Taggable("route-table", "InvalidRouteTableID.NotFound"),
    "acl": Taggable("network-acl", "InvalidNetworkAclID.NotFound"),
    "scr": Taggable("subnet-cidr-reservation", "InvalidSubnetCidrReservationID.NotFound"),
    "vpce": Taggable("vpc-endpoint", "InvalidVpcEndpointId.NotFound"),
}


@dataclass(frozen=True)
class TagDescription:
    resource_id: str
    resource_type: str
    key: str
    value: str


def resource_type_of(resource_id: str) -> str:
    kind = TAGGABLE.get(resource_id.split("-")[0])
    return kind.resource_type if kind else ""


def check_tag(key: str, value: str) -> None:
    """AWS's limits on one tag [?]: the wording of these messages is not documented."""
    if not key:
        raise ec2_error("InvalidParameterValue",
                        "Tag key cannot be empty. It must be between 1 and 128 characters.")
    if len(key) > MAX_KEY:
        raise ec2_error("InvalidParameterValue",
                        f"Tag key exceeds the maximum length of {MAX_KEY} characters")
    if len(value) > MAX_VALUE:
        raise ec2_error("InvalidParameterValue",
                        f"Tag value exceeds the maximum length of {MAX_VALUE} characters")
    if key.lower().startswith("aws:"):
        raise ec2_error("InvalidParameterValue",
                        "Tag keys starting with 'aws:' are reserved for internal use")


def tags_of_list(tags: list[dict[str, Any]]) -> dict[str, str]:
    out: dict[str, str] = {}
    for t in tags:
        key, value = t.get("Key") or "", t.get("Value") or ""
        check_tag(key, value)
        out[key] = value
    return out


def specified_tags(specs: list[dict[str, Any]] | None, resource_type: str) -> dict[str, str]:
    """The tags `TagSpecifications` give a new resource of `resource_type` (checked; the
    caller stores them in the transaction that creates the resource)."""
    tags: dict[str, str] = {}
    for spec in specs or []:
        given = spec.get("ResourceType")
        if given not in (None, resource_type):
            raise ec2_error("InvalidParameterValue",
                            f"'{given}' is not a valid taggable resource type for this "
                            "operation.")
        tags.update(tags_of_list(spec.get("Tags") or []))
    if len(tags) > MAX_TAGS:
        raise ec2_error("TagLimitExceeded",
                        f"The maximum number of tags per resource ({MAX_TAGS}) was exceeded.")
    return tags


class Ec2Tags:
    """The tag part of VpcService. `more_ids(region)`: the taggable ids of the kinds the other
    parts own (route tables, ACLs, gateways, …)."""

    def __init__(self, core: Ec2Core, more_ids: Callable[[str], set[str]]) -> None:
        self.core = core
        self.db, self.store = core.db, core.store
        self.more_ids = more_ids

    def tags_of(self, resource_id: str) -> dict[str, str]:
        return self.store.tags().get(resource_id, {})

    def taggable_ids(self, region: str) -> set[str]:
        """Every id in `region` that takes tags."""
        ids = {v.id for v in self.store.vpcs(region)} | {s.id for s in self.store.subnets(region)}
        groups = {g.id for g in self.store.groups(region)}
        ids |= groups | {e.id for e in self.store.enis(region)}
        ids |= {r.id for r in self.store.rules() if r.group_id in groups}
        return ids | self.more_ids(region)

    def _check_resources(self, region: str, resource_ids: list[str]) -> None:
        known = self.taggable_ids(region)
        for rid in resource_ids:
            if rid in known:
                continue
            kind = TAGGABLE.get(rid.split("-")[0])
            if kind:
                raise ec2_error(kind.not_found, f"The ID '{rid}' does not exist")
            raise ec2_error("InvalidID", f"The ID '{rid}' is not valid")

    async def create_tags(self, region: str, resource_ids: list[str],
                          tags: list[dict[str, Any]]) -> None:
        self.core.ensure_region(region)
        self._check_resources(region, resource_ids)
        new = tags_of_list(tags)
        have = self.store.tags()
        for rid in resource_ids:
            if len({**have.get(rid, {}), **new}) > MAX_TAGS:
                raise ec2_error("TagLimitExceeded",
                                f"The maximum number of tags per resource ({MAX_TAGS}) was "
                                f"exceeded for '{rid}'.")
        with self.db.transaction():
            for rid in resource_ids:
                self.store.set_tags(rid, new)

    async def delete_tags(self, region: str, resource_ids: list[str],
                          tags: list[dict[str, Any]] | None) -> None:
        """No `Tags`: every tag of the resources goes. A tag given with a value goes only when
        the value matches; one given without a value goes whatever its value."""
        self.core.ensure_region(region)
        self._check_resources(region, resource_ids)
        have = self.store.tags()
        with self.db.transaction():
            for rid in resource_ids:
                current = have.get(rid, {})
                keep = dict(current)
                for t in tags if tags else [{"Key": k} for k in current]:
                    key = t.get("Key") or ""
                    if key in keep and ("Value" not in t or t["Value"] == keep[key]):
                        del keep[key]
                if keep != current:
                    self.store.delete_tags(rid)
                    self.store.set_tags(rid, keep)

    def describe_tags(self, region: str, filters: list[dict[str, Any]]) -> list[TagDescription]:
        self.core.ensure_region(region)
        check_names(filters, ["key", "resource-id", "resource-type", "value"])
        known = self.taggable_ids(region)
        out = []
        for rid, tags in self.store.tags().items():
            if rid not in known:
                continue
            rtype = resource_type_of(rid)
            for key, value in tags.items():
                attrs = {"key": [key], "value": [value], "resource-id": [rid],
                         "resource-type": [rtype]}
                if matches(filters, attrs, tags):
                    out.append(TagDescription(rid, rtype, key, value))
        return out
