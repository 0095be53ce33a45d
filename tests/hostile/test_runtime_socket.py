"""A function abusing the socketpair its built-in Python runtime speaks the Runtime API over
(sandbox/runtime_frames.py), end to end on a live server. It can find the socket (it shares the
process), but only ever talks to its own environment's channel: another invocation's request
id is refused as over HTTP, an oversized frame is refused and the stream stays in step, junk
gets a 400 and the connection closed, which ends only its own environment (Runtime.ExitError,
the next invoke gets a new one); a benign function keeps answering throughout."""
from __future__ import annotations

import json
import secrets
from collections.abc import Iterator

import pytest

from tests.harness import LiveServer, create_python_function

pytestmark = pytest.mark.root

SOCKET_ABUSE = r'''
import json, os, socket, struct

FRAME = struct.Struct("!IBH")


def frame(kind, head, body=b""):
    raw = head.encode()
    return FRAME.pack(3 + len(raw) + len(body), ord(kind), len(raw)) + raw + body


def answer(sock):
    buf = b""
    while len(buf) < 8 or len(buf) < 4 + struct.unpack_from("!I", buf)[0]:
        chunk = sock.recv(65536)
        if not chunk:
            return [-1, None]
        buf += chunk
    length, status, head_len = struct.unpack_from("!IHH", buf)
    body = buf[8 + head_len:4 + length]
    return [status, json.loads(body).get("errorType") if body else None]


def runtime_socket():
    for name in os.listdir("/proc/self/fd"):
        try:
            if not os.readlink("/proc/self/fd/" + name).startswith("socket:"):
                continue
            sock = socket.socket(fileno=os.dup(int(name)))
        except OSError:
            continue
        if sock.family == socket.AF_UNIX:
            return sock
        sock.close()
    return None


def handler(event, context):
    sock = runtime_socket()
    if sock is None:
        return {"socket": False}
    out = {"socket": True}
    if event.get("junk"):
        sock.sendall(struct.pack("!IBH", 3, ord("X"), 0))
        out["junk"] = answer(sock)
        out["after_junk"] = answer(sock)
        return out
    other = event["other_id"]
    sock.sendall(frame("R", other, b'"forged"'))
    out["forged_response"] = answer(sock)
    sock.sendall(frame("E", other + "\nForged", b"{}"))
    out["forged_error"] = answer(sock)
    # an oversized result for someone else: refused at once, its bytes swallowed
    huge = 6 * 1024 * 1024 + 10
    raw = other.encode()
    sock.sendall(FRAME.pack(3 + len(raw) + huge, ord("R"), len(raw)) + raw)
    out["oversized"] = answer(sock)
    sock.sendall(b"x" * huge)
    sock.sendall(frame("R", other, b"{}"))
    out["in_step_after"] = answer(sock)
    return out
'''


@pytest.fixture(scope="module")
def benign(server: LiveServer) -> Iterator[str]:
    create_python_function(server.lambda_(), "benign",
                           "def handler(event, context):\n    return {'ok': event.get('n')}\n")
    yield "benign"


def _still_serving(server: LiveServer) -> None:
    n = secrets.randbelow(10**6)
    out = server.lambda_().invoke(FunctionName="benign", Payload=json.dumps({"n": n}))
    assert json.loads(out["Payload"].read()) == {"ok": n}, "the platform stopped serving"


def test_forged_and_oversized_frames_are_refused(server: LiveServer, benign: str) -> None:
    lam = server.lambda_()
    create_python_function(lam, "sock-abuse", SOCKET_ABUSE, Timeout=30)
    out = lam.invoke(FunctionName="sock-abuse",
                     Payload=json.dumps({"other_id": "not-mine-" + secrets.token_hex(8)}))
    assert "FunctionError" not in out
    result = json.loads(out["Payload"].read())
    assert result["socket"] is True  # the built-in runtime's transport is the socketpair
    assert result["forged_response"] == [400, "InvalidRequestID"]
    assert result["forged_error"] == [400, "InvalidRequestID"]
    assert result["oversized"] == [400, "InvalidRequestID"]
    assert result["in_step_after"] == [400, "InvalidRequestID"]
    _still_serving(server)


def test_junk_ends_only_its_own_environment(server: LiveServer, benign: str) -> None:
    lam = server.lambda_()
    create_python_function(lam, "sock-junk", SOCKET_ABUSE)
    out = lam.invoke(FunctionName="sock-junk", Payload=json.dumps({"junk": True}))
    assert out.get("FunctionError") == "Unhandled"
    error = json.loads(out["Payload"].read())
    assert error["errorType"] == "Runtime.ExitError", error
    _still_serving(server)
    # the function itself gets a new environment
    again = lam.invoke(FunctionName="sock-junk", Payload=json.dumps({"other_id": "x-1"}))
    assert "FunctionError" not in again
    assert json.loads(again["Payload"].read())["forged_response"] == [400, "InvalidRequestID"]
