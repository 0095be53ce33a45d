"""The Event queue on PostgreSQL, through boto3 against a live `serve --database …`: Event
invokes run once each and their OnSuccess records reach the destination function; the queue's
rows are PostgreSQL's, released once done; an event a dead claimer (another server that
vanished) holds is run by this server after the claim's lease ran out, and an event queued
straight into the database by another process is run too (the LISTEN/NOTIFY wake-up)."""
from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from collections.abc import Iterator

import psycopg
import pytest

from lambdaplane.sandbox.logs import log_path
from tests.conftest import live_server
from tests.harness import LiveServer, create_python_function
from tests.pg_server import PgServer

pytestmark = pytest.mark.root

ACCOUNT = "000000000000"
APP = """
def handler(event, context):
    print("RUN", context.aws_request_id)
    return {"n": event.get("n")}
"""
SINK = """
import json

def handler(event, context):
    print("RECORD " + json.dumps(event))
"""


@pytest.fixture(scope="module")
def database(pg_server: PgServer) -> Iterator[str]:
    with pg_server.database() as url:
        yield url


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, database: str) -> Iterator[LiveServer]:
    yield from live_server(tmp_path_factory.mktemp("lpq"), "--database", database)


def _lines(server: LiveServer, function: str, prefix: str) -> list[str]:
    path = log_path(server.data_dir, "us-east-1", function)
    if not path.exists():
        return []
    return [line.split(prefix, 1)[1].strip() for line in path.read_text().splitlines()
            if prefix in line]


def _wait_for(condition, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition never became true"
        time.sleep(0.1)


def test_events_run_once_and_their_destinations_fire(server: LiveServer, database: str) -> None:
    lam = server.lambda_()
    create_python_function(lam, "q-work", APP)
    create_python_function(lam, "q-sink", SINK)
    lam.put_function_event_invoke_config(
        FunctionName="q-work", DestinationConfig={"OnSuccess": {
            "Destination": f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:q-sink"}})
    accepted = []
    for n in range(12):
        resp = lam.invoke(FunctionName="q-work", InvocationType="Event",
                          Payload=json.dumps({"n": n}))
        assert resp["StatusCode"] == 202
        accepted.append(resp["ResponseMetadata"]["RequestId"])
    _wait_for(lambda: len(_lines(server, "q-sink", "RECORD ")) >= 12)
    assert Counter(_lines(server, "q-work", "RUN ")) == Counter(accepted)  # once each
    records = [json.loads(r) for r in _lines(server, "q-sink", "RECORD ")]
    assert sorted(r["requestContext"]["requestId"] for r in records) == sorted(accepted)
    assert {r["requestContext"]["condition"] for r in records} == {"Success"}
    assert sorted(r["requestPayload"]["n"] for r in records) == list(range(12))
    with psycopg.connect(database) as conn:  # the queue is PostgreSQL's; done rows released
        rows = conn.execute("SELECT status, attempts, claimed_by FROM event_invocations "
                            "WHERE name = 'q-work'").fetchall()
    assert rows and set(rows) == {("succeeded", 1, None)} and len(rows) == 12


def test_a_dead_claimers_event_and_a_foreign_enqueue_are_run(server: LiveServer,
                                                           database: str) -> None:
    lam = server.lambda_()
    create_python_function(lam, "q-orphan", APP)
    held, foreign = str(uuid.uuid4()), str(uuid.uuid4())
    now = time.time()
    with psycopg.connect(database, autocommit=True) as conn:
        # claimed by a server that died: its lease runs out in 3 s and is never renewed
        conn.execute("INSERT INTO event_invocations (request_id, region, name, payload, "
                     "accepted_at, not_before, claimed_by, claim_until) "
                     "VALUES (%s, 'us-east-1', 'q-orphan', '{}', %s, %s, 'lpdead-0', %s)",
                     (held, now, now, now + 3.0))
        time.sleep(1.0)
        assert _lines(server, "q-orphan", "RUN ") == []  # not while the lease holds
        # queued by another process (as another serve's Invoke does) and announced
        conn.execute("INSERT INTO event_invocations (request_id, region, name, payload, "
                     "accepted_at, not_before) VALUES (%s, 'us-east-1', 'q-orphan', '{}', "
                     "%s, %s)", (foreign, time.time(), time.time()))
        conn.execute("SELECT pg_notify('lp_event_queue', '')")
    _wait_for(lambda: Counter(_lines(server, "q-orphan", "RUN ")) ==
              Counter({held: 1, foreign: 1}))

    def both_succeeded() -> bool:
        with psycopg.connect(database) as conn:
            rows = conn.execute("SELECT request_id, status, claimed_by FROM event_invocations "
                                "WHERE name = 'q-orphan' ORDER BY id").fetchall()
        return rows == [(held, "succeeded", None), (foreign, "succeeded", None)]

    _wait_for(both_succeeded)
