"""The socketpair Runtime API of the built-in Python runtimes (sandbox/runtime_frames.py): the
server's end driven by raw frames and by the bootstrap's own FrameClient, on a real socketpair
and the real RuntimeApi/RuntimeChannel (no listener, no sandbox). Answers as the HTTP API
gives them: the invocation's headers, 202, InvalidRequestID for someone else's id, 413 for an
oversized result (and the stream goes on), 400 and EOF for junk, EOF when the environment goes."""
from __future__ import annotations

import asyncio
import importlib.util
import json
import socket
import struct
import threading
from pathlib import Path
from typing import Any

from lambdaplane.sandbox import runtime_frames
from lambdaplane.sandbox.runtime_api import MAX_RESPONSE_BYTES, RuntimeApi
from lambdaplane.sandbox.types import Invocation

BOOTSTRAP = Path(__file__).parents[2] / "lambdaplane/sandbox/runtimes/python_bootstrap.py"
ADDRESS = "100.64.0.9"
FRAME = struct.Struct("!IBH")


def _frame(kind: bytes, head: str = "", body: bytes = b"") -> bytes:
    raw = head.encode()
    return FRAME.pack(3 + len(raw) + len(body), kind[0], len(raw)) + raw + body


async def _answer(loop: asyncio.AbstractEventLoop, sock: socket.socket
                  ) -> tuple[int, dict[str, str], bytes]:
    """One answer frame from `sock`: (status, headers, body); (-1, {}, b"") on EOF."""
    buf = b""
    while len(buf) < 8 or len(buf) < 4 + struct.unpack_from("!I", buf)[0]:
        chunk = await asyncio.wait_for(loop.sock_recv(sock, 65536), 10)
        if not chunk:
            return -1, {}, b""
        buf += chunk
    length, status, head_len = struct.unpack_from("!IHH", buf)
    assert len(buf) == 4 + length, "one answer at a time in these tests"
    head = buf[8:8 + head_len].decode()
    headers = {}
    for line in head.split("\r\n"):
        name, _, value = line.partition(":")
        if name:
            headers[name.lower()] = value.strip()
    return status, headers, buf[8 + head_len:]


def _invocation(request_id: str, payload: bytes = b'{"k": 1}') -> Invocation:
    return Invocation(request_id=request_id, payload=payload, trace_id="Root=1-abc",
                      client_context=None, cognito_identity=None,
                      function_arn="arn:aws:lambda:us-east-1:000000000000:function:f")


async def _setup() -> tuple[RuntimeApi, Any, socket.socket]:
    api = RuntimeApi(None, "", 0)  # type: ignore[arg-type]  # never started: no listener
    channel = api.open_channel(ADDRESS)
    theirs = await runtime_frames.open_socket(api, ADDRESS)
    theirs.setblocking(False)
    return api, channel, theirs


def test_next_response_and_refusals_as_over_http() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        api, channel, sock = await _setup()
        await loop.sock_sendall(sock, _frame(b"N"))
        await asyncio.sleep(0.05)  # the long poll waits for an invocation
        pending = channel.submit(_invocation("req-1"), "arn:fn", 1234)
        status, headers, body = await _answer(loop, sock)
        assert status == 200 and body == b'{"k": 1}'
        assert headers["lambda-runtime-aws-request-id"] == "req-1"
        assert headers["lambda-runtime-deadline-ms"] == "1234"
        assert headers["lambda-runtime-invoked-function-arn"] == "arn:fn"
        assert headers["lambda-runtime-trace-id"] == "Root=1-abc"
        # someone else's request id: refused, the invocation untouched
        await loop.sock_sendall(sock, _frame(b"R", "not-mine", b'"forged"'))
        status, _, body = await _answer(loop, sock)
        assert status == 400 and json.loads(body)["errorType"] == "InvalidRequestID"
        assert not pending.outcome.done()
        # an error for its own invocation, with its error type
        await loop.sock_sendall(sock, _frame(b"E", "req-1\nMyError",
                                             b'{"errorMessage": "m", "errorType": "MyError"}'))
        status, _, _ = await _answer(loop, sock)
        assert status == 202
        outcome = pending.outcome.result()
        assert outcome.kind == "error" and outcome.error_type == "MyError"
        # finished already: a second result is refused
        await loop.sock_sendall(sock, _frame(b"R", "req-1", b"{}"))
        status, _, _ = await _answer(loop, sock)
        assert status == 400
        await api.stop()
        sock.close()

    asyncio.run(scenario())


def test_oversized_result_is_413_and_the_stream_goes_on() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        api, channel, sock = await _setup()
        pending = channel.submit(_invocation("req-big"), "arn:fn", 1)
        await loop.sock_sendall(sock, _frame(b"N"))
        assert (await _answer(loop, sock))[0] == 200
        big = b"x" * (MAX_RESPONSE_BYTES + 1)
        await loop.sock_sendall(sock, _frame(b"R", "req-big", big))
        status, _, body = await _answer(loop, sock)
        assert status == 413 and json.loads(body)["errorType"] == "RequestEntityTooLarge"
        outcome = pending.outcome.result()
        assert outcome.kind == "too_large"
        assert outcome.error_type == "Function.ResponseSizeTooLarge"
        second = channel.submit(_invocation("req-2"), "arn:fn", 1)
        await loop.sock_sendall(sock, _frame(b"N"))
        status, headers, _ = await _answer(loop, sock)
        assert status == 200 and headers["lambda-runtime-aws-request-id"] == "req-2"
        await loop.sock_sendall(sock, _frame(b"R", "req-2", b'"ok"'))
        assert (await _answer(loop, sock))[0] == 202
        assert second.outcome.result().body == b'"ok"'
        await api.stop()
        sock.close()

    asyncio.run(scenario())


def test_junk_is_refused_and_the_connection_closed() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        api, _, sock = await _setup()
        await loop.sock_sendall(sock, FRAME.pack(3, ord("X"), 0))
        status, _, body = await _answer(loop, sock)
        assert status == 400 and json.loads(body)["errorType"] == "InvalidRequest"
        assert (await _answer(loop, sock))[0] == -1  # EOF
        await api.stop()
        sock.close()

    asyncio.run(scenario())


def test_environment_going_away_ends_the_stream() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        api, _, sock = await _setup()
        await loop.sock_sendall(sock, _frame(b"N"))
        await asyncio.sleep(0.05)
        api.close_channel(ADDRESS)
        assert (await _answer(loop, sock))[0] == -1
        assert api._frame_connections == {}
        await api.stop()
        sock.close()

    asyncio.run(scenario())


def test_the_bootstrap_frame_client_runs_invocations() -> None:
    """The bootstrap's FrameClient and handle_one over the socketpair: results, function errors
    (with their type), pipelined `next`s."""
    spec = importlib.util.spec_from_file_location("lp_bootstrap_frames_test", BOOTSTRAP)
    assert spec is not None and spec.loader is not None
    bootstrap = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bootstrap)

    def handler(event: Any, context: Any) -> Any:
        if event.get("fail"):
            raise KeyError("nope")
        return {"got": event, "id": context.aws_request_id}

    async def scenario() -> None:
        api, channel, sock = await _setup()
        sock.setblocking(True)
        client = bootstrap.FrameClient(sock.detach())
        log_filter = bootstrap.RequestIdFilter()
        ended: list[BaseException] = []

        def run() -> None:
            try:
                while True:
                    bootstrap.handle_one(client, handler, log_filter)
            except BaseException as e:  # noqa: BLE001 - the environment going: EOF
                ended.append(e)

        runtime = threading.Thread(target=run, daemon=True)
        runtime.start()
        results = []
        for i, payload in enumerate([b'{"n": 1}', b'{"fail": true}', b'{"n": 3}']):
            pending = channel.submit(_invocation(f"r{i}", payload), "arn:fn", 10**13)
            results.append(await asyncio.wait_for(pending.outcome, 10))
        assert json.loads(results[0].body) == {"got": {"n": 1}, "id": "r0"}
        assert results[1].kind == "error" and results[1].error_type == "KeyError"
        assert json.loads(results[1].body)["requestId"] == "r1"
        assert json.loads(results[2].body)["got"] == {"n": 3}
        # the last 202 is held for the answer of the `next` pipelined behind it (as over
        # HTTP); the environment going ends the runtime's loop with EOF
        await asyncio.sleep(0.05)
        await api.stop()
        await asyncio.to_thread(runtime.join, 10)
        assert not runtime.is_alive() and isinstance(ended[0], ConnectionError)

    asyncio.run(scenario())
