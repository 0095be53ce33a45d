"""Published versions, aliases and the per-function extras (resource policy, function URL,
runtime management and recursion settings) in SQLite. A version is a frozen `FunctionRecord`
(JSON) keyed by (region, function, number); an alias is an `AliasRecord`; the extras are JSON
documents keyed by (region, function, qualifier, kind). Only reads and writes: the rules are
in service/versions.py, service/aliases.py and service/permissions.py."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from .db import Database, schema
from .functions import FunctionRecord

schema("""
CREATE TABLE IF NOT EXISTS function_versions (
    region TEXT NOT NULL,
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    record TEXT NOT NULL,
    PRIMARY KEY (region, name, version)
);
CREATE TABLE IF NOT EXISTS function_version_counters (
    region TEXT NOT NULL,
    name TEXT NOT NULL,
    last INTEGER NOT NULL,
    PRIMARY KEY (region, name)
);
CREATE TABLE IF NOT EXISTS function_aliases (
    region TEXT NOT NULL,
    name TEXT NOT NULL,
    alias TEXT NOT NULL,
    record TEXT NOT NULL,
    PRIMARY KEY (region, name, alias)
);
CREATE TABLE IF NOT EXISTS function_extras (
    region TEXT NOT NULL,
    name TEXT NOT NULL,
    qualifier TEXT NOT NULL,
    kind TEXT NOT NULL,
    document TEXT NOT NULL,
    PRIMARY KEY (region, name, qualifier, kind)
);
""")


@dataclass
class AliasRecord:
    region: str
    function: str
    name: str
    arn: str
    function_version: str
    revision_id: str
    description: str = ""
    weights: dict[str, float] = field(default_factory=dict)  # AdditionalVersionWeights

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> AliasRecord:
        return cls(**json.loads(text))


class VersionStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- versions -------------------------------------------------------------------------------
    def next_number(self, region: str, name: str) -> int:
        """Numbers are never reused, even after the function is deleted and made again (AWS
        starts again at 1 for a new function; the counter is dropped with the function)."""
        row = self.db.conn.execute(
            "SELECT last FROM function_version_counters WHERE region=? AND name=?",
            (region, name)).fetchone()
        number = (int(row["last"]) if row else 0) + 1
        self.db.conn.execute(
            "INSERT INTO function_version_counters (region, name, last) VALUES (?, ?, ?) "
            "ON CONFLICT(region, name) DO UPDATE SET last=excluded.last", (region, name, number))
        return number

    def insert(self, record: FunctionRecord) -> None:
        self.db.conn.execute(
            "INSERT INTO function_versions (region, name, version, record) VALUES (?, ?, ?, ?)",
            (record.region, record.name, int(record.version), record.to_json()))

    def get(self, region: str, name: str, version: str) -> FunctionRecord | None:
        if not version.isdigit():
            return None
        row = self.db.conn.execute(
            "SELECT record FROM function_versions WHERE region=? AND name=? AND version=?",
            (region, name, int(version))).fetchone()
        return FunctionRecord.from_json(row["record"]) if row else None

    def latest(self, region: str, name: str) -> FunctionRecord | None:
        row = self.db.conn.execute(
            "SELECT record FROM function_versions WHERE region=? AND name=? "
            "ORDER BY version DESC LIMIT 1", (region, name)).fetchone()
        return FunctionRecord.from_json(row["record"]) if row else None

    def of(self, region: str, name: str) -> list[FunctionRecord]:
        rows = self.db.conn.execute(
            "SELECT record FROM function_versions WHERE region=? AND name=? ORDER BY version",
            (region, name)).fetchall()
        return [FunctionRecord.from_json(r["record"]) for r in rows]

    def all(self) -> list[FunctionRecord]:
        rows = self.db.conn.execute(
            "SELECT record FROM function_versions ORDER BY region, name, version").fetchall()
        return [FunctionRecord.from_json(r["record"]) for r in rows]

    def delete(self, region: str, name: str, version: str) -> bool:
        cur = self.db.conn.execute(
            "DELETE FROM function_versions WHERE region=? AND name=? AND version=?",
            (region, name, int(version)))
        return cur.rowcount > 0

    def usage(self, region: str) -> tuple[int, int]:
        """(version count, their code size) in a region."""
        row = self.db.conn.execute(
            "SELECT COUNT(*) AS n, "
            "COALESCE(SUM(CAST(json_extract(record, '$.code_size') AS BIGINT)), 0) "
            "AS size "
            "FROM function_versions WHERE region=?", (region,)).fetchone()
        return int(row["n"]), int(row["size"])

    # -- aliases --------------------------------------------------------------------------------
    def alias(self, region: str, name: str, alias: str) -> AliasRecord | None:
        row = self.db.conn.execute(
            "SELECT record FROM function_aliases WHERE region=? AND name=? AND alias=?",
            (region, name, alias)).fetchone()
        return AliasRecord.from_json(row["record"]) if row else None

    def aliases(self, region: str, name: str) -> list[AliasRecord]:
        rows = self.db.conn.execute(
            "SELECT record FROM function_aliases WHERE region=? AND name=? ORDER BY alias",
            (region, name)).fetchall()
        return [AliasRecord.from_json(r["record"]) for r in rows]

    def put_alias(self, record: AliasRecord) -> None:
        self.db.conn.execute(
            "INSERT INTO function_aliases (region, name, alias, record) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(region, name, alias) DO UPDATE SET record=excluded.record",
            (record.region, record.function, record.name, record.to_json()))

    def delete_alias(self, region: str, name: str, alias: str) -> bool:
        cur = self.db.conn.execute(
            "DELETE FROM function_aliases WHERE region=? AND name=? AND alias=?",
            (region, name, alias))
        return cur.rowcount > 0

    # -- extras: policy, url, settings ----------------------------------------------------------
    def extra(self, region: str, name: str, qualifier: str, kind: str) -> Any:
        row = self.db.conn.execute(
            "SELECT document FROM function_extras WHERE region=? AND name=? AND qualifier=? "
            "AND kind=?", (region, name, qualifier, kind)).fetchone()
        return json.loads(row["document"]) if row else None

    def extras(self, kind: str, region: str | None = None,
               name: str | None = None) -> list[tuple[str, str, str, Any]]:
        """(region, function, qualifier, document) of every extra of that kind."""
        rows = self.db.conn.execute(
            "SELECT region, name, qualifier, document FROM function_extras WHERE kind=? "
            "AND (? IS NULL OR region=?) AND (? IS NULL OR name=?) "
            "ORDER BY region, name, qualifier", (kind, region, region, name, name)).fetchall()
        return [(r["region"], r["name"], r["qualifier"], json.loads(r["document"]))
                for r in rows]

    def find_extra(self, kind: str, key: str, value: str) -> Any:
        """The first document of that kind whose top-level `key` is `value` (or None)."""
        row = self.db.conn.execute(
            "SELECT document FROM function_extras WHERE kind=? "
            "AND json_extract(document, '$.' || ?)=? LIMIT 1", (kind, key, value)).fetchone()
        return json.loads(row["document"]) if row else None

    def put_extra(self, region: str, name: str, qualifier: str, kind: str,
                  document: Any) -> None:
        self.db.conn.execute(
            "INSERT INTO function_extras (region, name, qualifier, kind, document) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT(region, name, qualifier, kind) "
            "DO UPDATE SET document=excluded.document",
            (region, name, qualifier, kind, json.dumps(document)))

    def delete_extra(self, region: str, name: str, qualifier: str, kind: str) -> bool:
        cur = self.db.conn.execute(
            "DELETE FROM function_extras WHERE region=? AND name=? AND qualifier=? AND kind=?",
            (region, name, qualifier, kind))
        return cur.rowcount > 0

    def forget_qualifier(self, region: str, name: str, qualifier: str) -> None:
        self.db.conn.execute(
            "DELETE FROM function_extras WHERE region=? AND name=? AND qualifier=?",
            (region, name, qualifier))

    def forget_function(self, region: str, name: str) -> None:
        """Everything of a deleted function: versions, aliases, extras, the counter."""
        for table in ("function_versions", "function_version_counters", "function_aliases",
                      "function_extras"):
            self.db.conn.execute(f"DELETE FROM {table} WHERE region=? AND name=?",
                                 (region, name))
