"""The VPC reconciler on real namespaces, without a server: it builds what the store says,
a second run changes nothing, interfaces whose far end is a shared namespace (the Hyperplane
shape) are ports like any other, and teardown leaves nothing of ours."""
from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from lambdaplane.cleanup import fresh_instance, clean_instance, leftovers
from lambdaplane.net import ns
from lambdaplane.net.names import Names
from lambdaplane.net.netlink import Netlink
from lambdaplane.net.reconcile import reconcile, teardown
from lambdaplane.net.vpc import desired_state, port_ifname
from lambdaplane.store.ec2 import Eni, FarEnd, SecurityGroup, SgRule, Snapshot, Subnet, Vpc

pytestmark = pytest.mark.root


@pytest.fixture
def names() -> Iterator[Names]:
    names = Names(fresh_instance("t"))
    try:
        yield names
    finally:
        clean_instance(names.instance)
        assert leftovers(names.instance) == []


def _snapshot(names: Names, shared_netns: str) -> Snapshot:
    vpc = Vpc("vpc-0000000000000000a", "us-east-1", "10.60.0.0/16", False)
    subnet = Subnet("subnet-0000000000000000a", "us-east-1", vpc.id, "10.60.1.0/24",
                    "us-east-1a", False)
    sg = SecurityGroup("sg-0000000000000000a", "us-east-1", vpc.id, "default", "d")
    rules = [SgRule("sgr-1", sg.id, False, "-1", -1, -1, None, sg.id),
             SgRule("sgr-2", sg.id, True, "-1", -1, -1, "0.0.0.0/0", None)]

    def eni(n: int, far: FarEnd) -> Eni:
        return Eni(f"eni-{n:x}{0:016x}", "us-east-1", subnet.id, vpc.id, f"10.60.1.{n + 3}",
                   f"02:00:00:00:00:{n:02x}", "interface", False, "", "in-use", (sg.id,), far)
    own = eni(1, FarEnd(names.resource_netns(f"eni-1{0:016x}"), "eth0", True))
    shared = eni(2, FarEnd(shared_netns, "e2", False))
    return Snapshot([vpc], [subnet], [sg], rules, [own, shared])


def test_build_is_idempotent_and_teardown_is_complete(names: Names) -> None:
    shared = f"{names.prefix}-h-test"  # made by "its owner" (the Hyperplane work) beforehand
    snap = _snapshot(names, shared)
    desired = desired_state(names, snap)
    try:
        first = reconcile(names, desired)
        assert "created netns " + names.vpc_netns(snap.vpcs[0].id) in first
        # The shared far end does not exist yet: that port waits for its owner.
        with Netlink(names.vpc_netns(snap.vpcs[0].id)) as nl:
            assert nl.index(port_ifname(snap.enis[1].id)) is None
        ns.create(shared)
        second = reconcile(names, desired)
        assert any("created port" in c for c in second)
        assert reconcile(names, desired) == []
        with Netlink(shared) as nl:
            assert nl.addresses("e2") == {("10.60.1.5", 24)}
            assert [r for r in nl.routes() if r[1] == 0] == []  # no default route: not ours
        own_ns = snap.enis[0].far_end.netns
        with Netlink(own_ns) as nl:
            assert nl.addresses("eth0") == {("10.60.1.4", 24)}
            assert nl.mac("eth0") == "02:00:00:00:00:01"
        # Default group members reach each other through the VPC namespace.
        probe = subprocess.run(["ip", "netns", "exec", own_ns, "python3", "-c",
                                "import socket; s=socket.socket(); s.settimeout(2);\n"
                                "try: s.connect(('10.60.1.5', 9)); print('open')\n"
                                "except ConnectionRefusedError: print('refused')\n"
                                "except socket.timeout: print('timeout')"],
                               capture_output=True, text=True, timeout=30)
        assert probe.stdout.strip() == "refused"  # reached the shared netns, nothing listens
        # Dropping the shared ENI from the store removes its port; the shared netns stays.
        snap.enis.pop()
        assert any("removed port" in c for c in reconcile(names, desired_state(names, snap)))
        assert ns.exists(shared)
        teardown(names)
        assert ns.list_named(names.prefix + "-vpc-") == []
        assert ns.list_named(names.prefix + "-r-") == []
        assert teardown(names) == []
    finally:
        ns.delete(shared)
