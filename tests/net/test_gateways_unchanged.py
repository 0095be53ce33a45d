"""net/gateways.py's reconcile on real namespaces (bench/nat.py's lab: a VPC with an internet
gateway link, an Elastic IP and a NAT gateway): with nothing to change it changes nothing; told
that nothing changed underneath (`recheck` empty: the change path) it does not read an
unchanged VPC back, so drift made by hand stays until a VPC is rechecked or the run verifies
(start, the drift timer, the admin reconcile), which repairs it."""
from __future__ import annotations

import subprocess

import pytest

from lambdaplane.bench import nat
from lambdaplane.net import gateways

pytestmark = pytest.mark.root


def _default_route(netns: str, table: int) -> str:
    return subprocess.run(["ip", "-n", netns, "route", "show", "table", str(table), "0/0"],
                          capture_output=True, text=True, check=True).stdout.strip()


def test_unchanged_vpcs_are_skipped_until_rechecked_or_verified() -> None:
    with nat.lab() as (env, _spaces):
        spec = env.spec
        table = min(spec.routing.tables)
        assert gateways.reconcile([spec]) == []
        assert gateways.reconcile([spec], set()) == []
        subprocess.run(["ip", "-n", spec.netns, "route", "del", "0.0.0.0/0", "table",
                        str(table)], check=True)
        assert _default_route(spec.netns, table) == ""
        assert gateways.reconcile([spec], set()) == []  # skipped: nothing said it changed
        assert gateways.reconcile([spec], {spec.netns}) != []  # rechecked: repaired
        assert "igw0" in _default_route(spec.netns, table)
        subprocess.run(["ip", "-n", spec.netns, "route", "del", "0.0.0.0/0", "table",
                        str(table)], check=True)
        assert gateways.reconcile([spec]) != []  # verified: repaired
        assert "igw0" in _default_route(spec.netns, table)
        # a spec that differs is made, even when nothing said the namespace changed
        fewer = type(spec)(**{**vars(spec), "nat": ()})
        assert gateways.reconcile([fewer], set()) != []
        assert gateways.reconcile([fewer], set()) == []
