"""LogsService: CloudWatch Logs' rules over the log store — groups, streams, events, tokens,
retention, tags and the size bound, with AWS's errors and messages.

Owns: what each Logs operation means (inputs already parsed and type-checked by api/), the
GetLogEvents f/ b/ token semantics, FilterLogEvents paging and patterns, retention (events
older than a group's retention really deleted: at once when the policy is set, then every
minute) and the store-wide size bound (oldest events go first). Function output reaches the
store through store/log_ingest.py's LogIngest, not through here."""
from __future__ import annotations

import asyncio
import logging
from typing import Any

from ..tasks import cancel_and_wait
from ..config import Settings
from ..errors import AwsError
from ..store.log_ingest import LogIngest
from ..store.log_store import (
    EVENT_OVERHEAD,
    EventQuery,
    LogGroup,
    LogStore,
    LogStream,
    now_ms,
)
from . import filter_pattern
from .log_paging import (
    GROUP_MISSING,
    STREAM_MISSING,
    Position,
    already_exists,
    invalid,
    not_found,
    opaque,
    unwrap,
    within_size,
)

log = logging.getLogger(__name__)

RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827,
                  2192, 2557, 2922, 3288, 3653)
DAY_MS = 24 * 3600 * 1000
MAX_AGE_MS = 14 * DAY_MS  # PutLogEvents refuses events older than this
MAX_FUTURE_MS = 2 * 3600 * 1000  # … or more than this ahead
MAX_BATCH_BYTES = 1024 * 1024  # PutLogEvents: messages + 26 bytes each
MAX_EVENT_SIZE = 256 * 1024  # one event, with its 26 bytes
SWEEP_INTERVAL_S = 60.0


class LogsService:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store = LogStore(settings.data_dir, settings.database or None)
        self.ingest = LogIngest(self.store.path, self.store.database)
        self.max_bytes = settings.logs_max_bytes
        self._sweeper: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.ingest.start()
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="lp-logs-sweep")

    async def stop(self) -> None:
        sweeper, self._sweeper = self._sweeper, None
        await cancel_and_wait(sweeper)
        await asyncio.to_thread(self.ingest.stop)
        self.store.close()

    # -- ARNs -------------------------------------------------------------------------------
    def group_arn(self, region: str, name: str) -> str:
        return f"arn:aws:logs:{region}:{self.settings.account_id}:log-group:{name}"

    def _group_by_arn(self, region: str, arn: str) -> LogGroup:
        parts = arn.split(":", 6)
        if len(parts) != 7 or parts[:3] != ["arn", "aws", "logs"] or \
                not parts[5] == "log-group":
            raise invalid(f"Invalid resource ARN: {arn}")
        name = parts[6].removesuffix(":*")
        return self._group(parts[3] or region, name)

    def _group(self, region: str, name: str) -> LogGroup:
        group = self.store.group(region, name)
        if group is None:
            raise not_found(GROUP_MISSING)
        return group

    def _identified_group(self, region: str, p: dict[str, Any]) -> LogGroup:
        name, identifier = p.get("logGroupName"), p.get("logGroupIdentifier")
        if name and identifier:
            raise invalid("LogGroup name and LogGroup ARN are mutually exclusive parameters.")
        if identifier:
            if identifier.startswith("arn:"):
                return self._group_by_arn(region, identifier)
            return self._group(region, identifier)
        if not name:
            raise invalid("Either logGroupName or logGroupIdentifier must be specified.")
        return self._group(region, name)

    # -- groups -----------------------------------------------------------------------------
    def create_log_group(self, region: str, p: dict[str, Any]) -> dict[str, Any]:
        name = p["logGroupName"]
        if not self.store.create_group(region, name, p.get("kmsKeyId"),
                                       p.get("logGroupClass", "STANDARD"), p.get("tags") or {}):
            raise already_exists("The specified log group already exists")
        return {}

    def delete_log_group(self, region: str, p: dict[str, Any]) -> dict[str, Any]:
        group = self._group(region, p["logGroupName"])
        self.store.delete_group(group.id)
        self.ingest.forget()
        return {}

    def describe_log_groups(self, region: str, p: dict[str, Any]) -> dict[str, Any]:
        prefix, pattern = p.get("logGroupNamePrefix"), p.get("logGroupNamePattern")
        if prefix and pattern:
            raise invalid("LogGroup name prefix and LogGroup name pattern are mutually "
                          "exclusive parameters.")
        groups = self.store.groups(region, prefix, pattern)
        wanted = p.get("logGroupIdentifiers")
        if wanted:
            names = {_name_in_arn(w) if w.startswith("arn:") else w for w in wanted}
            groups = [g for g in groups if g.name in names]
        page, token = self._page(groups, p.get("nextToken"), p.get("limit") or 50)
        return {"logGroups": [self._group_out(g) for g in page], "nextToken": token}

    def _group_out(self, g: LogGroup) -> dict[str, Any]:
        arn = self.group_arn(g.region, g.name)
        return {"logGroupName": g.name, "creationTime": g.created_ms,
                "retentionInDays": g.retention_days, "metricFilterCount": 0,
                "arn": arn + ":*", "logGroupArn": arn, "storedBytes": g.stored_bytes,
                "kmsKeyId": g.kms_key_id, "logGroupClass": g.log_group_class,
                "deletionProtectionEnabled": False}

    @staticmethod
    def _page(items: list[Any], token: str | None, limit: int) -> tuple[list[Any], str | None]:
        start = unwrap(token, 1)[0] if token else 0
        page = items[start:start + limit]
        more = start + limit < len(items)
        return page, (opaque(start + limit) if more else None)

    def put_retention_policy(self, region: str, p: dict[str, Any]) -> dict[str, Any]:
        days = p["retentionInDays"]
        if days not in RETENTION_DAYS:
            raise invalid(f"1 validation error detected: Value '{days}' at 'retentionInDays' "
                          f"failed to satisfy constraint: Member must satisfy enum value set: "
                          f"[{', '.join(map(str, RETENTION_DAYS))}]")
        group = self._group(region, p["logGroupName"])
        self.store.set_retention(group.id, days)
        self.store.expire(group.id, now_ms() - days * DAY_MS)
        return {}

    def delete_retention_policy(self, region: str, p: dict[str, Any]) -> dict[str, Any]:
        group = self._group(region, p["logGroupName"])
        self.store.set_retention(group.id, None)
        return {}

    # -- tags -------------------------------------------------------------------------------
    def tag_log_group(self, region: str, p: dict[str, Any]) -> dict[str, Any]:
        group = self._group(region, p["logGroupName"])
        self._set_tags(group, {**group.tags, **p["tags"]})
        return {}

    def untag_log_group(self, region: str, p: dict[str, Any]) -> dict[str, Any]:
        group = self._group(region, p["logGroupName"])
        self._set_tags(group, {k: v for k, v in group.tags.items() if k not in p["tags"]})
        return {}

    def list_tags_log_group(self, region: str, p: dict[str, Any]) -> dict[str, Any]:
        return {"tags": self._group(region, p["logGroupName"]).tags}

    def tag_resource(self, region: str, p: dict[str, Any]) -> dict[str, Any]:
        group = self._group_by_arn(region, p["resourceArn"])
        self._set_tags(group, {**group.tags, **p["tags"]})
        return {}

    def untag_resource(self, region: str, p: dict[str, Any]) -> dict[str, Any]:
        group = self._group_by_arn(region, p["resourceArn"])
        self._set_tags(group, {k: v for k, v in group.tags.items() if k not in p["tagKeys"]})
        return {}

    def list_tags_for_resource(self, region: str, p: dict[str, Any]) -> dict[str, Any]:
        return {"tags": self._group_by_arn(region, p["resourceArn"]).tags}

    def _set_tags(self, group: LogGroup, tags: dict[str, str]) -> None:
        if len(tags) > 50:
            raise AwsError("TooManyTagsException",
                           f"A resource can have no more than 50 tags: {group.name}")
        self.store.set_tags(group.id, tags)

    # -- streams ----------------------------------------------------------------------------
    def create_log_stream(self, region: str, p: dict[str, Any]) -> dict[str, Any]:
        group = self._group(region, p["logGroupName"])
        if not self.store.create_stream(group.id, p["logStreamName"]):
            raise already_exists("The specified log stream already exists")
        return {}

    def delete_log_stream(self, region: str, p: dict[str, Any]) -> dict[str, Any]:
        group = self._group(region, p["logGroupName"])
        stream = self._stream(group, p["logStreamName"])
        self.store.delete_stream(stream.id)
        self.ingest.forget()
        return {}

    def _stream(self, group: LogGroup, name: str) -> LogStream:
        stream = self.store.stream(group.id, name)
        if stream is None:
            raise not_found(STREAM_MISSING)
        return stream

    def describe_log_streams(self, region: str, p: dict[str, Any]) -> dict[str, Any]:
        group = self._identified_group(region, p)
        by_time = p.get("orderBy") == "LastEventTime"
        if by_time and p.get("logStreamNamePrefix"):
            raise invalid("Cannot order by LastEventTime with a logStreamNamePrefix.")
        streams = self.store.streams(group.id, p.get("logStreamNamePrefix"), by_time,
                                     bool(p.get("descending")))
        page, token = self._page(streams, p.get("nextToken"), p.get("limit") or 50)
        arn = self.group_arn(group.region, group.name)
        return {"logStreams": [{
            "logStreamName": s.name, "creationTime": s.created_ms,
            "firstEventTimestamp": s.first_event_ms, "lastEventTimestamp": s.last_event_ms,
            "lastIngestionTime": s.last_ingestion_ms, "storedBytes": s.stored_bytes,
            "arn": f"{arn}:log-stream:{s.name}"} for s in page], "nextToken": token}

    # -- events -----------------------------------------------------------------------------
    def put_log_events(self, region: str, p: dict[str, Any]) -> dict[str, Any]:
        group = self._group(region, p["logGroupName"])
        stream = self._stream(group, p["logStreamName"])
        events = p["logEvents"]
        sizes = [len(e["message"].encode(errors="replace")) + EVENT_OVERHEAD for e in events]
        if any(size > MAX_EVENT_SIZE for size in sizes):
            raise invalid(f"Log event too large: {max(sizes)} bytes exceeds limit of "
                          f"{MAX_EVENT_SIZE}")
        if sum(sizes) > MAX_BATCH_BYTES:
            raise invalid(f"Upload too large: {sum(sizes)} bytes exceeds limit of "
                          f"{MAX_BATCH_BYTES}")
        stamps = [e["timestamp"] for e in events]
        if stamps != sorted(stamps):
            raise invalid("Log events in a single PutLogEvents request must be in "
                          "chronological order.")
        if stamps and stamps[-1] - stamps[0] > DAY_MS:
            raise invalid("The batch of log events in a single PutLogEvents request cannot "
                          "span more than 24 hours.")
        now = now_ms()
        too_old = now - MAX_AGE_MS
        expired = now - group.retention_days * DAY_MS if group.retention_days else None
        rejected: dict[str, int] = {}
        kept: list[tuple[int, str]] = []
        for index, (stamp, event) in enumerate(zip(stamps, events)):
            if stamp > now + MAX_FUTURE_MS:
                rejected.setdefault("tooNewLogEventStartIndex", index)
            elif stamp < too_old:
                rejected["tooOldLogEventEndIndex"] = index
            elif expired is not None and stamp < expired:
                rejected["expiredLogEventEndIndex"] = index
            else:
                kept.append((stamp, event["message"]))
        self.store.put_events(group.id, stream.id, kept)
        return {"nextSequenceToken": f"{now:056d}", "rejectedLogEventsInfo": rejected or None}

    def get_log_events(self, region: str, p: dict[str, Any]) -> dict[str, Any]:
        group = self._identified_group(region, p)
        stream = self._stream(group, p["logStreamName"])
        limit = p.get("limit") or 10000
        end = p.get("endTime")
        query = EventQuery(group.id, [stream.id], start_ms=p.get("startTime"),
                           end_ms=end - 1 if end is not None else None, limit=limit)
        token = p.get("nextToken")
        given: Position | None = None
        if token:
            direction, given = Position.parse(token)
            query.backward = direction == "b"
        else:
            query.backward = not p.get("startFromHead", False)
        if given is not None:
            if query.backward:
                query.before = (given.timestamp, given.event_id)
            else:
                query.after = (given.timestamp, given.event_id)
        events = within_size(self.store.events(query), query.backward)
        if events:
            forward = Position(events[-1].timestamp, events[-1].id)
            backward = Position(events[0].timestamp, events[0].id)
        else:  # at the end (or start): the same place again, as AWS answers
            forward = backward = given or Position(0, 0)
        return {"events": [{"timestamp": e.timestamp, "message": e.message,
                            "ingestionTime": e.ingestion_time} for e in events],
                "nextForwardToken": forward.token("f"),
                "nextBackwardToken": backward.token("b")}

    def filter_log_events(self, region: str, p: dict[str, Any]) -> dict[str, Any]:
        group = self._identified_group(region, p)
        names, prefix = p.get("logStreamNames"), p.get("logStreamNamePrefix")
        if names and prefix:
            raise invalid("logStreamNames and logStreamNamePrefix are mutually exclusive "
                          "parameters.")
        start, end = p.get("startTime"), p.get("endTime")
        if start is not None and end is not None and start > end:
            raise invalid("endTime can't be before startTime.")
        try:
            pattern = filter_pattern.parse(p.get("filterPattern"))
        except filter_pattern.FilterPatternError as e:
            raise invalid(f"Invalid filter pattern: {e}") from None
        stream_ids: list[int] | None = None
        if names or prefix:
            streams = self.store.streams(group.id, prefix)
            if names:
                streams = [s for s in streams if s.name in set(names)]
            stream_ids = [s.id for s in streams]
            if not stream_ids:
                return {"events": [], "searchedLogStreams": []}
        query = EventQuery(group.id, stream_ids, start_ms=start, end_ms=end,
                           limit=p.get("limit") or 10000)
        if isinstance(pattern, filter_pattern.TermPattern):
            if pattern != filter_pattern.TermPattern():
                query.condition = pattern.sql("e.message")
        else:
            query.matcher = pattern.matches
            if isinstance(pattern, filter_pattern.JsonPattern):  # only JSON objects can match
                query.condition = ("e.message GLOB '*{*'", [])
        if p.get("nextToken"):
            query.after = tuple(unwrap(p["nextToken"], 2))  # type: ignore[assignment]
        found = self.store.events(query)
        events = within_size(found, False)
        more = len(found) == query.limit or len(events) < len(found)
        token = opaque(events[-1].timestamp, events[-1].id) if events and more else None
        return {"events": [{"logStreamName": e.stream_name, "timestamp": e.timestamp,
                            "message": e.message, "ingestionTime": e.ingestion_time,
                            "eventId": f"{e.id:056d}"} for e in events],
                "searchedLogStreams": [], "nextToken": token}

    # -- `lambdaplane logs` (not AWS) --------------------------------------------------------------
    def function_lines(self, region: str, group_name: str, tail: int,
                       after: str | None = None) -> tuple[list[str], str] | None:
        """A function's group as lines: the last `tail` events across its streams, or (with
        `after`, a token this returned) the events written since, oldest first; with the
        token to follow on. None if the group does not exist."""
        group = self.store.group(region, group_name)
        if group is None:
            return None
        query = EventQuery(group.id, limit=max(1, min(tail, 10000)))
        if after:
            query.after = tuple(unwrap(after, 2))  # type: ignore[assignment]
        else:
            query.backward = True
        events = self.store.events(query)
        if events:
            after = opaque(events[-1].timestamp, events[-1].id)
        return [e.message for e in events], after or opaque(0, 0)

    # -- retention and the size bound ----------------------------------------------------------
    def sweep(self, store: LogStore | None = None) -> int:
        """Apply every retention policy and the size bound once; events deleted. From a
        thread, pass a store (connection) of that thread's own."""
        store = store or self.store
        deleted = 0
        for group in store.groups_with_retention():
            assert group.retention_days is not None
            deleted += store.expire(group.id, now_ms() - group.retention_days * DAY_MS)
        deleted += store.trim_to(self.max_bytes)
        return deleted

    async def _sweep_forever(self) -> None:
        own = LogStore(self.settings.data_dir,  # used only from the sweeping thread
                       self.settings.database or None)
        try:
            while True:
                await asyncio.sleep(SWEEP_INTERVAL_S)
                try:
                    await asyncio.to_thread(self.sweep, own)
                except Exception:
                    log.exception("log retention sweep failed")
        finally:
            own.close()


def _name_in_arn(arn: str) -> str:
    parts = arn.split(":", 6)
    return parts[6].removesuffix(":*") if len(parts) == 7 else arn
