"""EC2 `Filters` on Describe calls: each resource offers a set of values per filter name; a
filter matches when any of its values (with `*` and `?` wildcards, as AWS allows) matches any of
the resource's values; all filters must match. `tag:<key>`, `tag-key` and `tag-value` work on
every type."""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any
from fnmatch import fnmatchcase

from ..errors import ec2_error

Attributes = Mapping[str, Iterable[str]]


def check_names(filters: list[dict[str, Any]], known: Iterable[str]) -> None:
    allowed = set(known)
    for f in filters:
        name = f.get("Name") or ""
        if name not in allowed and not name.startswith("tag:") \
                and name not in ("tag-key", "tag-value"):
            raise ec2_error("InvalidParameterValue", f"The filter '{name}' is invalid")


def matches(filters: list[dict[str, Any]], attrs: Attributes, tags: Mapping[str, str]) -> bool:
    for f in filters:
        name = f.get("Name") or ""
        wanted = f.get("Values") or []
        if name.startswith("tag:"):
            have: Iterable[str] = [tags[name[4:]]] if name[4:] in tags else []
        elif name == "tag-key":
            have = list(tags)
        elif name == "tag-value":
            have = list(tags.values())
        else:
            have = [str(v) for v in attrs.get(name, ())]
        if not any(fnmatchcase(h, w) for h in have for w in wanted):
            return False
    return True


def bool_text(value: bool) -> str:
    return "true" if value else "false"
