"""The cluster secrets that sign requests to the agents' internal endpoint
(service/agent_auth.py): rows of (id, secret, created_at) in the shared database — readable only
to who can read the database, which `serve` and every agent already must. The first one is made
once, under the schema lock (two openers make one); `rotate` adds a newer one and `retire`
drops all but the newest. Rows only; how they are used lives in service/agent_auth.py."""
from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

from .db import Database, schema
from .migrations import schema_lock

schema("""
CREATE TABLE IF NOT EXISTS agent_secrets (
  id TEXT PRIMARY KEY, secret TEXT NOT NULL, created_at REAL NOT NULL);
""")

SECRET_BYTES = 32  # HMAC-SHA256's block-sized key: 256 bits from the OS's CSPRNG


@dataclass(frozen=True)
class AgentSecret:
    id: str  # travels in the signature header, so a verifier knows which secret to use
    secret: bytes = b""
    created_at: float = 0.0

    def __repr__(self) -> str:  # never the secret in a log line or a traceback
        return f"AgentSecret(id={self.id!r}, created_at={self.created_at!r})"


def _new(now: float) -> AgentSecret:
    return AgentSecret(f"k{int(now)}-{secrets.token_hex(4)}", secrets.token_bytes(SECRET_BYTES),
                       now)


class AgentSecretStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def all(self) -> list[AgentSecret]:
        """Every secret, oldest first."""
        return [AgentSecret(r["id"], bytes.fromhex(r["secret"]), float(r["created_at"]))
                for r in self.db.conn.execute(
                    "SELECT id, secret, created_at FROM agent_secrets "
                    "ORDER BY created_at, id").fetchall()]

    def ensure(self, now: float | None = None) -> list[AgentSecret]:
        """The secrets, the first one made if there is none (once, whoever opens first)."""
        held = self.all()
        if held:
            return held
        with schema_lock(self.db), self.db.transaction() as conn:
            if conn.execute("SELECT id FROM agent_secrets LIMIT 1").fetchone() is None:
                self._insert(conn, _new(time.time() if now is None else now))
        return self.all()

    def rotate(self, now: float | None = None) -> AgentSecret:
        """Add a newer secret (the old ones stay valid until `retire`)."""
        made = _new(time.time() if now is None else now)
        with self.db.transaction() as conn:
            self._insert(conn, made)
        return made

    def retire(self) -> list[str]:
        """Delete every secret but the newest; the ids deleted."""
        held = self.all()
        gone = [s.id for s in held[:-1]]
        with self.db.transaction() as conn:
            for secret_id in gone:
                conn.execute("DELETE FROM agent_secrets WHERE id=?", (secret_id,))
        return gone

    @staticmethod
    def _insert(conn: object, made: AgentSecret) -> None:
        conn.execute("INSERT INTO agent_secrets (id, secret, created_at) "  # type: ignore[attr-defined]
                     "VALUES (?, ?, ?)", (made.id, made.secret.hex(), made.created_at))
