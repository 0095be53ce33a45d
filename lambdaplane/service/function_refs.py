"""How a request names a function: its name, a partial ARN (`123456789012:function:name`) or a
full ARN, each optionally with a qualifier (`:$LATEST`, a version or an alias), checked against
the Qualifier parameter, the region and the account as Lambda does; and the function's ARN."""
from __future__ import annotations

import re

from ..errors import InvalidParameterValue, ResourceNotFound

FUNCTION_REF = re.compile(
    r"(?:arn:(?P<partition>aws[a-zA-Z-]*)?:lambda:(?P<region>[a-z0-9-]+):)?"
    r"(?:(?P<account>\d{12}):)?(?:function:)?(?P<name>[a-zA-Z0-9_.-]+)"
    r"(?::(?P<qualifier>\$LATEST(?:\.PUBLISHED)?|[a-zA-Z0-9_-]+))?")


def function_arn(account_id: str, region: str, name: str, qualifier: str | None = None) -> str:
    base = f"arn:aws:lambda:{region}:{account_id}:function:{name}"
    return f"{base}:{qualifier}" if qualifier else base


def parse_function_ref(account_id: str, region: str, ref: str,
                       qualifier: str | None = None) -> tuple[str, str | None]:
    """(name, qualifier) from a name, partial ARN or ARN plus an optional Qualifier."""
    m = FUNCTION_REF.fullmatch(ref)
    if m is None:
        raise ResourceNotFound(f"Function not found: {function_arn(account_id, region, ref)}")
    name, derived = m.group("name"), m.group("qualifier")
    if derived and qualifier and derived != qualifier:
        raise InvalidParameterValue(
            "The derived qualifier from the function name does not match the specified "
            "qualifier.")
    qualifier = qualifier or derived
    wrong_region = m.group("region") and m.group("region") != region
    wrong_account = m.group("account") and m.group("account") != account_id
    if wrong_region or wrong_account:
        raise ResourceNotFound(f"Function not found: {ref}")
    return name, qualifier
