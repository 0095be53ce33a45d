"""CloudWatch Logs' errors and paging, shared by service/logs.py: the three error kinds
with AWS's messages, GetLogEvents' `f/` `b/` tokens (a position in a stream: just after or
before event (timestamp, id)), the opaque tokens of the other operations, and the 1 MB cap on
an answer."""
from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from ..errors import AwsError
from ..store.log_store import EVENT_OVERHEAD, StoredEvent

MAX_RESPONSE_BYTES = 1024 * 1024


def invalid(message: str) -> AwsError:
    return AwsError("InvalidParameterException", message)


def not_found(message: str) -> AwsError:
    return AwsError("ResourceNotFoundException", message)


def already_exists(message: str) -> AwsError:
    return AwsError("ResourceAlreadyExistsException", message)


GROUP_MISSING = "The specified log group does not exist."
STREAM_MISSING = "The specified log stream does not exist."


@dataclass(frozen=True)
class Position:
    """Where GetLogEvents stands in a stream: just after/before event (timestamp, id)."""
    timestamp: int
    event_id: int

    def token(self, direction: str) -> str:
        return f"{direction}/{self.timestamp:020d}{self.event_id:036d}"

    @classmethod
    def parse(cls, token: str) -> tuple[str, Position]:
        direction, _, digits = token.partition("/")
        if direction not in ("f", "b") or len(digits) != 56 or not digits.isdigit():
            raise invalid("The specified nextToken is invalid.")
        return direction, cls(int(digits[:20]), int(digits[20:]))


def opaque(*parts: int) -> str:
    return base64.urlsafe_b64encode(":".join(map(str, parts)).encode()).decode()


def unwrap(token: str, count: int) -> list[int]:
    try:
        parts = [int(p) for p in base64.urlsafe_b64decode(token.encode()).decode().split(":")]
    except (ValueError, binascii.Error, UnicodeDecodeError):
        parts = []
    if len(parts) != count:
        raise invalid("The specified nextToken is invalid.")
    return parts


def within_size(events: list[StoredEvent], from_end: bool) -> list[StoredEvent]:
    """AWS answers at most 1 MB of events: keep those nearest the reading position."""
    total, kept = 0, 0
    ordered = reversed(events) if from_end else iter(events)
    for event in ordered:
        total += len(event.message.encode(errors="replace")) + EVENT_OVERHEAD
        if total > MAX_RESPONSE_BYTES and kept:
            break
        kept += 1
    return events[len(events) - kept:] if from_end else events[:kept]
