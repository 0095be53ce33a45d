"""service/agent_vpc.py's `host_snapshot`: which interfaces get a port on an agent's host — a
Hyperplane ENI it holds a block of, with its far end in the agent's worker namespace; its own
interfaces as stored; every other interface (the API server's resources, other agents') none."""
from __future__ import annotations

from lambdaplane.model.ec2 import Eni, FarEnd, Snapshot
from lambdaplane.net.names import Names
from lambdaplane.service.agent_vpc import host_snapshot


def _eni(eni_id: str, far: FarEnd | None, kind: str = "interface") -> Eni:
    return Eni(eni_id, "us-east-1", "subnet-1", "vpc-1", "10.60.1.9", "02:00:00:00:00:01",
               kind, kind == "lambda", "", "in-use", ("sg-1",), far)


def test_each_interface_has_a_port_on_its_own_host_only() -> None:
    agent, server = Names("ga"), Names("sv")
    mine = FarEnd(agent.resource_netns("eni-a"), "eth0", True)
    theirs = FarEnd(server.resource_netns("eni-s"), "eth0", True)
    snap = Snapshot(enis=[_eni("eni-h", None, "lambda"), _eni("eni-u", None, "lambda"),
                          _eni("eni-a", mine), _eni("eni-s", theirs), _eni("eni-n", None)])
    seen = {e.id: e.far_end for e in host_snapshot(snap, agent, {"eni-h": 3}).enis}
    assert seen == {"eni-h": FarEnd(agent.worker_netns, agent.transit_veth(3), False),
                    "eni-u": None,  # no block here: not built on this host
                    "eni-a": mine, "eni-s": None, "eni-n": None}
    assert [e.far_end for e in snap.enis][2:4] == [mine, theirs]  # the store's view is kept
