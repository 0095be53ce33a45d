"""Fixtures for tests of the worker netns, the sandbox pool and the Runtime API: a worker of a
unique test instance (always removed, and checked to leave nothing), and clients whose sockets
live inside a sandbox namespace."""
from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest_asyncio

from lambdaplane.cleanup import fresh_instance, clean_instance, leftovers
from lambdaplane.net import ns
from lambdaplane.net.executor import NetThread
from lambdaplane.net.names import Names
from lambdaplane.net.worker import WorkerNet


@dataclass
class Worker:
    names: Names
    net: NetThread
    worker: WorkerNet


def unique_names() -> Names:
    return Names(fresh_instance("t"))


@pytest_asyncio.fixture
async def worker() -> AsyncIterator[Worker]:
    names = unique_names()
    while ns.list_named(names.prefix + "-"):
        names = unique_names()
    net = NetThread()
    wn = WorkerNet(names, uplink=False)
    try:
        await net.run(wn.setup)
        yield Worker(names, net, wn)
    finally:
        await net.run(wn.teardown)
        net.close()
        # pyroute2's sync API cannot run on a thread with a running event loop
        left = await asyncio.to_thread(leftovers, names.instance)
        await asyncio.to_thread(clean_instance, names.instance)
        assert not left, f"left behind: {left}"


def socket_in(netns: str, family: int = socket.AF_INET, kind: int = socket.SOCK_STREAM,
              proto: int = 0) -> socket.socket:
    """A socket that belongs to `netns` (a socket stays in the namespace it was made in)."""
    with ns.entered(netns):
        return socket.socket(family, kind, proto)


def session_in(netns: str) -> aiohttp.ClientSession:
    """An HTTP client whose connections originate inside `netns`."""
    def factory(addr_info: tuple) -> socket.socket:
        family, kind, proto = addr_info[0], addr_info[1], addr_info[2]
        return socket_in(netns, family, kind, proto)

    connector = aiohttp.TCPConnector(socket_factory=factory, force_close=False)
    return aiohttp.ClientSession(connector=connector)


def connects(netns: str, address: str, port: int, timeout_s: float = 0.5,
             source: str | None = None) -> bool:
    """Whether a TCP connection from `netns` (optionally from a forged source) succeeds."""
    sock = socket_in(netns)
    try:
        if source is not None:
            sock.setsockopt(socket.SOL_IP, 15, 1)  # IP_FREEBIND: bind an address we don't own
            sock.bind((source, 0))
        sock.settimeout(timeout_s)
        sock.connect((address, port))
        return True
    except OSError:
        return False
    finally:
        sock.close()
