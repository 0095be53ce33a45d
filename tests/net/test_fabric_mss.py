"""The fabric's MSS clamp in a VPC namespace (net/fabric_mss.py): made once on the EVPN port
(a second ensure changes nothing), it rewrites the MSS of SYNs and SYN-ACKs leaving through the
port to the route's MTU, in a table named after the instance. A namespace of the test's own
(`lp<id>-vpc-t`, a veth `evpn0` at the segment MTU), deleted by the test. Traffic through it
is `bench fabric`'s (tests/e2e/test_bench_fabric.py)."""
from __future__ import annotations

import subprocess

import pytest

from lambdaplane.cleanup import fresh_instance
from lambdaplane.net import fabric_mss, nft
from lambdaplane.net.fabric import SEGMENT_MTU
from lambdaplane.net.names import Names

pytestmark = pytest.mark.root


def test_the_clamp_is_made_once_on_the_evpn_port() -> None:
    prefix = Names(fresh_instance("m")).prefix
    netns = f"{prefix}-vpc-t"
    subprocess.run(["ip", "netns", "add", netns], check=True)
    try:
        subprocess.run(["ip", "-n", netns, "link", "add", "evpn0", "mtu", str(SEGMENT_MTU),
                        "type", "veth", "peer", "name", "evpn0p"], check=True)
        assert fabric_mss.mss_table(netns) == f"{prefix}-mss"
        changes: list[str] = []
        fabric_mss.ensure_mss_clamp(netns, "evpn0", changes)
        assert changes == [f"clamped TCP MSS to the route MTU on evpn0 in {netns}"]
        fabric_mss.ensure_mss_clamp(netns, "evpn0", changes)
        assert len(changes) == 1  # idempotent
        listed = nft.list_text(f"table inet {prefix}-mss", netns) or ""
        assert 'oifname "evpn0"' in listed and "maxseg size set rt mtu" in listed
        assert "hook forward" in listed
    finally:
        subprocess.run(["ip", "netns", "del", netns], check=True)
