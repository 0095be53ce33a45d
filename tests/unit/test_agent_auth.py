"""The agents' internal endpoint is authenticated (service/agent_auth.py,
store/agent_secrets.py): sign/verify round trips; a wrong secret, a tampered method, path, body,
time or nonce, a time outside the skew window, a replayed nonce, an unknown key and malformed
headers are refused with their own status and counted; the nonce cache forgets what the window
no longer accepts and is bounded; the secret is made once per database (SQLite and
PostgreSQL), rotated (used for signing only after ACTIVATE_S) and retired. Then the real
middleware and serve's forwarding: a stand-in agent on a Unix socket behind the middleware
runs signed invokes and code uploads, refuses unsigned and forged ones before its handler
runs, and serve skips an agent that refuses its signature (another database's secret)."""
from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from lambdaplane.config import Settings
from lambdaplane.sandbox.types import Invocation
from lambdaplane.service import agent_auth as auth
from lambdaplane.service import agent_wire as wire
from lambdaplane.service.remote_environments import RemoteEnvironments
from lambdaplane.store.agent_secrets import AgentSecret, AgentSecretStore
from lambdaplane.store.db import Database
from tests.unit.test_remote_environments import HEX, ZIP, StandInAgent, _spec

NOW = 1_800_000_000.0
KEY = AgentSecret("k1", b"\x01" * 32, NOW - 3600)
BODY = b'{"spec_id": "x"}\npayload'
DIGEST = auth.body_digest(BODY)


def _signed(secret: AgentSecret = KEY, method: str = "POST", path: str = "/invoke",
            digest: str = DIGEST, now: float = NOW, nonce: str | None = None) -> str:
    return auth.authorization(secret, method, path, digest, now, nonce)


def _refused(verifier: auth.Verifier, header: str, method: str = "POST",
             path: str = "/invoke", digest: str = DIGEST, now: float = NOW) -> auth.AuthRefused:
    with pytest.raises(auth.AuthRefused) as e:
        verifier.verify(method, path, header, digest, now)
    return e.value


def test_a_signed_request_is_accepted_once() -> None:
    verifier = auth.Verifier([KEY], now=NOW)
    header = _signed()
    assert verifier.verify("POST", "/invoke", header, DIGEST, NOW + 1) == "k1"
    replay = _refused(verifier, header, now=NOW + 2)
    assert (replay.status, replay.reason) == (403, "replay")
    assert verifier.accepted == 1 and verifier.refused == {"replay": 1}


def test_tampering_or_a_wrong_secret_is_refused() -> None:
    verifier = auth.Verifier([KEY], now=NOW)
    forged = dataclasses.replace(KEY, secret=b"\x02" * 32)
    cases = [
        _refused(verifier, _signed(forged)),
        _refused(verifier, _signed(), method="PUT"),
        _refused(verifier, _signed(), path="/code/" + "0" * 64),
        _refused(verifier, _signed(), digest=auth.body_digest(BODY + b"!")),
    ]
    header = _signed(nonce="a" * 32)
    cases.append(_refused(verifier, header.replace("a" * 32, "b" * 32)))
    cases.append(_refused(verifier, header.replace(f"Time={NOW:.3f}", f"Time={NOW + 1:.3f}")))
    assert {(e.status, e.reason) for e in cases} == {(403, "bad-signature")}
    assert verifier.refused == {"bad-signature": 6} and verifier.accepted == 0
    # a refused (forged) request does not use up its nonce: the real one still runs
    assert verifier.verify("POST", "/invoke", header, DIGEST, NOW) == "k1"


def test_the_time_window() -> None:
    verifier = auth.Verifier([KEY], skew_s=30, now=NOW)
    for off in (-31.0, 31.0, 3600.0):
        e = _refused(verifier, _signed(now=NOW + off))
        assert (e.status, e.reason) == (403, "skew")
    assert verifier.verify("POST", "/invoke", _signed(now=NOW - 29), DIGEST, NOW) == "k1"
    assert verifier.verify("POST", "/invoke", _signed(now=NOW + 29), DIGEST, NOW) == "k1"


def test_nonces_are_forgotten_only_when_the_window_no_longer_accepts_them() -> None:
    verifier = auth.Verifier([KEY], skew_s=30, max_nonces=3, now=NOW)
    first = _signed(now=NOW)
    verifier.verify("POST", "/invoke", first, DIGEST, NOW)
    assert _refused(verifier, first, now=NOW + 30).reason == "replay"  # still in the window
    assert _refused(verifier, first, now=NOW + 31).reason == "skew"  # out of it: by the time
    for n in range(2):
        verifier.verify("POST", "/invoke", _signed(now=NOW + 1), DIGEST, NOW + 1 + n)
    full = _refused(verifier, _signed(now=NOW + 2), now=NOW + 2)
    assert (full.status, full.reason) == (503, "nonces-full")
    # 60 s (twice the window) on, the first two are forgotten: room again
    assert verifier.verify("POST", "/invoke", _signed(now=NOW + 61), DIGEST, NOW + 61)
    assert len(verifier._nonces) == 2


def test_malformed_missing_and_unknown_keys() -> None:
    verifier = auth.Verifier([KEY], now=NOW)
    assert (_refused(verifier, "").status, _refused(verifier, "").reason) == (401, "missing")
    good = _signed()
    for header in ("Basic dXNlcjpwdw==", good.replace(auth.SCHEME, "LP0-HMAC-SHA256"),
                   good.replace("Nonce=", "Nonse="), good + ", Key=k2",
                   good.replace(f"Time={NOW:.3f}", "Time=nan"),
                   good.rsplit("Signature=", 1)[0] + "Signature=abc"):
        e = _refused(verifier, header)
        assert (e.status, e.reason) == (401, "malformed"), header
    unknown = _refused(verifier, _signed(AgentSecret("k9", b"\x01" * 32)))
    assert (unknown.status, unknown.reason) == (401, "unknown-key")
    assert verifier.due(NOW) and verifier.reload_wanted  # re-read at the next renewal
    verifier.set_secrets([KEY, AgentSecret("k9", b"\x01" * 32)], NOW)
    assert not verifier.due(NOW)
    assert verifier.verify("POST", "/invoke", _signed(AgentSecret("k9", b"\x01" * 32)),
                           DIGEST, NOW) == "k9"
    assert repr(KEY) == f"AgentSecret(id='k1', created_at={KEY.created_at!r})"


def test_a_new_secret_signs_only_once_verifiers_hold_it() -> None:
    new = AgentSecret("k2", b"\x03" * 32, NOW)
    signer = auth.Signer([new, KEY], now=NOW)
    assert signer.signing_secret(NOW).id == "k1"
    assert signer.signing_secret(NOW + auth.ACTIVATE_S - 1).id == "k1"
    assert signer.signing_secret(NOW + auth.ACTIVATE_S).id == "k2"
    assert auth.Signer([new], now=NOW).signing_secret(NOW).id == "k2"  # the only one
    assert not signer.due(NOW + auth.RELOAD_S - 1) and signer.due(NOW + auth.RELOAD_S)
    with pytest.raises(ValueError):
        auth.Signer([])


def test_the_secret_store_makes_one_then_rotates_and_retires(
        tmp_path: Path, database_url: str | None) -> None:
    db = Database.open(tmp_path, database_url)
    try:
        store = AgentSecretStore(db)
        assert store.all() == []
        first = store.ensure()
        assert len(first) == 1 and len(first[0].secret) == 32
        other = Database.open(tmp_path, database_url)
        assert AgentSecretStore(other).ensure() == first  # once per database
        other.close()
        new = store.rotate(first[0].created_at + 1)
        assert [s.id for s in store.all()] == [first[0].id, new.id]
        assert store.retire() == [first[0].id]
        assert store.all() == [new]
        assert store.retire() == []
    finally:
        db.close()


class SignedAgent(StandInAgent):
    """The stand-in agent behind the real middleware (lambdaplane/agent.py's)."""

    def __init__(self, socket: Path, verifier: auth.Verifier) -> None:
        super().__init__(socket)
        self.verifier = verifier

    async def start(self) -> None:
        def refused(e: auth.AuthRefused) -> web.Response:
            return web.json_response({"error": {"code": "AccessDeniedException",
                                                "message": e.message, "status": e.status}},
                                     status=e.status)
        app = web.Application(middlewares=[auth.middleware(self.verifier, refused)])
        app.router.add_post(wire.INVOKE_PATH, self.invoke)
        app.router.add_put(wire.CODE_PATH, self.put_code)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.UnixSite(self.runner, str(self.socket)).start()


@pytest.fixture
async def signed(tmp_path: Path) -> AsyncIterator[tuple[RemoteEnvironments, SignedAgent,
                                                        SignedAgent]]:
    db = Database.open(tmp_path / "serve")
    remote = RemoteEnvironments(Settings(data_dir=tmp_path / "serve"), db)
    good = SignedAgent(tmp_path / "good.sock", auth.Verifier(AgentSecretStore(db).all()))
    # another cluster's agent: its database's secret is not this one
    other_db = Database.open(tmp_path / "other")
    stranger = SignedAgent(tmp_path / "other.sock",
                           auth.Verifier(AgentSecretStore(other_db).ensure()))
    other_db.close()
    for agent in (good, stranger):
        await agent.start()
    remote.code_zip = lambda code_hex: ZIP if code_hex == HEX else None
    now = time.time()
    remote.hosts.register("lpa", "host-a", f"unix:{good.socket}", "a", now)
    remote.hosts.register("lpb", "host-b", f"unix:{stranger.socket}", "b", now)
    remote.hosts.renew("lpa", now, load=4, warm=set())  # b is the least loaded: tried first
    await remote.start()
    try:
        yield remote, good, stranger
    finally:
        await remote.stop()
        for agent in (good, stranger):
            assert agent.runner is not None
            await agent.runner.cleanup()
        db.close()


async def test_serve_signs_and_an_agent_refusing_it_is_skipped(
        signed: tuple[RemoteEnvironments, SignedAgent, SignedAgent]) -> None:
    environments, good, stranger = signed
    result = await environments.invoke(_spec(), Invocation("req-1", b"abc"))
    assert result.payload == b"cba"
    assert good.invokes == ["req-1"] and good.code_puts == 1  # the code upload is signed too
    assert good.verifier.accepted == 3 and not good.verifier.refused  # need_code, code, run
    assert stranger.invokes == [] and stranger.verifier.refused == {"unknown-key": 1}
    assert [h.name for h in environments.placement.live] == ["host-a"]


async def test_unsigned_and_forged_requests_run_nothing(
        signed: tuple[RemoteEnvironments, SignedAgent, SignedAgent]) -> None:
    _environments, good, _stranger = signed
    good.has_code = True
    spec_doc = wire.spec_to_json(_spec())
    body = wire.invoke_body(wire.spec_id(spec_doc), spec_doc, Invocation("evil", b"{}"))
    key = next(iter(good.verifier.secrets.values()))
    header = auth.authorization(key, "POST", wire.INVOKE_PATH, auth.body_digest(body))
    conn = aiohttp.UnixConnector(str(good.socket))
    async with aiohttp.ClientSession(connector=conn) as session:
        async def post(headers: dict[str, str], data: bytes = body) -> int:
            async with session.post("http://agent" + wire.INVOKE_PATH, data=data,
                                    headers=headers) as resp:
                await resp.read()
                return resp.status
        assert await post({}) == 401
        forged = header[:-1] + ("1" if header.endswith("0") else "0")  # one hex digit changed
        assert await post({auth.HEADER: forged}) in (401, 403)
        assert await post({auth.HEADER: header}, body + b"more") == 403  # another body
        async with session.put("http://agent/code/" + HEX, data=ZIP) as resp:
            assert resp.status == 401
        async with session.put("http://agent/code/" + HEX, data=body,  # another path
                               headers={auth.HEADER: header}) as resp:
            assert resp.status == 403
        assert good.invokes == [] and good.code_puts == 0 and good.specs_received == 0
        framed = {auth.HEADER: header, "Content-Type": wire.FRAMED}
        assert await post(framed) == 200  # the genuine one still runs
        assert await post(framed) == 403  # once
    assert good.invokes == ["evil"]
    assert sum(good.verifier.refused.values()) == 6
