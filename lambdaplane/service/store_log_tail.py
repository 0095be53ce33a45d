"""Following a function's log group in the CloudWatch Logs store (service/logs.py) for the
console's live tail: the `LogTail` interface of service/log_tail.py over the Logs service's
own reads, with a cursor of its own.

Owns how "what came after" is decided. Events are read FilterLogEvents-style, in time order,
from a little before the newest event shown (LATE_MS): the execution environments of one
function write to the group side by side through the ingest queue, so an event can be stored
after one with a later timestamp. What is new is told by the event id, which grows as events
are stored (`eventId` of FilterLogEvents): every event stored since the last read has a larger
id than any shown, whatever its timestamp. A group deleted and made again (its creation time
changes) is followed from its start."""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from ..errors import AwsError
from .log_paging import unwrap
from .logs import LogsService

LATE_MS = 5_000  # how late (by its timestamp) an event may be stored and still be shown
PAGE = 2_000  # events per read: a longer scan continues at the next call
_REGION = re.compile(r"[a-z0-9-]{1,32}")
_FUNCTION = re.compile(r"[A-Za-z0-9_-]{1,140}")


@dataclass(frozen=True)
class StoreCursor:
    group: str
    created: int  # the group's creationTime: a group made again is followed from its start
    shown_up_to: int  # events with a larger id are new
    newest_ms: int  # the newest timestamp read: the next scan starts LATE_MS before it
    scan_token: str | None = None  # a scan cut short at PAGE events continues here
    scan_max_id: int = 0
    scan_newest_ms: int = 0


class StoreLogTail:
    """`group_of(region, name)` names the function's log group (`/aws/lambda/<name>` or its
    `LoggingConfig.LogGroup`)."""

    def __init__(self, logs: LogsService, group_of: Callable[[str, str], str]) -> None:
        self.logs = logs
        self.group_of = group_of

    def follow(self, region: str, name: str, cursor: object | None,
               last: int) -> tuple[list[str], object | None]:
        if not (_REGION.fullmatch(region) and _FUNCTION.fullmatch(name)):
            raise ValueError("invalid region or function name")
        group = self.group_of(region, name)
        created = self._created(region, group)
        if created is None:  # no output yet: the group is made at the first
            return [], None
        if not isinstance(cursor, StoreCursor) or cursor.group != group:
            return self._last(region, group, created, last)
        if cursor.created != created:  # the group was made again: all of it is new
            return self._scan(region, StoreCursor(group, created, 0, 0))
        return self._scan(region, cursor)

    def _created(self, region: str, group: str) -> int | None:
        found = self.logs.describe_log_groups(region, {"logGroupNamePrefix": group,
                                                      "logGroupIdentifiers": [group]})
        return next((int(g["creationTime"]) for g in found["logGroups"]
                     if g["logGroupName"] == group), None)

    def _last(self, region: str, group: str, created: int,
              last: int) -> tuple[list[str], StoreCursor]:
        """The last `last` lines; the cursor after the largest id stored by then."""
        found = self.logs.function_lines(region, group, last)
        if found is None:
            return [], StoreCursor(group, created, 0, 0)
        lines, token = found
        newest_ms, newest_id = unwrap(token, 2)
        # what was stored up to that read, around its newest event: ids above are new
        shown_up_to = newest_id
        params: dict[str, Any] = {"logGroupName": group,
                                  "startTime": max(0, newest_ms - LATE_MS), "limit": PAGE}
        while True:
            try:
                page = self.logs.filter_log_events(region, params)
            except AwsError:
                break
            for e in page["events"]:
                if (e["timestamp"], int(e["eventId"])) <= (newest_ms, newest_id):
                    shown_up_to = max(shown_up_to, int(e["eventId"]))
            if not page.get("nextToken") or any(
                    e["timestamp"] > newest_ms for e in page["events"]):
                break
            params["nextToken"] = page["nextToken"]
        return lines, StoreCursor(group, created, shown_up_to, newest_ms)

    def _scan(self, region: str, cursor: StoreCursor) -> tuple[list[str], StoreCursor]:
        params: dict[str, Any] = {"logGroupName": cursor.group, "limit": PAGE,
                                  "startTime": max(0, cursor.newest_ms - LATE_MS)}
        if cursor.scan_token:
            params["nextToken"] = cursor.scan_token
        try:
            page = self.logs.filter_log_events(region, params)
        except AwsError:  # deleted meanwhile: followed again once it is made
            return [], cursor
        lines = []
        max_id, newest = cursor.scan_max_id, cursor.scan_newest_ms
        for e in page["events"]:
            event_id = int(e["eventId"])
            if event_id > cursor.shown_up_to:
                lines.append(e["message"])
            max_id, newest = max(max_id, event_id), max(newest, e["timestamp"])
        if page.get("nextToken"):  # the same scan goes on; what is new is still told by
            return lines, replace(cursor, scan_token=page["nextToken"],  # the same id
                                  scan_max_id=max_id, scan_newest_ms=newest)
        return lines, StoreCursor(cursor.group, cursor.created,
                                  max(cursor.shown_up_to, max_id),
                                  max(cursor.newest_ms, newest))
