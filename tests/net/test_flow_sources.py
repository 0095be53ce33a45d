"""The flow-log kernel sources on a real namespace: conntrack entries with per-direction
counters once accounting is on, and NFLOG drops named by the security-group log prefix. The
namespace is the test's own and is removed even on failure."""
from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest

from lambdaplane.net import flow_sources, ns
from lambdaplane.net.flow_sources import NFLOG_GROUP, DropLog

pytestmark = pytest.mark.root


@pytest.fixture
def netns() -> Iterator[str]:
    name = f"lpfltest{os.getpid()}"
    ns.create(name)
    try:
        subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        ns.delete(name)


def test_conntrack_counters_and_nflog_drops(netns: str) -> None:
    flow_sources.enable_accounting(netns)
    rules = ("add table ip t; add chain ip t c { type filter hook output priority 0; }; "
             f'add rule ip t c tcp dport 9 log prefix "lpflow in e0" group {NFLOG_GROUP} drop; '
             "add rule ip t c ct state new accept")  # a ct rule: conntrack runs here
    subprocess.run(["ip", "netns", "exec", netns, "nft", rules], check=True)
    drops = DropLog(netns)
    try:
        with ns.entered(netns):
            listener = socket.socket()
            listener.bind(("127.0.0.1", 0))
            listener.listen()
            client = socket.create_connection(listener.getsockname())
            served, _ = listener.accept()
            client.sendall(b"hello")
            assert served.recv(5) == b"hello"
            blocked = socket.socket()
            blocked.setblocking(False)
            try:
                blocked.connect(("127.0.0.1", 9))
            except (BlockingIOError, PermissionError):
                pass
        port = listener.getsockname()[1]
        flows = [f for f in flow_sources.tracked_flows(netns) if f.orig_dport == port]
        assert len(flows) == 1 and flows[0].protocol == 6
        assert flows[0].orig_packets >= 3 and flows[0].orig_bytes > 5
        assert flows[0].reply_dst == "127.0.0.1" and flows[0].reply_sport == port
        seen: list[flow_sources.DroppedPacket] = []
        for _ in range(50):  # NFLOG flushes within its timeout: poll
            seen += drops.read()
            if seen:
                break
            time.sleep(0.1)
        assert seen and seen[0].direction == "in" and seen[0].port == "e0"
        assert (seen[0].src, seen[0].dst, seen[0].dport, seen[0].protocol) == \
            ("127.0.0.1", "127.0.0.1", 9, 6)
        for s in (client, served, listener, blocked):
            s.close()
    finally:
        drops.close()
