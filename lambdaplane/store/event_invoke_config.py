"""Asynchronous invocation configurations in SQLite: one row per (region, function, qualifier)
holding an `EventInvokeConfig` (JSON). No rules here: service/event_invoke_config.py decides."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from .db import Database, schema

schema("""
CREATE TABLE IF NOT EXISTS event_invoke_configs (
    region TEXT NOT NULL,
    name TEXT NOT NULL,
    qualifier TEXT NOT NULL,
    record TEXT NOT NULL,
    PRIMARY KEY (region, name, qualifier)
);
""")


@dataclass
class EventInvokeConfig:
    region: str
    name: str
    qualifier: str  # "$LATEST", a version or an alias
    function_arn: str  # qualified, as AWS answers it
    last_modified: float  # epoch seconds
    maximum_retry_attempts: int | None = None  # 0-2; None: AWS's default (2)
    maximum_event_age_s: int | None = None  # 60-21600; None: AWS's default (6 hours)
    on_success: str | None = None  # destination ARN
    on_failure: str | None = None

    @classmethod
    def from_json(cls, text: str) -> "EventInvokeConfig":
        data = json.loads(text)
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})


class EventInvokeConfigStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def get(self, region: str, name: str, qualifier: str) -> EventInvokeConfig | None:
        row = self.db.conn.execute(
            "SELECT record FROM event_invoke_configs WHERE region=? AND name=? AND qualifier=?",
            (region, name, qualifier)).fetchone()
        return EventInvokeConfig.from_json(row["record"]) if row else None

    def put(self, config: EventInvokeConfig) -> None:
        self.db.conn.execute(
            "INSERT OR REPLACE INTO event_invoke_configs (region, name, qualifier, record) "
            "VALUES (?, ?, ?, ?)",
            (config.region, config.name, config.qualifier, json.dumps(asdict(config))))

    def delete(self, region: str, name: str, qualifier: str | None = None) -> bool:
        """One qualifier's configuration, or (None) all of a function's."""
        cur = self.db.conn.execute(
            "DELETE FROM event_invoke_configs WHERE region=? AND name=? "
            "AND (? IS NULL OR qualifier=?)", (region, name, qualifier, qualifier))
        return cur.rowcount > 0

    def of_function(self, region: str, name: str) -> list[EventInvokeConfig]:
        rows = self.db.conn.execute(
            "SELECT record FROM event_invoke_configs WHERE region=? AND name=? "
            "ORDER BY qualifier", (region, name)).fetchall()
        return [EventInvokeConfig.from_json(r["record"]) for r in rows]
