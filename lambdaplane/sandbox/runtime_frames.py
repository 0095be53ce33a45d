"""The lean transport between the server and its built-in Python runtimes: the Runtime API's
four calls as length-prefixed frames on a socketpair made for one execution environment, its
sandbox's end handed over at fork (or at a pre-forked sandbox's assignment). No TCP over the
sandbox's veth, no HTTP to write and parse on either side; provided.*, Node.js and any custom
runtime keep the HTTP Runtime API (runtime_api.py), which stays open to this environment too.

Every frame is translated into the same `RuntimeApi.dispatch` call as its HTTP request, so the
answers (202, 400 InvalidRequestID, 413, 410 at shutdown...) and what they do to the invocation
are the HTTP API's. The channel is the environment's by construction (only its sandbox holds the
other end): a function can post only for its own invocation in progress, as over HTTP.

Runtime -> server: u32 length of the rest | kind (1 byte) | u16 head length | head | body
  kind N: next (no head, no body); R: response (head: request id); E: error (head: request id,
  LF, error type); I: init error (head: error type). Body: the JSON posted.
Server -> runtime: u32 length of the rest | u16 status | u16 head length | head | body
  head: the header lines the HTTP answer carries ("Name: value" CRLF each), body: its body.
A malformed frame gets a 400 frame and the connection is closed (the runtime then exits: its
environment ends with Runtime.ExitError, as for any runtime that lost its API)."""
from __future__ import annotations

import asyncio
import socket
import struct
from urllib.parse import quote

from .runtime_api import MAX_RESPONSE_BYTES, RuntimeApi
from .runtime_protocol import Answer, RuntimeConnection, error_answer

FRAME_HEAD = struct.Struct("!IBH")  # length of the rest, kind, head length
ANSWER_HEAD = struct.Struct("!IHH")  # length of the rest, status, head length
MAX_FRAME_HEAD = 16 * 1024
FRAME_LIMIT = MAX_RESPONSE_BYTES + MAX_FRAME_HEAD + FRAME_HEAD.size
_INVOCATION = "/2018-06-01/runtime/invocation/"
_INIT_ERROR = "/2018-06-01/runtime/init/error"
_ERROR_TYPE = "lambda-runtime-function-error-type"


def encode_answer(status: int, body: bytes, extra: str) -> bytes:
    head = extra.encode("utf-8", "replace")
    return ANSWER_HEAD.pack(4 + len(head) + len(body), status, len(head)) + head + body


async def open_socket(api: RuntimeApi, address: str) -> socket.socket:
    """A socketpair for the environment at `address` (its channel must be open): the server's
    end is served on the running loop; the other end is returned, for the sandbox (the caller
    closes its copy once the sandbox has it)."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        ours.setblocking(False)
        await asyncio.get_running_loop().create_unix_connection(
            lambda: FrameConnection(api, address), sock=ours)
    except BaseException:
        ours.close()
        theirs.close()
        raise
    return theirs


class FrameConnection(RuntimeConnection):
    """The server's end of one environment's socketpair: frames answered strictly in order;
    a `next` that has to wait holds the frames behind it (runtime_protocol.py)."""

    hold_limit = FRAME_LIMIT

    def _register(self) -> None:
        self.api._frame_connections.setdefault(self.remote, set()).add(self)

    def _unregister(self) -> None:
        conns = self.api._frame_connections.get(self.remote)
        if conns is not None:
            conns.discard(self)
            if not conns:
                del self.api._frame_connections[self.remote]

    def _serve(self) -> None:
        while self.transport is not None and self.waiting is None and \
                len(self.buf) >= FRAME_HEAD.size:
            length, kind, head_len = FRAME_HEAD.unpack_from(self.buf)
            body_len = length - 3 - head_len
            if head_len > MAX_FRAME_HEAD or body_len < 0 or kind not in _KINDS:
                self._refuse(error_answer(400, "InvalidRequest", "Bad Request"))
                return
            start = FRAME_HEAD.size + head_len
            if len(self.buf) < start:
                return
            try:
                head = bytes(self.buf[FRAME_HEAD.size:start]).decode()
            except UnicodeDecodeError:
                self._refuse(error_answer(400, "InvalidRequest", "Bad Request"))
                return
            method, path, headers = _request(kind, head)
            if body_len > MAX_RESPONSE_BYTES:
                # answered unread, as over HTTP; the rest is swallowed, the stream goes on
                answer = self.api.dispatch(self, method, path, headers, None) \
                    if method == "POST" else None
                self._write(*(answer or error_answer(413, "RequestEntityTooLarge",
                                                     "Request Entity Too Large")))
                swallowed = min(len(self.buf) - start, body_len)
                del self.buf[:start + swallowed]
                self.discard = body_len - swallowed
                continue
            if len(self.buf) < start + body_len:
                return  # the rest of the body is on its way
            body = bytes(self.buf[start:start + body_len])
            del self.buf[:start + body_len]
            self._answer(method, path, headers, body)

    def _answer(self, method: str, path: str, headers: dict[str, str], body: bytes) -> None:
        answer = self.api.dispatch(self, method, path, headers, body)
        if answer is None:
            self._long_poll()
            return
        # a result with its runtime's `next` right behind it: the 202 goes with that answer
        if method == "POST" and answer[0] == 202 and len(self.buf) >= FRAME_HEAD.size and \
                self.buf[4:5] == b"N":
            self.held += encode_answer(*answer)
            return
        self._write(*answer)

    def _refuse(self, answer: Answer) -> None:
        self.buf.clear()
        self._write(*answer, close=True)

    def _write(self, status: int, body: bytes, extra: str, close: bool = False) -> None:
        if self.transport is None:
            return
        data = encode_answer(status, body, extra)
        if self.held:  # answers go out in order: a held 202 first
            data, self.held = self.held + data, b""
        self.transport.write(data)
        if close:
            self.transport.close()


_KINDS = frozenset(b"NREI")


def _request(kind: int, head: str) -> tuple[str, str, dict[str, str]]:
    """The HTTP request a frame stands for: (method, path, lower-cased headers)."""
    if kind == ord("N"):
        return "GET", _INVOCATION + "next", {}
    if kind == ord("I"):
        return "POST", _INIT_ERROR, {_ERROR_TYPE: head} if head else {}
    request_id, _, error_type = head.partition("\n")
    path = f"{_INVOCATION}{quote(request_id, safe='')}/"
    if kind == ord("R"):
        return "POST", path + "response", {}
    return "POST", path + "error", {_ERROR_TYPE: error_type} if error_type else {}
