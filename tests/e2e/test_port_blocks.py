"""Hyperplane across hosts (issue 20, deliverable 4) in real namespaces, on the two-host EVPN
fabric of tests/e2e/test_evpn_fabric.py (its `hosts` fixture, shared): one ENI address
(10.60.1.50) SNATs on host A and on host B, each within the port block it leased from the store
(store/port_blocks.py, SQLite here, through service/port_block_leases.py); a server in the VPC
on host A answers connections from both, sees the ENI's address, and each reply reaches the
host that owns its port block — host B's by net/hyperplane/port_blocks.py's reply steering over
the fabric. Without the steering the reply to host B's flow is lost (it goes to the ENI's port
on host A). Lost steering state is repaired; removal leaves nothing.

The ENI itself is stood in for: in each host's VPC namespace the client's port carries the ENI
address's /32 route (as an ENI's port does) and a test-made nft table SNATs the client's flows
to the ENI address within the host's block — what the plane's snat<n> chain does with
ensure_eni's `ports` (tests/e2e cover that chain on one host)."""
from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lambdaplane.net import fabric, frr, nft
from lambdaplane.net.hyperplane import port_blocks as steering
from lambdaplane.net.names import Names, port_ifname
from lambdaplane.service.port_block_leases import EniAddress, PortBlockLeases
from lambdaplane.store.db import Database
from lambdaplane.store.hosts import HostStore
from lambdaplane.store.port_blocks import PortBlockStore
from tests.e2e.test_evpn_fabric import (  # noqa: F401  (hosts: the shared fixture)
    SERVER_IP,
    VPCS,
    Host,
    _echo,
    _in,
    hosts,
)
from tests.e2e.vpc_support import wait_until

pytestmark = [pytest.mark.root,
              pytest.mark.skipif(not frr.installed(), reason="needs Debian's frr")]

ENI_ID, ENI_IP = "eni-0e0e0e0e0e0e0e0e0", "10.60.1.50"
CLIENTS = ("eni-00200000000000000", "eni-10100000000000000")  # host A's, host B's (fixture)
PEER_PORT = 7100
PEER_SERVER = r"""
import socket, sys
srv = socket.create_server(("0.0.0.0", int(sys.argv[1])))
print("listening", flush=True)
while True:
    conn, peer = srv.accept()
    with conn:
        conn.recv(100)
        conn.sendall(f"{peer[0]} {peer[1]}".encode())
"""
CLIENT = r"""
import socket, sys
out = []
for _ in range(int(sys.argv[3])):
    try:
        with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2) as s:
            s.sendall(b"hi")
            out.append(s.recv(200).decode())
    except OSError as e:
        out.append(f"error {e}")
print("\n".join(out))
"""


@pytest.fixture
def peer_server(hosts: list[Host]) -> Iterator[None]:  # noqa: F811
    """A server in the VPC on host A that answers with the peer's address and port."""
    a = hosts[0]
    proc = subprocess.Popen(["ip", "netns", "exec",
                             a.names.resource_netns("eni-00100000000000000"), sys.executable,
                             "-c", PEER_SERVER, str(PEER_PORT)], stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "listening"
        yield
    finally:
        proc.kill()
        proc.wait()


def _stand_in_eni(names: Names, client: str, ports: str) -> None:
    """The ENI on one host: its address routed to the client's port; the client's flows SNATed
    to it within the host's block."""
    netns, port = names.vpc_netns(VPCS[0]), port_ifname(client)
    subprocess.run(["ip", "-n", netns, "route", "replace", f"{ENI_IP}/32", "dev", port],
                   check=True, capture_output=True)
    nft.apply(f"table ip {names.nft_table}-eni {{\n"
              f"  chain postrouting {{ type nat hook postrouting priority srcnat; "
              f"policy accept;\n"
              f'    iifname "{port}" meta l4proto {{ tcp, udp }} '
              f"snat to {ENI_IP}:{ports} fully-random\n"
              f"  }}\n}}\n", netns)


def _connect(host: Host, client: str, count: int) -> list[str]:
    out = _in(host.names.resource_netns(client), sys.executable, "-c", CLIENT, SERVER_IP,
              str(PEER_PORT), str(count), timeout=60)
    return out.stdout.strip().splitlines()


def _ports_seen(lines: list[str]) -> list[int]:
    """The server's view: every answer names the ENI address and a source port."""
    assert lines and all(line.startswith(ENI_IP + " ") for line in lines), lines
    return [int(line.split()[1]) for line in lines]


def test_one_eni_address_on_two_hosts_replies_by_port_block(
        hosts: list[Host], peer_server: None, tmp_path: Path) -> None:  # noqa: F811
    a, b = hosts
    for host in hosts:
        fabric.ensure(host.spec)

    # the store: both agents' lease rows; each agent's side (service/port_block_leases.py)
    # leases its block of the ENI and computes its VPC namespace's steering
    db = Database.open(tmp_path / "store")
    try:
        ids = [h.names.prefix for h in hosts]
        for host_id, host in zip(ids, hosts):
            HostStore(db).register(host_id, host_id, "unix:/none", host.names.instance,
                                   now=time.time())
        leases = [PortBlockLeases(PortBlockStore(db), host_id) for host_id in ids]
        held = [x.ports_for(ENI_ID) for x in leases]
        assert held == ["1024-5119", "5120-9215"]
        specs = [x.steering(VPCS[0], [EniAddress(ENI_ID, ENI_IP)]) for x in leases]
    finally:
        db.close()
    hops = dict(zip(ids, (spec.own_hop for spec in specs)))
    assert specs[0].remote == (steering.RemoteBlock(ENI_IP, 5120, 9215, hops[ids[1]]),)
    assert specs[1].remote == (steering.RemoteBlock(ENI_IP, 1024, 5119, hops[ids[0]]),)
    # the fabric carries B's traffic to A (routed, not translated yet)
    assert wait_until(lambda: _echo(b, CLIENTS[1]).startswith(VPCS[0]), timeout_s=90,
                      interval_s=0.5)
    for host, client, ports in zip(hosts, CLIENTS, held):
        _stand_in_eni(host.names, client, ports)

    # host A's own flows: its conntrack de-NATs the replies, no steering needed
    assert wait_until(lambda: _connect(a, CLIENTS[0], 1)[0].startswith(ENI_IP), timeout_s=30)
    assert all(1024 <= p <= 5119 for p in _ports_seen(_connect(a, CLIENTS[0], 10)))
    # host B's flows reach the server (the fabric routes them), but without steering the
    # replies go to the ENI's port on host A: no answer
    assert all(line.startswith("error") for line in _connect(b, CLIENTS[1], 2))

    for host, spec in zip(hosts, specs):
        changes = steering.ensure_reply_steering(host.names, spec)
        assert any("steered 1 remote port blocks" in c for c in changes), changes
        assert steering.ensure_reply_steering(host.names, spec) == []  # idempotent
    state = steering.reply_steering_state(b.names, VPCS[0])
    assert state["rules"] == [hops[ids[0]]]
    assert state["addresses"] == [steering.hop_address(hops[ids[1]])]

    # now both hosts' flows are answered, each within its own block, by the same server
    assert wait_until(lambda: not _connect(b, CLIENTS[1], 1)[0].startswith("error"),
                      timeout_s=30, interval_s=0.5)
    assert all(5120 <= p <= 9215 for p in _ports_seen(_connect(b, CLIENTS[1], 20)))
    assert all(1024 <= p <= 5119 for p in _ports_seen(_connect(a, CLIENTS[0], 20)))

    # lost kernel state (a rule, the hop address, the map) is repaired by the next ensure
    vpc_b = b.names.vpc_netns(VPCS[0])
    mark, table = steering.host_mark(hops[ids[0]]), steering.hop_table(hops[ids[0]])
    for args in (["rule", "del", "fwmark", hex(mark), "lookup", str(table)],
                 ["link", "del", steering.HOP_LINK]):
        subprocess.run(["ip", "-n", vpc_b, *args], check=True, capture_output=True)
    nft.apply(f"delete table ip {steering.steering_table(b.names)}", vpc_b)
    repaired = steering.ensure_reply_steering(b.names, specs[1])
    for what in (f"created {steering.HOP_LINK}", "added hop address", "added rule of host hop",
                 "steered 1 remote"):
        assert any(c.startswith(what) for c in repaired), repaired
    assert steering.ensure_reply_steering(b.names, specs[1]) == []
    assert all(5120 <= p <= 9215 for p in _ports_seen(_connect(b, CLIENTS[1], 5)))

    # a spec change (host A's block released) is applied by difference; removal leaves nothing
    alone = steering.ReplySteering(VPCS[0], hops[ids[1]], ())
    assert steering.ensure_reply_steering(b.names, alone) != []
    assert steering.reply_steering_state(b.names, VPCS[0])["rules"] == []
    for host in hosts:
        steering.remove_reply_steering(host.names, VPCS[0])
        steering.remove_reply_steering(host.names, VPCS[0])  # idempotent
        state = steering.reply_steering_state(host.names, VPCS[0])
        assert state == {"table": False, "elements": [], "rules": [], "addresses": []}
        tables = subprocess.run(
            ["ip", "-n", host.names.vpc_netns(VPCS[0]), "route", "show", "table", "all"],
            capture_output=True, text=True, check=True).stdout
        assert "169.254.24" not in tables and "169.254.25" not in tables
        links = subprocess.run(["ip", "-n", host.names.vpc_netns(VPCS[0]), "link"],
                               capture_output=True, text=True, check=True).stdout
        assert steering.HOP_LINK not in links
        # the fabric's routes on the EVPN port are untouched
        assert fabric.ensure(host.spec) == []

