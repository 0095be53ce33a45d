"""A pre-started sandbox's control socket (sandbox/zygote_control.py, prestart.py): the server
may close its end while the sandbox's READY is still unread in its queue (its loop had not come
round to it when a cold start took the sandbox). The kernel then reports ECONNRESET once, before
the assignment (or `go`) it queued: the sandbox must still get it, not fail its setup (exit 125,
seen under load for a pre-started nodejs20.x)."""
from __future__ import annotations

import socket

from lambdaplane.sandbox import zygote_main
from lambdaplane.sandbox.prestart import READY_MESSAGE


def _pair() -> tuple[socket.socket, socket.socket]:
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)


def test_assignment_after_the_server_closed_with_ready_unread() -> None:
    server, sandbox = _pair()
    with sandbox:
        sandbox.send(READY_MESSAGE)  # not read by the server
        server.send(b'{"code": "x"}')
        server.close()
        data, _anc, _flags, _addr = zygote_main.control.recv_past_reset(
            lambda: sandbox.recvmsg(1024, socket.CMSG_SPACE(16)))
    assert data == b'{"code": "x"}'


def test_go_after_the_server_closed_with_ready_unread() -> None:
    server, sandbox = _pair()
    with sandbox:
        sandbox.send(READY_MESSAGE)
        server.send(b"go")
        server.close()
        zygote_main.control.await_network(sandbox)  # returns: the `go` came (else it would exit)


def test_server_gone_without_a_message_is_still_eof() -> None:
    server, sandbox = _pair()
    with sandbox:
        sandbox.send(READY_MESSAGE)
        server.close()
        assert zygote_main.control.recv_past_reset(lambda: sandbox.recv(16)) == b""
