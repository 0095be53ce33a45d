"""Sockets opened inside a network namespace for the server's own services there: the VPC
resolver's UDP and TCP sockets on the VPC namespace's resolver address (net/vpc.py), a VPC
endpoint's listeners in its interface's namespace, and the upstream sockets of the internet
side (`--internet-netns`). A socket belongs to the namespace it was made in for its whole
life, so the server serves it from its event loop like any other. Runs on the net thread
(setns is per thread); the caller owns and closes what it gets."""
from __future__ import annotations

import os
import socket

from . import ns

IP_FREEBIND = 15  # <linux/in.h>; Python's socket module does not name it
IPV6_FREEBIND = 78  # <linux/in6.h>


def netns_identity(netns: str) -> int | None:
    """The inode of a named namespace: a namespace made anew under the same name differs,
    and its sockets must be opened again. None when there is no such namespace."""
    try:
        return os.stat(ns.netns_path(netns)).st_ino
    except FileNotFoundError:
        return None


def open_listeners(netns: str, address: str, port: int, udp: bool = True,
                   tcp: bool = True) -> list[socket.socket]:
    """Non-blocking sockets bound to (address, port) in `netns`: UDP first, then a listening
    TCP socket (as asked). IP_FREEBIND: the address may still be on its way. An IPv6
    `address` gets IPv6-only sockets."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    out: list[socket.socket] = []
    with ns.entered(netns):
        try:
            kinds = ([socket.SOCK_DGRAM] if udp else []) + ([socket.SOCK_STREAM] if tcp else [])
            for kind in kinds:
                s = socket.socket(family, kind | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
                out.append(s)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                    s.setsockopt(socket.IPPROTO_IPV6, IPV6_FREEBIND, 1)
                else:
                    s.setsockopt(socket.SOL_IP, IP_FREEBIND, 1)
                s.bind((address, port))
                if kind == socket.SOCK_STREAM:
                    s.listen(128)
        except BaseException:
            for s in out:
                s.close()
            raise
    return out


def open_socket(netns: str, kind: int = socket.SOCK_DGRAM) -> socket.socket:
    """An unbound non-blocking socket of `netns` (an upstream query goes out from there)."""
    with ns.entered(netns):
        return socket.socket(socket.AF_INET, kind | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
