"""EC2 resource ids and ENI MAC addresses: making new ones and checking the ones a request
names (AWS's `InvalidXxxID.Malformed`), and `IdKind.find`: a resource looked up by the id a
request names, with AWS's MissingParameter / Malformed / NotFound errors. Shared by the VPC,
security group, interface, gateway, route table, ACL and endpoint code."""
from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

from ..errors import ec2_error


def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(9)[:17]}"


def new_mac() -> str:
    # AWS ENIs use locally administered unicast addresses like 02:xx:…
    return "02:" + ":".join(secrets.token_hex(1) for _ in range(5))


def check_id(value: str, prefix: str, code: str) -> None:
    body = value.removeprefix(prefix + "-")
    ok = value.startswith(prefix + "-") and len(body) in (8, 17) and \
        all(c in "0123456789abcdef" for c in body)
    if not ok:
        raise ec2_error(code, f'Invalid id: "{value}" (expecting "{prefix}-...")')


class InRegion(Protocol):
    @property
    def region(self) -> str: ...


Found = TypeVar("Found", bound=InRegion)


@dataclass(frozen=True)
class IdKind:
    """One kind of EC2 resource as a request names it: the id prefix and AWS's answers for an id
    that is missing (`missing`, the MissingParameter text; None when the caller checks that
    itself), not well formed (`malformed`, a code) or not there in the region (`not_found`, a
    code, and `not_found_message` with `{id}` for the id)."""
    prefix: str
    malformed: str
    not_found: str
    not_found_message: str
    missing: str | None = None

    def find(self, region: str, value: str | None,
             fetch: Callable[[str], Found | None]) -> Found:
        if not value and self.missing is not None:
            raise ec2_error("MissingParameter", self.missing)
        value = value or ""
        check_id(value, self.prefix, self.malformed)
        found = fetch(value)
        if found is None or found.region != region:
            raise ec2_error(self.not_found, self.not_found_message.format(id=value))
        return found
