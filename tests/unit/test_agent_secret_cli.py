"""`lambdaplane agent-secret` (lambdaplane/agent_secret_cli.py) on the tests' PostgreSQL:
`rotate` adds a secret, `list` shows ids and ages but never a secret, `retire` refuses while
the newest may not be signing yet and, with --force, drops all but the newest."""
from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import psycopg
import pytest

from tests.pg_server import PgServer


@pytest.fixture
def database(pg_server: PgServer) -> Iterator[str]:
    with pg_server.database() as url:
        yield url


def _cli(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lambdaplane.cli", "agent-secret", *argv],
                          capture_output=True, text=True, timeout=60)


def test_rotate_list_and_retire(database: str) -> None:
    assert _cli("list", "--database", database).stdout == ""  # made by serve or an agent
    first = _cli("rotate", "--database", database)
    assert first.returncode == 0 and "serve signs with it from 30 s on" in first.stdout
    second = _cli("rotate", "--database", database)
    ids = [line.split("\t")[0] for line in _cli("list", "--database", database)
           .stdout.splitlines()]
    assert len(ids) == 2 and second.stdout.startswith(f"made {ids[1]}:")
    with psycopg.connect(database) as conn:
        secrets = [row[0] for row in conn.execute("SELECT secret FROM agent_secrets")]
    listed = _cli("list", "--database", database).stdout
    assert not any(s in listed or s in first.stdout or s in second.stdout for s in secrets)
    assert listed.splitlines()[1].endswith("\tnewest")

    young = _cli("retire", "--database", database)
    assert young.returncode != 0 and "serve may still sign with an older one" in young.stderr
    forced = _cli("retire", "--database", database, "--force")
    assert forced.returncode == 0 and forced.stdout == f"retired {ids[0]}\n"
    assert [line.split("\t")[0] for line in _cli("list", "--database", database)
            .stdout.splitlines()] == [ids[1]]
