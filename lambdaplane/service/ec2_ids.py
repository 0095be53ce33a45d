"""EC2 resource ids and ENI MAC addresses: making new ones and checking the ones a request
names (AWS's `InvalidXxxID.Malformed`). Shared by the VPC, security group and interface code."""
from __future__ import annotations

import secrets

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
