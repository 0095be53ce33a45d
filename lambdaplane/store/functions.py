"""Functions in SQLite: one row per (region, name) holding the full configuration as a
`FunctionRecord` (JSON), so a restart keeps every function exactly as it was. No rules here:
the service decides; this module only reads and writes."""
from __future__ import annotations

import functools
import json
import sqlite3
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone

from ..model.vpc_config import VpcConfig
from .db import Database, schema

schema("""
CREATE TABLE IF NOT EXISTS functions (
    region TEXT NOT NULL,
    name TEXT NOT NULL,
    record TEXT NOT NULL,
    PRIMARY KEY (region, name)
);
""")


def aws_timestamp(when: datetime | None = None) -> str:
    """Lambda's LastModified format: 2026-11-27T10:00:00.000+0000."""
    when = when or datetime.now(timezone.utc)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}+0000"


@dataclass
class FunctionRecord:
    region: str
    name: str
    arn: str
    runtime: str
    role: str
    handler: str
    code_hex: str  # sha256 hex: where the code lives on disk
    code_sha256: str  # base64 sha256, as AWS reports it
    code_size: int
    revision_id: str
    last_modified: str
    description: str = ""
    timeout: int = 3
    memory_size: int = 128
    environment: dict[str, str] = field(default_factory=dict)
    architectures: list[str] = field(default_factory=lambda: ["x86_64"])
    ephemeral_storage_mb: int = 512
    tracing_mode: str = "PassThrough"
    logging_config: dict[str, str] = field(default_factory=dict)
    dead_letter_target: str | None = None
    kms_key_arn: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    # VpcConfig as asked + VpcId once known; None when never given (GetFunction shows none)
    vpc_config: VpcConfig | None = None
    reserved_concurrency: int | None = None
    state: str = "Pending"
    state_reason: str | None = None
    state_reason_code: str | None = None
    last_update_status: str = "Successful"
    last_update_status_reason: str | None = None
    last_update_status_reason_code: str | None = None
    package_type: str = "Zip"
    version: str = "$LATEST"
    # Layers: [{Arn, CodeSize, CodeHex, UnzippedSize}] in order (service/layers.py)
    layers: list[dict[str, object]] = field(default_factory=list)

    def to_json(self) -> str:
        data = asdict(self)
        data["vpc_config"] = self.vpc_config.to_wire() if self.vpc_config is not None else {}
        return json.dumps(data)

    @classmethod
    def from_json(cls, text: str) -> "FunctionRecord":
        data = json.loads(text)
        known = _field_names(cls)
        data["vpc_config"] = VpcConfig.from_wire(data["vpc_config"]) \
            if data.get("vpc_config") else None
        # Fields added by later versions are dropped, missing ones take defaults.
        return cls(**{k: v for k, v in data.items() if k in known})

    @property
    def has_vpc(self) -> bool:
        return self.vpc_config is not None and self.vpc_config.attached


@functools.cache
def _field_names(cls: type) -> frozenset[str]:
    """Read on every invoke (the record is loaded each time): computed once per class."""
    return frozenset(f.name for f in fields(cls))


class FunctionExists(Exception):
    pass


class FunctionStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def get(self, region: str, name: str) -> FunctionRecord | None:
        row = self.db.conn.execute("SELECT record FROM functions WHERE region=? AND name=?",
                                   (region, name)).fetchone()
        return FunctionRecord.from_json(row["record"]) if row else None

    def insert(self, record: FunctionRecord) -> None:
        try:
            self.db.conn.execute("INSERT INTO functions (region, name, record) VALUES (?, ?, ?)",
                                 (record.region, record.name, record.to_json()))
        except sqlite3.IntegrityError:
            raise FunctionExists(record.name) from None

    def save(self, record: FunctionRecord) -> None:
        self.db.conn.execute("UPDATE functions SET record=? WHERE region=? AND name=?",
                             (record.to_json(), record.region, record.name))

    def delete(self, region: str, name: str) -> bool:
        cur = self.db.conn.execute("DELETE FROM functions WHERE region=? AND name=?",
                                   (region, name))
        return cur.rowcount > 0

    def page(self, region: str, after: str | None, limit: int) -> list[FunctionRecord]:
        """Functions of a region in name order, starting after `after`."""
        rows = self.db.conn.execute(
            "SELECT record FROM functions WHERE region=? AND name>? ORDER BY name LIMIT ?",
            (region, after or "", limit)).fetchall()
        return [FunctionRecord.from_json(r["record"]) for r in rows]

    def all(self, region: str | None = None) -> list[FunctionRecord]:
        if region is None:
            rows = self.db.conn.execute("SELECT record FROM functions ORDER BY region, name")
        else:
            rows = self.db.conn.execute(
                "SELECT record FROM functions WHERE region=? ORDER BY name", (region,))
        return [FunctionRecord.from_json(r["record"]) for r in rows.fetchall()]

    def code_in_use(self, code_hex: str) -> bool:
        row = self.db.conn.execute(
            "SELECT 1 FROM functions WHERE json_extract(record, '$.code_hex')=? LIMIT 1",
            (code_hex,)).fetchone()
        return row is not None

    def reserved_total(self, region: str, excluding: str | None = None) -> int:
        row = self.db.conn.execute(
            "SELECT COALESCE(SUM(CAST(json_extract(record, '$.reserved_concurrency') AS BIGINT)), 0) "
            "AS total "
            "FROM functions WHERE region=? AND name IS NOT ?", (region, excluding)).fetchone()
        return int(row["total"])

    def usage(self, region: str) -> tuple[int, int]:
        """(function count, total code size) in a region."""
        row = self.db.conn.execute(
            "SELECT COUNT(*) AS n, "
            "COALESCE(SUM(CAST(json_extract(record, '$.code_size') AS BIGINT)), 0) "
            "AS size "
            "FROM functions WHERE region=?", (region,)).fetchone()
        return int(row["n"]), int(row["size"])

    def count_by_region(self) -> dict[str, int]:
        rows = self.db.conn.execute("SELECT region, COUNT(*) AS n FROM functions GROUP BY region")
        return {r["region"]: int(r["n"]) for r in rows.fetchall()}
