"""Reply steering by port block (net/hyperplane/port_blocks.py) without a kernel: the spec from
the store's rows leaves out this host's blocks and hosts without a hop number, the numbering
(hop addresses, marks, tables) stays clear of the ENIs' and the route tables', and the nft
text carries the owner map and a digest that changes with the spec."""
from __future__ import annotations

import pytest

from lambdaplane.net.hyperplane import port_blocks as pb
from lambdaplane.net.names import ENI_LAST, Names, back_table, eni_mark
from lambdaplane.net.routing import TABLE_BASE

ENI_A, ENI_B = "10.60.1.50", "10.60.2.9"


def test_the_spec_leaves_out_own_blocks_and_hosts_without_a_hop() -> None:
    hops = {"lpa1": 1, "lpb1": 2, "lpc1": 7}
    rows = [(ENI_A, "lpa1", 1024, 5119), (ENI_A, "lpb1", 5120, 9215),
            (ENI_B, "lpc1", 1024, 5119), (ENI_B, "lpd1", 5120, 9215)]  # lpd1: no hop yet
    spec = pb.desired_steering("vpc-1", "lpa1", hops, rows)
    assert spec.own_hop == 1
    assert spec.remote == (pb.RemoteBlock(ENI_A, 5120, 9215, 2),
                           pb.RemoteBlock(ENI_B, 1024, 5119, 7))
    assert spec.hops == {2, 7}
    # the same rows in another order: the same spec
    assert pb.desired_steering("vpc-1", "lpa1", hops, rows[::-1]) == spec


def test_numbers_stay_clear_of_the_other_users() -> None:
    assert pb.hop_address(1) == "169.254.240.1"
    assert pb.hop_address(4094) == "169.254.255.254"
    assert pb.host_mark(1) > eni_mark(ENI_LAST)
    assert back_table(ENI_LAST) < pb.hop_table(1) < pb.hop_table(4094) < TABLE_BASE
    for bad in (0, 4095):
        with pytest.raises(ValueError):
            pb.hop_address(bad)
    with pytest.raises(ValueError):
        pb.RemoteBlock(ENI_A, 5000, 4000, 2)
    with pytest.raises(ValueError):
        pb.ReplySteering("vpc-1", 2, (pb.RemoteBlock(ENI_A, 1024, 5119, 2),))


def test_the_ruleset_maps_address_and_port_range_to_the_owners_mark() -> None:
    names = Names("t1")
    spec = pb.ReplySteering("vpc-1", 1, (pb.RemoteBlock(ENI_A, 5120, 9215, 2),
                                         pb.RemoteBlock(ENI_B, 1024, 5119, 7)))
    text = pb.steering_ruleset(names, spec)
    assert f"table ip {pb.steering_table(names)} {{" in text
    assert "type ipv4_addr . inet_service : mark; flags interval;" in text
    assert f"{ENI_A} . 5120-9215 : {pb.host_mark(2):#x}" in text
    assert f"{ENI_B} . 1024-5119 : {pb.host_mark(7):#x}" in text
    assert 'iifname != "evpn0" meta l4proto { tcp, udp } meta mark set ip daddr . th dport ' \
        "map @owner" in text
    assert "type route hook output" in text
    # an empty spec still makes the table (no elements); the digest follows the spec
    empty = pb.steering_ruleset(names, pb.ReplySteering("vpc-1", 1, ()))
    assert "elements" not in empty
    comment = [line for line in text.splitlines() if "comment" in line]
    assert comment and comment[0] not in empty
