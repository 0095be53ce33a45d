"""service/agent_vpc.py's `host_snapshot`: which interfaces get a port on an agent's host — a
Hyperplane ENI it holds a block of, with its far end in the agent's worker namespace; its own
interfaces as stored; every other interface (the API server's resources, other agents') none.
And the agent's Hyperplane over the store: blocks leased and given back, the 65,000-flow rule
counted across hosts."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from lambdaplane.config import Settings
from lambdaplane.errors import AwsError
from lambdaplane.model.ec2 import Eni, FarEnd, Snapshot
from lambdaplane.net.executor import NetThread
from lambdaplane.net.names import Names
from lambdaplane.sandbox.types import FunctionSpec, VpcAttachment
from lambdaplane.service.agent_hyperplane import AgentHyperplane
from lambdaplane.service.agent_vpc import host_snapshot
from lambdaplane.service.port_block_leases import PortBlockLeases
from lambdaplane.service.vpc import VpcService
from lambdaplane.store.db import Database
from lambdaplane.store.hosts import HostStore
from lambdaplane.store.hyperplane import EniKey, HyperplaneEniRow, HyperplaneStore
from lambdaplane.store.port_blocks import PortBlockStore


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


async def test_the_flow_rule_counts_across_hosts(tmp_path: Path) -> None:
    """An agent's Hyperplane (service/agent_hyperplane.py) over a store (SQLite here): a stored
    ENI gets this host's block as its SNAT range; its sampled flows are recorded in the block's
    row; once the flows of every host reach the limit it takes no new environment here
    (ResourceNotReadyException: the server's ENIs of that key are full)."""
    db = Database.open(tmp_path)
    net = NetThread()
    try:
        settings = Settings(data_dir=tmp_path)
        names = Names("ut")
        now = time.time()
        for host in ("lpa", "lpb"):
            HostStore(db).register(host, f"host-{host}", f"unix:/{host}", host, now)
        key = EniKey("us-east-1", "subnet-1", "sg-1")
        HyperplaneStore(db).add(HyperplaneEniRow(1, key, "vpc-1", "eni-1", "f"))
        leases = PortBlockLeases(PortBlockStore(db), "lpa", flow_limit=65000)
        hyperplane = AgentHyperplane(settings, names, db, net,
                                     VpcService(settings, names, db, net), leases)
        assert hyperplane.refresh() and hyperplane.ports == {1: "1024-5119"}
        assert not hyperplane.refresh()  # nothing changed since
        hyperplane.sampler.counts = {1: 10}
        hyperplane.sync_flows()
        assert leases.store.flows("eni-1") == 10 and hyperplane.room == {1: True}
        assert hyperplane._pick(key) == 1

        other = PortBlockLeases(PortBlockStore(db), "lpb", flow_limit=65000)
        assert other.ports_for("eni-1") == "5120-9215"
        other.record_flows({"eni-1": 64990})
        hyperplane.sync_flows()
        assert hyperplane.room == {1: False} and hyperplane._pick(key) is None
        spec = FunctionSpec("us-east-1", "f", "arn:aws:lambda:us-east-1:0:function:f",
                            "$LATEST", "python3.11", "app.handler", 128, 3, {}, "ab" * 32,
                            tmp_path, "r1", vpc=VpcAttachment("vpc-1", ("subnet-1",), ("sg-1",)))
        with pytest.raises(AwsError) as e:
            await hyperplane._pick_or_create(key, spec)
        assert e.value.code == "ResourceNotReadyException"

        HyperplaneStore(db).delete(1)  # the server collected it: this host's block goes back
        assert hyperplane.refresh() and hyperplane.ports == {}
        assert [b.host_id for b in leases.store.of_eni("eni-1")] == ["lpb"]
    finally:
        net.close()
        db.close()
