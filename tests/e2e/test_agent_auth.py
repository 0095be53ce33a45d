"""Agents' internal endpoint authentication (issue 20; service/agent_auth.py): `serve
--no-data-plane` on PostgreSQL and one `lambdaplane agent --listen ADDR:PORT` inside a network
namespace made here (`lp<id>hA`, reached over a veth pair made here, its address inside the
namespace). boto3's invokes, forwarded and signed by serve, run on the agent. Raw requests to
the agent's TCP endpoint — unsigned, signed with a wrong secret, with a tampered body, a
replayed signature, a time an hour off — are refused (401/403) and run nothing: none of their
request ids reaches the function's log, the agent counts them (its /health, read with a
request the test signs with the database's secret) and logs them. The same invoke signed with
the database's secret runs. Rotation: `agent-secret rotate` — the agent accepts the new
secret; `retire --force` — it refuses the old one, and serve's invokes work again once it has
re-read the secrets. Everything is removed at the end."""
from __future__ import annotations

import base64
import http.client
import json
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from lambdaplane.cleanup import clean_instance, fresh_instance
from lambdaplane.sandbox.types import FunctionSpec, Invocation
from lambdaplane.service import agent_auth as auth
from lambdaplane.service import agent_wire as wire
from lambdaplane.store.agent_secrets import AgentSecret
from tests.e2e.test_agents import APP, AgentProcess, _wait
from tests.harness import LiveServer, create_python_function
from tests.pg_server import PgServer

pytestmark = pytest.mark.root
PORT = 4748


@pytest.fixture(scope="module")
def database(pg_server: PgServer) -> Iterator[str]:
    with pg_server.database() as url:
        yield url


def _db_secret(database: str) -> AgentSecret:
    with psycopg.connect(database) as conn:
        rows = conn.execute("SELECT id, secret, created_at FROM agent_secrets").fetchall()
    assert len(rows) == 1, "serve and the agent made one secret between them"
    return AgentSecret(rows[0][0], bytes.fromhex(rows[0][1]), float(rows[0][2]))


def _agent_secret(action: str, database: str, *more: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lambdaplane.cli", "agent-secret", action,
                           "--database", database, *more], capture_output=True, text=True,
                          timeout=60)


class Endpoint:
    """Raw HTTP to the agent's TCP endpoint, as anyone on the network could send it."""

    def __init__(self, address: str) -> None:
        self.address = address

    def request(self, method: str, path: str, body: bytes = b"",
                headers: dict[str, str] | None = None) -> tuple[int, dict]:  # type: ignore[type-arg]
        conn = http.client.HTTPConnection(self.address, PORT, timeout=60)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            data = resp.read()
            if resp.getheader("Content-Type") == wire.FRAMED:  # a result
                return resp.status, {"result": wire.read_result_body(data)}
            return resp.status, json.loads(data or b"{}")
        finally:
            conn.close()

    def signed(self, secret: AgentSecret, method: str, path: str, body: bytes = b"",
               extra: dict[str, str] | None = None) -> dict[str, str]:
        return {auth.HEADER: auth.authorization(secret, method, path, auth.body_digest(body)),
                **(extra or {})}


def test_the_internal_endpoint_refuses_what_serve_did_not_sign(
        tmp_path: Path, database: str) -> None:
    tid = fresh_instance("n")
    netns, outer, inner = f"lp{tid}hA", f"lp{tid}u0", f"lp{tid}u1"
    subnet = 128 + secrets.randbelow(120)
    here, there = f"198.18.{subnet}.1", f"198.18.{subnet}.2"
    server = LiveServer(tmp_path / "api", "--database", database, "--no-data-plane")
    agent = AgentProcess(tmp_path / "agent-a", database, "host-a", netns)
    agent.cmd += ["--listen", f"{there}:{PORT}"]
    try:
        subprocess.run(["ip", "netns", "add", netns], check=True)
        subprocess.run(["ip", "-n", netns, "link", "set", "lo", "up"], check=True)
        subprocess.run(["ip", "link", "add", outer, "type", "veth", "peer", "name", inner,
                        "netns", netns], check=True)
        subprocess.run(["ip", "addr", "add", f"{here}/30", "dev", outer], check=True)
        subprocess.run(["ip", "link", "set", outer, "up"], check=True)
        subprocess.run(["ip", "-n", netns, "addr", "add", f"{there}/30", "dev", inner],
                       check=True)
        subprocess.run(["ip", "-n", netns, "link", "set", inner, "up"], check=True)
        server.start()
        agent.start()
        assert f"agent ready at http://{there}:{PORT}" in agent.log()
        lam = server.lambda_()
        made = create_python_function(lam, "authed", APP)

        # serve's invokes are signed: they run on the agent
        out = lam.invoke(FunctionName="authed", Payload=b'{"n": 1}')
        assert out["StatusCode"] == 200 and "FunctionError" not in out
        assert json.loads(out["Payload"].read()) == {"echo": {"n": 1}}
        log_path = agent.data_dir / "logs" / "us-east-1" / "authed.log"
        first = out["ResponseMetadata"]["RequestId"]
        _wait(lambda: log_path.exists() and f"ran {first}" in log_path.read_text(),
              "the invoke's line in the agent's function log")

        endpoint = Endpoint(there)
        secret = _db_secret(database)
        status, health = endpoint.request("GET", wire.HEALTH_PATH,
                                          headers=endpoint.signed(secret, "GET",
                                                                  wire.HEALTH_PATH))
        assert status == 200 and health["name"] == "host-a"
        accepted = health["auth"]["accepted"]
        assert accepted >= 2 and health["auth"]["refused"] == {}  # serve's invoke, this

        # the invoke anyone could send: the function's spec, its code already on the agent
        code_hex = base64.b64decode(made["CodeSha256"]).hex()
        spec = FunctionSpec("us-east-1", "authed", made["FunctionArn"], "$LATEST",
                            "python3.11", "app.handler", 128, 30, {}, code_hex,
                            Path("/unused"), "test-revision")
        doc = wire.spec_to_json(spec)

        def body(request_id: str) -> bytes:
            return wire.invoke_body(wire.spec_id(doc), doc, Invocation(request_id, b"{}"))
        framed = {"Content-Type": wire.FRAMED}
        stranger = AgentSecret(secret.id, secrets.token_bytes(32))
        tampered = endpoint.signed(secret, "POST", wire.INVOKE_PATH, body("forged-3"), framed)
        skewed = {auth.HEADER: auth.authorization(
            secret, "POST", wire.INVOKE_PATH, auth.body_digest(body("forged-4")),
            time.time() - 3600), **framed}
        attempts = [
            ("forged-1", framed, 401),  # unsigned
            ("forged-2", endpoint.signed(stranger, "POST", wire.INVOKE_PATH, body("forged-2"),
                                         framed), 403),  # another secret
            ("forged-5", tampered, 403),  # forged-3's signature, another body
            ("forged-4", skewed, 403),  # an hour old
            ("forged-6", {**framed, auth.HEADER: "Basic cm9vdDpyb290"}, 401),
        ]
        for request_id, headers, expected in attempts:
            status, doc_back = endpoint.request("POST", wire.INVOKE_PATH, body(request_id),
                                                headers)
            assert status == expected, (request_id, doc_back)
            assert doc_back["error"]["code"] in ("UnrecognizedClientException",
                                                 "AccessDeniedException")
        status, _ = endpoint.request("PUT", wire.CODE_PATH.format(hex="0" * 64), b"zip")
        assert status == 401

        # signed with the database's secret, the same invoke runs — once
        genuine = endpoint.signed(secret, "POST", wire.INVOKE_PATH, body("genuine-1"), framed)
        status, doc_back = endpoint.request("POST", wire.INVOKE_PATH, body("genuine-1"),
                                            genuine)
        assert status == 200, doc_back
        assert doc_back["result"].payload == b'{"echo": {}}'
        status, _ = endpoint.request("POST", wire.INVOKE_PATH, body("genuine-1"), genuine)
        assert status == 403  # the replay
        _wait(lambda: "ran genuine-1" in log_path.read_text(), "the signed invoke's line")
        assert "forged" not in log_path.read_text()

        status, health = endpoint.request("GET", wire.HEALTH_PATH,
                                          headers=endpoint.signed(secret, "GET",
                                                                  wire.HEALTH_PATH))
        assert status == 200
        assert health["auth"]["refused"] == {"missing": 2, "malformed": 1,
                                             "bad-signature": 2, "skew": 1, "replay": 1}
        assert health["auth"]["accepted"] == accepted + 2
        assert "refused unauthenticated requests to the internal endpoint" in agent.log()

        # and serve goes on invoking
        out = lam.invoke(FunctionName="authed", Payload=b'{"n": 2}')
        assert json.loads(out["Payload"].read()) == {"echo": {"n": 2}}

        # rotation: a new secret is taken by the agent within a renewal of the first request
        # naming it; after `retire --force` the old one is refused, and serve, once it has
        # re-read the secrets, signs with the new one
        rotated = _agent_secret("rotate", database)
        assert rotated.returncode == 0, rotated.stderr
        new_id = rotated.stdout.split()[1].rstrip(":")
        with psycopg.connect(database) as conn:
            new = AgentSecret(new_id, bytes.fromhex(conn.execute(
                "SELECT secret FROM agent_secrets WHERE id=%s", (new_id,)).fetchone()[0]))

        def health_status(key: AgentSecret) -> int:
            return endpoint.request("GET", wire.HEALTH_PATH, headers=endpoint.signed(
                key, "GET", wire.HEALTH_PATH))[0]
        _wait(lambda: health_status(new) == 200, "the agent to accept the new secret")
        assert health_status(secret) == 200  # the old one still
        assert _agent_secret("retire", database, "--force").returncode == 0
        _wait(lambda: health_status(secret) == 401, "the agent to drop the retired secret")

        def invoked() -> bool:
            try:
                lam.invoke(FunctionName="authed", Payload=b'{"n": 3}')
            except lam.exceptions.TooManyRequestsException:
                return False  # serve still signing with the retired secret: refused
            return True
        _wait(invoked, "serve to sign with the new secret", timeout_s=60)
        assert health_status(new) == 200
    finally:
        server.stop()
        agent.stop()
        if agent.data_dir.exists():
            agent.clean()
        left = server.leftovers() + agent.leftovers()
        server.backstop_clean()
        clean_instance(agent.instance)
        subprocess.run(["ip", "link", "del", outer], capture_output=True)
        subprocess.run(["ip", "netns", "del", netns], capture_output=True)
    assert left == []
