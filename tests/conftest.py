"""Shared fixtures. `server` is a live lambdaplane for one test module; after it stops, the
test fails if the server left any namespace, link, nft table, cgroup or process behind."""
from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.harness import SLOW_CALLBACK_MS, LiveServer
from tests.pg_server import PgServer

if TYPE_CHECKING:
    from lambdaplane.store.db import Database


# No botocore in a test (nor in the CLIs, servers and benches it starts) may look for credentials
# at the instance metadata endpoint: that is traffic to a link-local address off this machine.
os.environ["AWS_EC2_METADATA_DISABLED"] = "true"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="needs root (real namespaces)")
    for item in items:
        if "root" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def host_cgroup2_options_put_back() -> Iterator[None]:
    """Servers set `favordynmods` on the cgroup2 mount and put it back when they stop; a test
    that SIGKILLs one relies on the next start or `clean` to do it. This is the backstop."""
    from lambdaplane.sandbox.cgroups import _cgroup2_mount, _remount

    before = _cgroup2_mount() if os.geteuid() == 0 else None
    yield
    after = _cgroup2_mount() if before is not None else None
    if before is not None and after is not None and after.options != before.options:
        _remount(after, list(before.options))


# LP_TEST_DATABASE=postgresql: every live server of the run keeps its store in a PostgreSQL
# database of its own (on the session's server, tests/pg_server.py) instead of SQLite
_live_server_pg: list[PgServer] = []


@pytest.fixture(scope="session", autouse=True)
def live_servers_on_postgresql() -> Iterator[None]:
    if os.environ.get("LP_TEST_DATABASE") != "postgresql":
        yield
        return
    from tests import pg_server as pg
    with pg.pg_server() as pg_server:
        _live_server_pg.append(pg_server)
        try:
            yield
        finally:
            _live_server_pg.clear()


def live_server(tmp_path: Path, *args: str) -> Iterator[LiveServer]:
    if _live_server_pg and "--database" not in args:
        with _live_server_pg[0].database() as url:
            yield from live_server(tmp_path, *args, "--database", url)
        return
    server = LiveServer(tmp_path / "data", *args)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        left = server.leftovers()
        server.backstop_clean()
        assert not left, f"server left behind: {left}\n{server.log()}"
        assert not server.loop_blocks, (  # only with LP_LOOP_DEBUG=1 (tests/harness.py)
            f"code held the event loop over {SLOW_CALLBACK_MS} ms {len(server.loop_blocks)} "
            f"times (stacks: 'loop blocked' in {server.log_path}):\n"
            + "\n".join(server.loop_blocks[:40]))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    yield from live_server(tmp_path_factory.mktemp("lp"))


@pytest.fixture
def fresh_server(tmp_path: Path) -> Iterator[LiveServer]:
    """A server of the test's own, for tests that restart or break it."""
    yield from live_server(tmp_path)


@pytest.fixture(scope="session")
def bench_all_quick(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`lambdaplane bench all --quick` run once for the session: the directory of its results.
    Each benchmark's own test reads its figure from here (one run of each, not two)."""
    out = tmp_path_factory.mktemp("bench") / "bench"
    done = subprocess.run([sys.executable, "-m", "lambdaplane.cli", "bench", "all", "--quick",
                           "--out", str(out)], capture_output=True, text=True, timeout=1800,
                          check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out


@pytest.fixture(scope="session")
def pg_server() -> Iterator["PgServer"]:
    """The session's own PostgreSQL (tests/pg_server.py): Unix socket in a temp dir, no TCP."""
    from tests import pg_server as pg
    if not pg.available():
        pytest.skip("needs root, the postgres user and Debian's PostgreSQL 15")
    with pg.pg_server() as server:
        yield server


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """Each store backend in turn: None (SQLite in the data dir) or a fresh PostgreSQL
    database's URL, dropped after the test."""
    if request.param == "sqlite":
        yield None
        return
    server = request.getfixturevalue("pg_server")
    with server.database() as url:
        yield url


@pytest.fixture
def db(tmp_path: Path, database_url: str | None) -> Iterator["Database"]:
    """A store opened on each backend in turn (database_url), closed after the test."""
    from lambdaplane.store.db import Database
    database = Database.open(tmp_path, database_url)
    try:
        yield database
    finally:
        database.close()
