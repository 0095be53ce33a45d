"""IAM roles and customer managed policies in SQLite: one row per role (its trust policy, inline
policies, attached policy ARNs and tags inside the record, as JSON) and one per managed policy,
so a restart keeps them exactly. Role names are unique regardless of case, as in IAM. No rules
here: service/iam.py decides; this module only reads and writes."""
from __future__ import annotations

import json
import sqlite3
from dataclasses import asdict, dataclass, field, fields
from typing import TypeVar

from .db import Database, schema

schema("""
CREATE TABLE IF NOT EXISTS iam_roles (
    name TEXT PRIMARY KEY COLLATE NOCASE,
    record TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS iam_policies (
    arn TEXT PRIMARY KEY,
    name TEXT NOT NULL COLLATE NOCASE,
    record TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS iam_policies_by_name ON iam_policies (name);
""")


@dataclass
class Role:
    name: str
    role_id: str
    arn: str
    path: str
    created: str  # ISO 8601
    trust_policy: str  # the JSON document as given
    description: str = ""
    max_session_duration: int = 3600
    inline_policies: dict[str, str] = field(default_factory=dict)  # name → document
    attached: list[str] = field(default_factory=list)  # managed policy ARNs, in attach order
    tags: dict[str, str] = field(default_factory=dict)


@dataclass
class ManagedPolicy:
    name: str
    policy_id: str
    arn: str
    path: str
    created: str
    updated: str
    document: str
    description: str = ""
    tags: dict[str, str] = field(default_factory=dict)


T = TypeVar("T", Role, ManagedPolicy)


def _load(cls: type[T], text: str) -> T:
    known = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in json.loads(text).items() if k in known})


class EntityExists(Exception):
    pass


class IamStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- roles ---------------------------------------------------------------------------------
    def role(self, name: str) -> Role | None:
        row = self.db.conn.execute("SELECT record FROM iam_roles WHERE name=?",
                                   (name,)).fetchone()
        return _load(Role, row["record"]) if row else None

    def insert_role(self, role: Role) -> None:
        try:
            self.db.conn.execute("INSERT INTO iam_roles (name, record) VALUES (?, ?)",
                                 (role.name, json.dumps(asdict(role))))
        except sqlite3.IntegrityError:
            raise EntityExists(role.name) from None

    def save_role(self, role: Role) -> None:
        self.db.conn.execute("UPDATE iam_roles SET record=? WHERE name=?",
                             (json.dumps(asdict(role)), role.name))

    def delete_role(self, name: str) -> bool:
        return self.db.conn.execute("DELETE FROM iam_roles WHERE name=?", (name,)).rowcount > 0

    def roles(self) -> list[Role]:
        rows = self.db.conn.execute("SELECT record FROM iam_roles ORDER BY name COLLATE NOCASE")
        return [_load(Role, r["record"]) for r in rows.fetchall()]

    # -- managed policies ----------------------------------------------------------------------
    def policy(self, arn: str) -> ManagedPolicy | None:
        row = self.db.conn.execute("SELECT record FROM iam_policies WHERE arn=?",
                                   (arn,)).fetchone()
        return _load(ManagedPolicy, row["record"]) if row else None

    def policy_named(self, name: str) -> ManagedPolicy | None:
        row = self.db.conn.execute("SELECT record FROM iam_policies WHERE name=?",
                                   (name,)).fetchone()
        return _load(ManagedPolicy, row["record"]) if row else None

    def insert_policy(self, policy: ManagedPolicy) -> None:
        try:
            self.db.conn.execute("INSERT INTO iam_policies (arn, name, record) VALUES (?, ?, ?)",
                                 (policy.arn, policy.name, json.dumps(asdict(policy))))
        except sqlite3.IntegrityError:
            raise EntityExists(policy.name) from None

    def delete_policy(self, arn: str) -> bool:
        return self.db.conn.execute("DELETE FROM iam_policies WHERE arn=?",
                                    (arn,)).rowcount > 0

    def policies(self) -> list[ManagedPolicy]:
        rows = self.db.conn.execute(
            "SELECT record FROM iam_policies ORDER BY name COLLATE NOCASE")
        return [_load(ManagedPolicy, r["record"]) for r in rows.fetchall()]

    def attachment_count(self, arn: str) -> int:
        return sum(1 for role in self.roles() if arn in role.attached)
