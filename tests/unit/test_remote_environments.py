"""serve --no-data-plane's forwarding (service/remote_environments.py) against stand-in agents:
real HTTP servers on Unix sockets speaking the internal endpoint (service/agent_wire.py).
An agent that lacks the code gets the zip once and the invoke is repeated; a host whose socket
refuses (a killed agent whose lease still runs) is skipped and the invoke runs on the next;
an agent's AwsError comes back as it was; a VPC function's spec goes with its attachment; a sweep deletes an
expired host."""
from __future__ import annotations

import hashlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from lambdaplane.config import Settings
from lambdaplane.errors import AwsError
from lambdaplane.sandbox.types import FunctionSpec, Invocation, VpcAttachment
from lambdaplane.service import agent_wire as wire
from lambdaplane.service.remote_environments import RemoteEnvironments
from lambdaplane.store.db import Database

ZIP = b"PK-not-really-a-zip"
HEX = hashlib.sha256(ZIP).hexdigest()


class StandInAgent:
    """Answers /invoke with the payload reversed; asks for a spec it does not hold (by id) and
    for the code until it has it."""

    def __init__(self, socket: Path) -> None:
        self.socket = socket
        self.has_code = False
        self.invokes: list[str] = []
        self.code_puts = 0
        self.fail_with: AwsError | None = None
        self.specs: dict[str, dict[str, Any]] = {}  # by id, as the agent keeps them
        self.specs_received = 0
        self.runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post(wire.INVOKE_PATH, self.invoke)
        app.router.add_put(wire.CODE_PATH, self.put_code)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.UnixSite(self.runner, str(self.socket)).start()

    async def invoke(self, request: web.Request) -> web.Response:
        assert request.content_type == wire.FRAMED
        sid, spec_doc, inv = wire.read_invoke_body(await request.read())
        if spec_doc is not None:
            assert wire.spec_id(spec_doc) == sid
            self.specs[sid] = spec_doc
            self.specs_received += 1
        if sid not in self.specs:
            return web.json_response({"need_spec": sid}, status=409)
        if not self.has_code:
            return web.json_response({"need_code": self.specs[sid]["code_sha256"]}, status=409)
        if self.fail_with is not None:
            return web.json_response({"error": wire.error_to_json(self.fail_with)},
                                     status=self.fail_with.status)
        self.invokes.append(inv.request_id)
        from lambdaplane.sandbox.types import InvocationResult
        return web.Response(body=wire.result_body(InvocationResult(
            inv.payload[::-1], log_text="START …", cold_start=True)), content_type=wire.FRAMED)

    async def put_code(self, request: web.Request) -> web.Response:
        assert request.match_info["hex"] == HEX and await request.read() == ZIP
        self.code_puts += 1
        self.has_code = True
        return web.Response(status=204)


def _spec(vpc: VpcAttachment | None = None) -> FunctionSpec:
    return FunctionSpec("us-east-1", "f", "arn:aws:lambda:us-east-1:0:function:f", "$LATEST",
                        "python3.11", "app.handler", 128, 3, {}, HEX, Path("/code"), "r1",
                        vpc=vpc)


@pytest.fixture
async def remote(tmp_path: Path) -> AsyncIterator[tuple[RemoteEnvironments, StandInAgent]]:
    db = Database.open(tmp_path)
    agent = StandInAgent(tmp_path / "a.sock")
    await agent.start()
    remote = RemoteEnvironments(Settings(data_dir=tmp_path), db)
    remote.code_zip = lambda code_hex: ZIP if code_hex == HEX else None
    now = time.time()
    remote.hosts.register("lpa", "host-a", f"unix:{agent.socket}", "a", now)
    # host-b: registered, lease running, least loaded — but nothing listens on its socket
    remote.hosts.register("lpb", "host-b", f"unix:{tmp_path / 'b.sock'}", "b", now)
    remote.hosts.renew("lpa", now, load=4, warm=set())
    await remote.start()
    try:
        yield remote, agent
    finally:
        await remote.stop()
        assert agent.runner is not None
        await agent.runner.cleanup()
        db.close()


async def test_code_is_sent_once_and_a_dead_host_is_skipped(
        remote: tuple[RemoteEnvironments, StandInAgent]) -> None:
    environments, agent = remote
    result = await environments.invoke(_spec(), Invocation("req-1", b"abc"))
    assert result.payload == b"cba" and result.log_text == "START …" and result.cold_start
    assert agent.invokes == ["req-1"] and agent.code_puts == 1
    assert [h.name for h in environments.placement.live] == ["host-a"]  # b left out
    await environments.invoke(_spec(), Invocation("req-2", b"xy"))
    assert agent.invokes == ["req-1", "req-2"] and agent.code_puts == 1
    assert environments.total_in_flight() == 0
    assert agent.specs_received == 1  # the spec crosses once; then its id does


async def test_an_agent_that_lost_the_spec_gets_it_again(
        remote: tuple[RemoteEnvironments, StandInAgent]) -> None:
    """An agent restarted since the server sent it a spec answers need_spec: the server
    sends the spec with the repeated invoke; a changed spec (another revision) is sent too."""
    environments, agent = remote
    agent.has_code = True
    await environments.invoke(_spec(), Invocation("req-1", b"\x00\n\xff"))
    agent.specs.clear()  # the restart
    result = await environments.invoke(_spec(), Invocation("req-2", b"\n\n"))
    assert result.payload == b"\n\n" and agent.invokes == ["req-1", "req-2"]
    assert agent.specs_received == 2
    import dataclasses
    await environments.invoke(dataclasses.replace(_spec(), revision_id="r2"),
                              Invocation("req-3", b""))
    assert agent.specs_received == 3 and len(agent.specs) == 2


async def test_an_agents_error_comes_back_and_vpc_functions_are_forwarded(
        remote: tuple[RemoteEnvironments, StandInAgent]) -> None:
    environments, agent = remote
    agent.has_code = True
    agent.fail_with = AwsError("ResourceConflictException", "busy", 409, "User",
                               extra={"Type": "User"})
    with pytest.raises(AwsError) as e:
        await environments.invoke(_spec(), Invocation("req-3", b"{}"))
    assert (e.value.code, e.value.message, e.value.status) == (
        "ResourceConflictException", "busy", 409)
    assert agent.invokes == []
    agent.fail_with = None
    await environments.invoke(_spec(VpcAttachment("vpc-1", ("subnet-1",), ("sg-1",))),
                              Invocation("req-4", b"{}"))
    assert agent.invokes == ["req-4"]
    sent = [doc for doc in agent.specs.values() if "vpc" in doc]
    assert [doc["vpc"] for doc in sent] == [{"vpc_id": "vpc-1", "subnet_ids": ["subnet-1"],
                                              "security_group_ids": ["sg-1"], "ipv6": False}]


async def test_the_sweep_deletes_an_expired_host(
        remote: tuple[RemoteEnvironments, StandInAgent]) -> None:
    environments, _agent = remote
    environments.hosts.register("lpc", "host-c", "unix:/nowhere", "c", time.time() - 60)
    environments._sweep_once()
    assert [h.name for h in environments.hosts.all()] == ["host-a", "host-b"]


async def test_the_specs_sent_to_a_host_are_forgotten_when_it_goes(
        remote: tuple[RemoteEnvironments, StandInAgent]) -> None:
    environments, agent = remote
    agent.has_code = True
    await environments.invoke(_spec(), Invocation("req-1", b"{}"))
    assert environments._specs_sent["lpa"] == {wire.spec_id(wire.spec_to_json(_spec()))}
    environments.hosts.remove("lpa")
    environments._sweep_once()
    assert "lpa" not in environments._specs_sent
