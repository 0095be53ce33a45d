"""Layer versions in SQLite: one row per (region, layer name, version) holding a
`LayerVersionRecord` (JSON) — its content's place in the code store, its metadata and its
resource policy. A deleted version keeps its row (flagged) so version numbers are never
reused, as on AWS. No rules here: service/layers.py decides."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from .db import Database, schema

schema("""
CREATE TABLE IF NOT EXISTS layer_versions (
    region TEXT NOT NULL,
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    deleted INTEGER NOT NULL DEFAULT 0,
    record TEXT NOT NULL,
    PRIMARY KEY (region, name, version)
);
""")


@dataclass
class LayerVersionRecord:
    region: str
    name: str
    version: int
    layer_arn: str
    version_arn: str
    created_date: str
    code_hex: str  # sha256 hex: the extracted content in the code store
    code_sha256: str  # base64, as AWS reports it
    code_size: int  # zipped bytes
    unzipped_size: int  # counts towards a function's 250 MB
    description: str = ""
    compatible_runtimes: list[str] = field(default_factory=list)
    compatible_architectures: list[str] = field(default_factory=list)
    license_info: str | None = None
    policy: list[dict[str, object]] = field(default_factory=list)  # statements, in order
    policy_revision: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "LayerVersionRecord":
        data = json.loads(text)
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})


class LayerStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def publish(self, record: LayerVersionRecord) -> LayerVersionRecord:
        """Insert with the next version number of its layer (set on `record`)."""
        with self.db.transaction() as conn:
            row = conn.execute(
                "SELECT COALESCE(MAX(version), 0) AS last FROM layer_versions "
                "WHERE region=? AND name=?", (record.region, record.name)).fetchone()
            record.version = int(row["last"]) + 1
            record.version_arn = f"{record.layer_arn}:{record.version}"
            conn.execute("INSERT INTO layer_versions (region, name, version, record) "
                         "VALUES (?, ?, ?, ?)",
                         (record.region, record.name, record.version, record.to_json()))
        return record

    def get(self, region: str, name: str, version: int) -> LayerVersionRecord | None:
        row = self.db.conn.execute(
            "SELECT record FROM layer_versions WHERE region=? AND name=? AND version=? "
            "AND deleted=0", (region, name, version)).fetchone()
        return LayerVersionRecord.from_json(row["record"]) if row else None

    def save(self, record: LayerVersionRecord) -> None:
        self.db.conn.execute(
            "UPDATE layer_versions SET record=? WHERE region=? AND name=? AND version=?",
            (record.to_json(), record.region, record.name, record.version))

    def delete(self, region: str, name: str, version: int) -> None:
        self.db.conn.execute(
            "UPDATE layer_versions SET deleted=1 WHERE region=? AND name=? AND version=?",
            (region, name, version))

    def versions(self, region: str, name: str) -> list[LayerVersionRecord]:
        """A layer's live versions, newest first."""
        rows = self.db.conn.execute(
            "SELECT record FROM layer_versions WHERE region=? AND name=? AND deleted=0 "
            "ORDER BY version DESC", (region, name)).fetchall()
        return [LayerVersionRecord.from_json(r["record"]) for r in rows]

    def names(self, region: str, after: str) -> list[str]:
        """Names of the layers of a region with a live version, in order, after `after`."""
        rows = self.db.conn.execute(
            "SELECT DISTINCT name FROM layer_versions WHERE region=? AND deleted=0 AND name>? "
            "ORDER BY name", (region, after)).fetchall()
        return [r["name"] for r in rows]
