"""The API port's Invoke front (api/invoke_front.py) on a live server, over raw HTTP/1.1
connections: an Invoke is answered by the front (no aiohttp `Server` header); another
operation on the connection is aiohttp's, and once aiohttp has answered, the next Invoke is the
front's again; a request pipelined behind aiohttp's is aiohttp's too, in order; a request whose
end the front cannot tell (chunked) gives the connection to aiohttp for good; pipelined
invokes are answered in order; `Connection: close` is honoured; a request the front does not
read (a folded header) gets aiohttp's answer; and a client gone mid-invoke does not stop the
invocation."""
from __future__ import annotations

import json
import socket
import time

import pytest

from tests.harness import LiveServer, create_python_function

pytestmark = pytest.mark.root

APP = """
import time

def handler(event, context):
    if event.get("sleep"):
        time.sleep(event["sleep"])
    if event.get("gone"):
        print("RAN to the end")
    return {"got": event}
"""
INVOKE = "/2015-03-31/functions/front-echo/invocations"


class Raw:
    """One HTTP/1.1 connection; answers read by Content-Length."""

    def __init__(self, server: LiveServer) -> None:
        self.sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
        self.pending = b""

    def send(self, method: str, path: str, body: bytes = b"", *extra: str) -> None:
        head = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {len(body)}",
                *extra]
        self.sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + body)

    def answer(self) -> tuple[int, dict[str, str], bytes]:
        while b"\r\n\r\n" not in self.pending:
            self.pending += self._recv()
        head, _, rest = self.pending.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
        length = int(headers.get("content-length", "0"))
        while len(rest) < length:
            rest += self._recv()
        self.pending = rest[length:]
        return int(lines[0].split()[1]), headers, rest[:length]

    def _recv(self) -> bytes:
        chunk = self.sock.recv(65536)
        assert chunk, "the server closed the connection"
        return chunk

    def closed_by_server(self) -> bool:
        self.sock.settimeout(10)
        return self.sock.recv(1) == b""


@pytest.fixture(scope="module")
def echo(server: LiveServer) -> LiveServer:
    create_python_function(server.lambda_(), "front-echo", APP)
    return server


def test_invoke_then_another_operation_then_invoke_on_one_connection(echo: LiveServer) -> None:
    conn = Raw(echo)
    conn.send("POST", INVOKE, b'{"n": 1}')
    status, headers, body = conn.answer()
    assert status == 200 and json.loads(body) == {"got": {"n": 1}}
    assert headers["x-amz-executed-version"] == "$LATEST" and headers["x-amzn-requestid"]
    assert "server" not in headers  # the front answered
    conn.send("POST", INVOKE + "?Qualifier=%24LATEST", b"{}")
    assert conn.answer()[2] == b'{"got": {}}'
    conn.send("POST", "/2015-03-31/functions/no-such/invocations", b"{}")
    status, headers, body = conn.answer()
    assert status == 404 and headers["x-amzn-errortype"].startswith("ResourceNotFoundException")
    for _ in range(2):  # to aiohttp and back, twice
        conn.send("GET", "/2015-03-31/functions/front-echo")
        status, headers, body = conn.answer()
        assert status == 200 and json.loads(body)["Configuration"]["FunctionName"] == "front-echo"
        assert "aiohttp" in headers["server"]
        time.sleep(0.05)  # aiohttp waits for its next request again (a moment after it answered)
        conn.send("POST", INVOKE, b'{"n": 2}')
        status, headers, body = conn.answer()
        assert status == 200 and json.loads(body) == {"got": {"n": 2}}
        assert "server" not in headers  # the front's again
    conn.send("POST", INVOKE, b"", "X-Amz-Invocation-Type: DryRun")
    assert conn.answer()[0] == 204


def test_what_is_pipelined_behind_aiohttp_is_aiohttps_in_order(echo: LiveServer) -> None:
    conn = Raw(echo)
    get = b"GET /2015-03-31/functions/front-echo HTTP/1.1\r\nHost: x\r\n\r\n"
    invoke = f"POST {INVOKE} HTTP/1.1\r\nHost: x\r\nContent-Length: 8\r\n\r\n".encode()
    conn.sock.sendall(get + invoke + b'{"i": 1}' + get)
    answers = [conn.answer() for _ in range(3)]
    assert [a[0] for a in answers] == [200, 200, 200]
    assert json.loads(answers[1][2]) == {"got": {"i": 1}}
    assert all("aiohttp" in a[1]["server"] for a in answers)


def test_a_request_the_front_cannot_delimit_gives_aiohttp_the_connection(
        echo: LiveServer) -> None:
    conn = Raw(echo)
    conn.sock.sendall(f"POST {INVOKE} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                      "\r\n8\r\n{\"i\": 2}\r\n0\r\n\r\n".encode())
    status, headers, body = conn.answer()
    assert status == 200 and json.loads(body) == {"got": {"i": 2}}
    time.sleep(0.05)
    conn.send("POST", INVOKE, b"{}")
    status, headers, _ = conn.answer()
    assert status == 200 and "aiohttp" in headers["server"]  # aiohttp's for good


def test_pipelined_invokes_are_answered_in_order(echo: LiveServer) -> None:
    conn = Raw(echo)
    head = f"POST {INVOKE} HTTP/1.1\r\nHost: x\r\nContent-Length: 22\r\n\r\n".encode()
    conn.sock.sendall(b"".join(head + b'{"sleep": 0.%d, "i": %d}' % (3 - i, i) for i in range(3)))
    assert [json.loads(conn.answer()[2])["got"]["i"] for _ in range(3)] == [0, 1, 2]


def test_connection_close_and_what_the_front_leaves_to_aiohttp(echo: LiveServer) -> None:
    conn = Raw(echo)
    conn.send("POST", INVOKE, b"{}", "Connection: close")
    status, headers, _ = conn.answer()
    assert status == 200 and headers["connection"] == "close" and conn.closed_by_server()
    folded = Raw(echo)  # obsolete line folding: the front does not read it, aiohttp refuses it
    folded.sock.sendall(f"POST {INVOKE} HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n 2\r\n"
                        "Content-Length: 2\r\n\r\n{}".encode())
    assert folded.answer()[0] == 400


def test_a_client_gone_mid_invoke_does_not_stop_it(echo: LiveServer) -> None:
    conn = Raw(echo)
    conn.send("POST", INVOKE, b'{"sleep": 1, "gone": true}')
    time.sleep(0.2)
    conn.sock.close()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = echo.admin("logs/us-east-1/front-echo?tail=1000&source=file")
        lines = found["lines"]  # type: ignore[index]
        if any("RAN to the end" in line for line in lines):
            break
        time.sleep(0.2)
    else:
        raise AssertionError("the invocation whose client went away did not run to its end")
    out = echo.lambda_().invoke(FunctionName="front-echo", Payload=b'{"after": 1}')
    assert json.loads(out["Payload"].read()) == {"got": {"after": 1}}
