"""`MaxResults` / `NextToken` on EC2 Describe calls, as AWS pages them: MaxResults between the
operation's bounds (5..1000 for the VPC calls), a NextToken that is opaque to the caller and
resumes where the last page ended; a token that was not ours is InvalidPaginationToken. Items
come in the store's stable (insertion) order, so a page boundary stays put between calls."""
from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from typing import TypeVar

from ..errors import ec2_error

T = TypeVar("T")
_PREFIX = "lp1:"


def _token(offset: int) -> str:
    return base64.urlsafe_b64encode(f"{_PREFIX}{offset}".encode()).decode()


def _offset(token: str) -> int:
    try:
        text = base64.urlsafe_b64decode(token.encode()).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        text = ""
    body = text.removeprefix(_PREFIX)
    if not text.startswith(_PREFIX) or not body.isdigit():
        raise ec2_error("InvalidPaginationToken",
                        f"Invalid pagination token '{token}'. The specified pagination token "
                        "is not valid or is expired.")
    return int(body)


def paginate(items: Sequence[T], max_results: int | None, next_token: str | None,
             low: int = 5, high: int = 1000) -> tuple[list[T], str | None]:
    """The page of `items` a request asks for, and the NextToken of the page after it (None on
    the last page)."""
    if max_results is not None and not low <= max_results <= high:
        raise ec2_error("InvalidParameterValue",
                        f"Value ( {max_results} ) for parameter maxResults is invalid. "
                        f"Expecting a value between {low} and {high}.")
    start = _offset(next_token) if next_token else 0
    if max_results is None:
        return list(items[start:]), None
    end = start + max_results
    return list(items[start:end]), _token(end) if end < len(items) else None
