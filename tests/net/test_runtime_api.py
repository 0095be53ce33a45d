"""The Runtime API contract (aws-behaviour.md §4), driven by HTTP clients whose sockets live in
real sandbox namespaces: long-poll `next` with its headers, 202s, InvalidRequestID 400s, 413,
init errors, and that an environment only ever sees its own invocations."""
from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import pytest_asyncio

from lambdaplane.sandbox.runtime_api import MAX_RESPONSE_BYTES, RuntimeApi, RuntimeChannel
from lambdaplane.net.worker import GATEWAY
from lambdaplane.sandbox.pool import Sandbox, SandboxPool
from lambdaplane.sandbox.types import Invocation

from .worker_fixtures import Worker, session_in, socket_in, worker  # noqa: F401

pytestmark = pytest.mark.root

PORT = 9001
BASE = f"http://{GATEWAY}:{PORT}/2018-06-01/runtime"
ARN = "arn:aws:lambda:us-east-1:000000000000:function:f"


@dataclass
class Api:
    api: RuntimeApi
    a: Sandbox
    b: Sandbox


@pytest_asyncio.fixture
async def api(worker: Worker) -> AsyncIterator[Api]:
    pool = SandboxPool(worker.names, worker.net, size=0)
    runtime_api = RuntimeApi(worker.net, worker.names.worker_netns, PORT)
    await pool.start()
    try:
        await runtime_api.start()
        yield Api(runtime_api, await pool.take(), await pool.take())
    finally:
        await runtime_api.stop()
        await pool.stop()


def _submit(channel: RuntimeChannel, request_id: str, payload: bytes = b'{"k": 1}',
            **kwargs: str):
    deadline = int((time.time() + 3) * 1000)
    return channel.submit(Invocation(request_id, payload, **kwargs), ARN, deadline)


async def test_next_long_polls_and_response_is_accepted(api: Api) -> None:
    channel = api.api.open_channel(api.a.address)
    async with session_in(api.a.netns) as http:
        poll = asyncio.create_task(http.get(f"{BASE}/invocation/next"))
        await asyncio.sleep(0.2)
        assert not poll.done(), "next must wait until there is an invocation"
        context = base64.b64encode(b'{"custom": {"a": 1}}').decode()
        pending = _submit(channel, "req-1", trace_id="Root=1-abc", client_context=context,
                          cognito_identity='{"cognitoIdentityId": "x"}')
        async with await poll as resp:
            assert resp.status == 200
            assert await resp.read() == b'{"k": 1}'
            assert resp.headers["Content-Type"] == "application/json"
            assert resp.headers["Lambda-Runtime-Aws-Request-Id"] == "req-1"
            assert resp.headers["Lambda-Runtime-Invoked-Function-Arn"] == ARN
            assert resp.headers["Lambda-Runtime-Trace-Id"] == "Root=1-abc"
            assert resp.headers["Lambda-Runtime-Client-Context"] == '{"custom": {"a": 1}}'
            assert resp.headers["Lambda-Runtime-Cognito-Identity"] == '{"cognitoIdentityId": "x"}'
            deadline = int(resp.headers["Lambda-Runtime-Deadline-Ms"])
            assert 0 < deadline - time.time() * 1000 <= 3000
        async with http.post(f"{BASE}/invocation/req-1/response", data=b'"done"') as resp:
            assert resp.status == 202
        outcome = await asyncio.wait_for(pending.outcome, 1)
        assert (outcome.kind, outcome.body) == ("response", b'"done"')
        # the same id again is stale
        async with http.post(f"{BASE}/invocation/req-1/response", data=b"{}") as resp:
            assert resp.status == 400
            assert await resp.json() == {"errorMessage": "Invalid request ID",
                                         "errorType": "InvalidRequestID"}


async def test_wrong_id_and_other_environments_id_are_invalid(api: Api) -> None:
    chan_a = api.api.open_channel(api.a.address)
    api.api.open_channel(api.b.address)
    _submit(chan_a, "req-a")
    async with session_in(api.a.netns) as http_a, session_in(api.b.netns) as http_b:
        async with http_a.get(f"{BASE}/invocation/next") as resp:
            assert resp.headers["Lambda-Runtime-Aws-Request-Id"] == "req-a"
        for http, request_id in ((http_a, "nope"), (http_b, "req-a")):
            for what in ("response", "error"):
                async with http.post(f"{BASE}/invocation/{request_id}/{what}", data=b"{}") as r:
                    assert r.status == 400
                    assert (await r.json())["errorType"] == "InvalidRequestID"
        # B's long poll sees nothing of A's
        poll_b = asyncio.create_task(http_b.get(f"{BASE}/invocation/next"))
        await asyncio.sleep(0.2)
        assert not poll_b.done()
        poll_b.cancel()
        async with http_a.post(f"{BASE}/invocation/req-a/response", data=b"1") as r:
            assert r.status == 202


async def test_unknown_sandbox_is_refused(api: Api) -> None:
    async with session_in(api.a.netns) as http:
        async with http.get(f"{BASE}/invocation/next") as resp:
            assert resp.status == 403


async def test_function_error_is_accepted_with_its_type(api: Api) -> None:
    channel = api.api.open_channel(api.a.address)
    pending = _submit(channel, "req-e")
    async with session_in(api.a.netns) as http:
        async with http.get(f"{BASE}/invocation/next") as resp:
            assert resp.status == 200
        body = {"errorMessage": "boom", "errorType": "ValueError", "stackTrace": []}
        async with http.post(f"{BASE}/invocation/req-e/error", json=body,
                             headers={"Lambda-Runtime-Function-Error-Type": "Unhandled"}) as r:
            assert r.status == 202
    outcome = await asyncio.wait_for(pending.outcome, 1)
    assert outcome.kind == "error" and outcome.error_type == "Unhandled"
    assert json.loads(outcome.body) == body


async def test_init_error_answers_the_waiting_invocation(api: Api) -> None:
    channel = api.api.open_channel(api.a.address)
    pending = _submit(channel, "req-i")
    body = {"errorMessage": "No module named 'x'", "errorType": "Runtime.ImportModuleError"}
    async with session_in(api.a.netns) as http:
        async with http.post(f"{BASE}/init/error", json=body,
                             headers={"Lambda-Runtime-Function-Error-Type":
                                      "Runtime.ImportModuleError"}) as r:
            assert r.status == 202
    outcome = await asyncio.wait_for(pending.outcome, 1)
    assert outcome.kind == "init_error" and outcome.error_type == "Runtime.ImportModuleError"
    assert json.loads(outcome.body) == body


async def test_response_over_6mb_is_413(api: Api) -> None:
    channel = api.api.open_channel(api.a.address)
    pending = _submit(channel, "req-big")
    async with session_in(api.a.netns) as http:
        async with http.get(f"{BASE}/invocation/next") as resp:
            assert resp.status == 200
        big = b"x" * (MAX_RESPONSE_BYTES + 1)
        async with http.post(f"{BASE}/invocation/req-big/response", data=big) as r:
            assert r.status == 413
            assert (await r.json())["errorType"] == "RequestEntityTooLarge"
    outcome = await asyncio.wait_for(pending.outcome, 1)
    assert outcome.error_type == "Function.ResponseSizeTooLarge"
    # exactly 6 MB is fine
    pending = _submit(channel, "req-ok")
    async with session_in(api.a.netns) as http:
        async with http.get(f"{BASE}/invocation/next") as resp:
            assert resp.status == 200
        async with http.post(f"{BASE}/invocation/req-ok/response",
                             data=b"y" * MAX_RESPONSE_BYTES) as r:
            assert r.status == 202
    assert len((await asyncio.wait_for(pending.outcome, 1)).body) == MAX_RESPONSE_BYTES


async def _raw_request(netns: str, head: str, chunks: list[bytes]) -> tuple[int, bytes]:
    """Send a request whose body goes out in `chunks` (each written separately, as a runtime
    streaming its answer would) and return (status, body) of the answer."""
    sock = socket_in(netns)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, (GATEWAY, PORT))
    reader, writer = await asyncio.open_connection(sock=sock)
    try:
        writer.write(head.encode())
        for chunk in chunks:
            writer.write(chunk)
            await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), 5)
        status = int(status_line.split()[1])
        length = 0
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
        return status, await reader.readexactly(length)
    finally:
        writer.close()


def _chunked(body: bytes, size: int) -> list[bytes]:
    parts = [b"%x\r\n%s\r\n" % (len(body[i:i + size]), body[i:i + size])
             for i in range(0, len(body), size)]
    return parts + [b"0\r\n\r\n"]


def _chunked_head(path: str, extra: str = "") -> str:
    return (f"POST {PREFIX_PATH}{path} HTTP/1.1\r\nHost: {GATEWAY}:{PORT}\r\n"
            f"Transfer-Encoding: chunked\r\n{extra}\r\n")


PREFIX_PATH = "/2018-06-01/runtime"


async def test_chunked_bodies_are_accepted_on_response_error_and_init_error(api: Api) -> None:
    """Node's http.request sends chunked bodies by default; AWS's Runtime API takes them."""
    channel = api.api.open_channel(api.a.address)
    body = json.dumps({"result": "x" * 5000}).encode()
    for request_id, what in (("req-c1", "response"), ("req-c2", "error")):
        pending = _submit(channel, request_id)
        async with session_in(api.a.netns) as http:
            async with http.get(f"{BASE}/invocation/next") as resp:
                assert resp.headers["Lambda-Runtime-Aws-Request-Id"] == request_id
        # a chunk extension, a chunk split across writes and a trailer, as RFC 9112 allows
        raw = _chunked(body, 1000)
        raw[1] = raw[1].replace(b"\r\n", b";name=value\r\n", 1)
        raw[-1] = b"0\r\nX-Trailer: 1\r\n\r\n"
        split = [raw[0][:3], raw[0][3:]] + raw[1:]
        status, answer = await _raw_request(api.a.netns, _chunked_head(
            f"/invocation/{request_id}/{what}",
            "Lambda-Runtime-Function-Error-Type: Custom\r\n"), split)
        assert (status, json.loads(answer)) == (202, {"status": "OK"})
        outcome = await asyncio.wait_for(pending.outcome, 1)
        assert outcome.body == body
        assert outcome.kind == what
        if what == "error":
            assert outcome.error_type == "Custom"
    pending = _submit(channel, "req-c3")
    init_error = json.dumps({"errorMessage": "bad", "errorType": "Runtime.Init"}).encode()
    status, _ = await _raw_request(api.a.netns, _chunked_head("/init/error"),
                                   _chunked(init_error, 7))
    assert status == 202
    outcome = await asyncio.wait_for(pending.outcome, 1)
    assert (outcome.kind, outcome.body, outcome.error_type) == (
        "init_error", init_error, "Runtime.Init")


async def test_chunked_response_over_6mb_is_413_while_reading(api: Api) -> None:
    channel = api.api.open_channel(api.a.address)
    pending = _submit(channel, "req-cbig")
    async with session_in(api.a.netns) as http:
        async with http.get(f"{BASE}/invocation/next") as resp:
            assert resp.status == 200
    status, answer = await _raw_request(
        api.a.netns, _chunked_head("/invocation/req-cbig/response"),
        _chunked(b"z" * (MAX_RESPONSE_BYTES + 1), 256 * 1024))
    assert status == 413
    assert json.loads(answer)["errorType"] == "RequestEntityTooLarge"
    outcome = await asyncio.wait_for(pending.outcome, 1)
    assert outcome.error_type == "Function.ResponseSizeTooLarge"
    # exactly 6 MB, chunked, is fine
    pending = _submit(channel, "req-cok")
    async with session_in(api.a.netns) as http:
        async with http.get(f"{BASE}/invocation/next") as resp:
            assert resp.status == 200
    status, _ = await _raw_request(api.a.netns, _chunked_head("/invocation/req-cok/response"),
                                   _chunked(b"y" * MAX_RESPONSE_BYTES, 300 * 1024))
    assert status == 202
    assert len((await asyncio.wait_for(pending.outcome, 1)).body) == MAX_RESPONSE_BYTES


async def test_malformed_chunked_body_is_400(api: Api) -> None:
    channel = api.api.open_channel(api.a.address)
    _submit(channel, "req-bad")
    async with session_in(api.a.netns) as http:
        async with http.get(f"{BASE}/invocation/next") as resp:
            assert resp.status == 200
    for chunks in ([b"zz\r\nab\r\n0\r\n\r\n"], [b"2\r\nabc\r\n0\r\n\r\n"]):
        status, answer = await _raw_request(
            api.a.netns, _chunked_head("/invocation/req-bad/response"), chunks)
        assert status == 400
        assert json.loads(answer)["errorType"] == "InvalidRequest"
    status, _ = await _raw_request(api.a.netns, _chunked_head(
        "/invocation/req-bad/response", "Content-Length: 5\r\n"), [b"hello"])
    assert status == 400


async def _read_answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    status = int((await asyncio.wait_for(reader.readline(), 5)).split()[1])
    headers: dict[str, str] = {}
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        headers[name.lower()] = value.strip()
    return status, headers, await reader.readexactly(int(headers.get("content-length", 0)))


async def test_a_result_with_next_pipelined_is_answered_with_the_next_invocation(
        api: Api) -> None:
    """A runtime that sends `GET next` right behind its result (as the built-in ones do) gets
    the 202 together with the next invocation, in order; one that waits for its 202 gets it
    at once."""
    channel = api.api.open_channel(api.a.address)
    sock = socket_in(api.a.netns)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (GATEWAY, PORT))
    reader, writer = await asyncio.open_connection(sock=sock)
    host = f"Host: {GATEWAY}:{PORT}\r\n"
    next_request = f"GET {PREFIX_PATH}/invocation/next HTTP/1.1\r\n{host}\r\n".encode()
    try:
        first = _submit(channel, "r1")
        writer.write(next_request)
        status, headers, body = await _read_answer(reader)
        assert (status, headers["lambda-runtime-aws-request-id"], body) == (200, "r1",
                                                                             b'{"k": 1}')
        # not pipelined: the 202 comes at once
        writer.write(f"POST {PREFIX_PATH}/invocation/r1/response HTTP/1.1\r\n{host}"
                     f"Content-Length: 2\r\n\r\nok".encode())
        assert (await _read_answer(reader))[0] == 202
        assert (await first.outcome).body == b"ok"

        second = _submit(channel, "r2")
        writer.write(next_request)
        assert (await _read_answer(reader))[1]["lambda-runtime-aws-request-id"] == "r2"
        # pipelined: the result is taken at once, its 202 waits for the next invocation
        writer.write(f"POST {PREFIX_PATH}/invocation/r2/response HTTP/1.1\r\n{host}"
                     f"Content-Length: 3\r\n\r\nok2".encode() + next_request)
        assert (await asyncio.wait_for(second.outcome, 5)).body == b"ok2"
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(reader.readline(), 0.3)
        _submit(channel, "r3")
        assert (await _read_answer(reader))[0] == 202
        status, headers, body = await _read_answer(reader)
        assert (status, headers["lambda-runtime-aws-request-id"]) == (200, "r3")

        # the environment goes while a result's 202 is held: 202, then 410, in order
        writer.write(f"POST {PREFIX_PATH}/invocation/r3/response HTTP/1.1\r\n{host}"
                     f"Content-Length: 2\r\n\r\nok".encode() + next_request)
        await asyncio.sleep(0.2)
        api.api.close_channel(api.a.address)
        assert (await _read_answer(reader))[0] == 202
        assert (await _read_answer(reader))[0] == 410
    finally:
        writer.close()
