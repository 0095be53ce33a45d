"""Agents in the EVPN fabric (issue 20, deliverable 3, first part): two `lambdaplane agent`s on
PostgreSQL, each in a network namespace standing in for a host (`lp<id>hA`, `lp<id>hB`, joined
here by a veth carrying the underlay), started with `--underlay-address` and no peer listed:
each builds its own fabric namespace and runs its own zebra and bgpd, finds the other's underlay
address in the store and peers with it (the agent already running is told live, its bgpd not
restarted), and the two BGP EVPN sessions come up; a killed bgpd is started again by its agent;
agent B SIGKILLed leaves its daemons running until `clean` of its data dir, which kills them
and leaves nothing of B, and once B's lease ran out A drops the peer (live again); agent A
stopped (SIGINT) removes its FRR daemons, fabric namespace, underlay link and row itself;
the host namespace's ip_forward, switched on for the fabric, is put back by the stop and by
`clean`."""
from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from lambdaplane.bench.fabric_lab import UNDERLAY, join_hosts
from lambdaplane.cleanup import clean_instance, fresh_instance
from lambdaplane.net import frr
from lambdaplane.net.fabric import processes_in
from lambdaplane.net.names import Names
from tests.e2e.test_agents import AgentProcess
from tests.e2e.vpc_support import wait_until
from tests.pg_server import PgServer

pytestmark = [pytest.mark.root,
              pytest.mark.skipif(not frr.installed(), reason="needs Debian's frr")]



@pytest.fixture(scope="module")
def database(pg_server: PgServer) -> Iterator[str]:
    with pg_server.database() as url:
        yield url


def fabric_agent(data_dir: Path, database: str, name: str, netns: str, n: int,
                 *extra: str) -> AgentProcess:
    """An agent in the fabric with no peers listed: it finds them in the hosts' rows."""
    agent = AgentProcess(data_dir, database, name, netns)
    agent.cmd += ["--underlay-address", f"{UNDERLAY[n]}/24", *extra]
    return agent


def peers_of(agent: AgentProcess) -> set[str]:
    try:
        summary = json.loads(daemons_of(agent).vtysh("show bgp l2vpn evpn summary json"))
    except (RuntimeError, ValueError):
        return set()
    return set(summary.get("peers", {}))


def ip_forward(netns: str) -> str:
    return subprocess.run(["ip", "netns", "exec", netns, "cat", "/proc/sys/net/ipv4/ip_forward"],
                          capture_output=True, text=True, check=True).stdout.strip()


def daemons_of(agent: AgentProcess) -> frr.Daemons:
    return frr.Daemons(agent.data_dir / "fabric", Names(agent.instance).fabric_netns)


def established(agent: AgentProcess, peer: str) -> bool:
    try:
        summary = json.loads(daemons_of(agent).vtysh("show bgp l2vpn evpn summary json"))
    except (RuntimeError, ValueError):
        return False
    return bool(summary.get("peers", {}).get(peer, {}).get("state") == "Established")


def test_agents_run_their_own_frr_and_peer(tmp_path: Path, database: str) -> None:
    tid = fresh_instance("n")
    namespaces = [f"lp{tid}hA", f"lp{tid}hB"]
    agents = [fabric_agent(tmp_path / "agent-a", database, "host-a", namespaces[0], 0),
              fabric_agent(tmp_path / "agent-b", database, "host-b", namespaces[1], 1)]
    a, b = agents
    try:
        for netns in namespaces:
            subprocess.run(["ip", "netns", "add", netns], check=True)
        join_hosts(namespaces, f"lp{tid}")
        a.start()  # alone: no peer yet
        a_bgpd = daemons_of(a).pid("bgpd")
        assert peers_of(a) == set()
        b.start()  # finds A's row; A finds B's at its next renewal
        for agent in agents:
            names = Names(agent.instance)
            assert Path(f"/run/netns/{names.fabric_netns}").exists()
            pids = processes_in(names.fabric_netns)
            assert {daemons_of(agent).pid(d) for d in frr.DAEMONS} <= set(pids)
            assert all(daemons_of(agent).pid(d) for d in frr.DAEMONS)
        assert wait_until(lambda: established(a, UNDERLAY[1]) and established(b, UNDERLAY[0]),
                          timeout_s=90, interval_s=0.5), daemons_of(a).vtysh(
            "show bgp l2vpn evpn summary")
        assert daemons_of(a).pid("bgpd") == a_bgpd  # the new peer told live: no restart
        assert [ip_forward(netns) for netns in namespaces] == ["1", "1"]  # switched on
        assert "bgpd peers changed live: +['10.252.0.2']" in a.log()

        # a killed daemon is started again by the agent's repair timer, and peers again
        killed = daemons_of(b).pid("bgpd")
        assert killed is not None
        os.kill(killed, signal.SIGKILL)
        assert wait_until(lambda: daemons_of(b).pid("bgpd") not in (None, killed),
                          timeout_s=60, interval_s=0.5), b.log()[-3000:]
        assert wait_until(lambda: established(a, UNDERLAY[1]) and established(b, UNDERLAY[0]),
                          timeout_s=90, interval_s=0.5)
        assert "fabric: started bgpd in " in b.log()

        # B SIGKILLed and started again on its data dir: it takes its running daemons over
        # (they left the agent's cpu group, which the new agent's start sweeps)
        for pid in processes_in(Names(b.instance).fabric_netns):
            cpu = [line for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines()
                   if line.split(":")[1].split(",")[0] == "cpu"]
            assert [line.split(":")[2] for line in cpu] in ([], ["/"])
        b_daemons = {d: daemons_of(b).pid(d) for d in frr.DAEMONS}
        b.stop(signal.SIGKILL)
        started = b.log().count("agent ready")
        b.start()
        assert wait_until(lambda: b.log().count("agent ready") > started, timeout_s=60)
        assert {d: daemons_of(b).pid(d) for d in frr.DAEMONS} == b_daemons
        assert wait_until(lambda: established(a, UNDERLAY[1]) and established(b, UNDERLAY[0]),
                          timeout_s=90, interval_s=0.5)

        # B SIGKILLed: FRR outlives it (the daemons are not its children) until clean; after
        # B's lease A drops the peer, again without a restart
        b_pids = processes_in(Names(b.instance).fabric_netns)
        b.stop(signal.SIGKILL)
        assert b_pids and all(Path(f"/proc/{p}").exists() for p in b_pids)
        assert wait_until(lambda: peers_of(a) == set(), timeout_s=60, interval_s=0.5)
        assert daemons_of(a).pid("bgpd") == a_bgpd
        out = b.clean()
        assert f"killed process {b_pids[0]}" in out
        assert wait_until(lambda: not [p for p in b_pids if Path(f"/proc/{p}").exists()],
                          timeout_s=10)
        assert b.leftovers() == []
        assert not (b.data_dir / "fabric").exists()
        assert ip_forward(namespaces[1]) == "0"  # put back by clean

        # A stopped: its daemons, fabric namespace and underlay link go with it
        a_pids = processes_in(Names(a.instance).fabric_netns)
        a.stop(signal.SIGINT)
        assert not [p for p in a_pids if Path(f"/proc/{p}").exists()]
        assert not Path(f"/run/netns/{Names(a.instance).fabric_netns}").exists()
        assert a.leftovers() == []
        assert not (a.data_dir / "fabric").exists()
        assert ip_forward(namespaces[0]) == "0"  # put back by the stop
        with psycopg.connect(database) as conn:
            assert conn.execute("SELECT host_id FROM host_underlays").fetchall() == []
    finally:
        for agent in agents:
            agent.stop()
        for agent in agents:
            if agent.data_dir.exists():
                agent.clean()
        left = [x for agent in agents for x in agent.leftovers()]
        for agent in agents:
            clean_instance(agent.instance)
        for netns in namespaces:
            subprocess.run(["ip", "netns", "del", netns], capture_output=True)
    assert left == []
