"""The one naming scheme (net/names.py): every name parses back to its owner, names of another
instance or kind do not, and the ENI-number ranges do not overlap."""
from __future__ import annotations

from lambdaplane.net import names as n
from lambdaplane.net.names import Names

NAMES, OTHER = Names("ab1"), Names("ab12")  # a prefix of another instance's


def test_names_parse_back_to_their_owner() -> None:
    assert NAMES.transit_number(NAMES.transit_veth(42)) == 42
    assert NAMES.eni_of_far_end(NAMES.worker_netns, NAMES.transit_veth(7)) == 7
    assert NAMES.eni_of_far_end("elsewhere", NAMES.transit_veth(7)) is None
    assert NAMES.sandbox_slot_of_veth(NAMES.sandbox_veth(3)) == 3
    assert NAMES.sandbox_slot_of_netns(NAMES.sandbox_netns(9)) == 9
    assert NAMES.vpc_of_netns(NAMES.vpc_netns("vpc-0abc")) == "vpc-0abc"
    assert NAMES.eni_of_resource_netns(NAMES.resource_netns("eni-0abc")) == "eni-0abc"
    assert NAMES.old_layout_number(f"{NAMES.old_plane_netns_prefix}vpc-1", "e5") == 5


def test_other_kinds_and_instances_are_not_ours() -> None:
    assert NAMES.transit_number(NAMES.sandbox_veth(1)) is None
    assert NAMES.transit_number(OTHER.transit_veth(1)) is None  # lpab12t1 is not lpab1t…
    assert NAMES.vpc_of_netns(NAMES.resource_netns("eni-1")) is None
    assert NAMES.vpc_of_netns(NAMES.worker_netns) is None
    assert NAMES.old_layout_number(NAMES.vpc_netns("vpc-1"), "e5") is None
    assert NAMES.owns(NAMES.plane_table) and not NAMES.owns("lpzz9-w")
    assert NAMES.owns_nft_table(NAMES.steer_table) and NAMES.owns_nft_table(NAMES.nft_table)
    assert not NAMES.owns_nft_table(OTHER.nft_table)


def test_nft_globs_match_what_the_links_are_called() -> None:
    assert NAMES.transit_veth_glob == f'"{NAMES.transit_veth(0)[:-1]}*"'
    assert NAMES.sandbox_veth_glob == f'"{NAMES.sandbox_veth(0)[:-1]}*"'


def test_interface_names_fit_ifnamsiz() -> None:
    assert len(Names("abc").transit_veth(n.ENI_LAST)) <= 15
    assert len(n.port_ifname("eni-0123456789abcdef0")) <= 15


def test_eni_number_ranges() -> None:
    assert n.ENI_FIRST < n.LEGACY_ENI_FIRST <= n.ENI_LAST
    assert not n.is_legacy_eni(n.LEGACY_ENI_FIRST - 1) and n.is_legacy_eni(n.LEGACY_ENI_FIRST)
    # out tables (worker) and back tables (VPC namespaces) stay clear of the kernel's
    # reserved tables (253 default, 254 main, 255 local) and of each other's ENIs
    assert n.out_table(n.ENI_FIRST) > 255 and n.back_table(n.ENI_FIRST) > 255
    assert len({n.out_table(k) for k in (n.ENI_FIRST, n.LEGACY_ENI_FIRST, n.ENI_LAST)}) == 3
