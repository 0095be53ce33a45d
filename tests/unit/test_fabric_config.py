"""The EVPN fabric's pure parts: names and their parse-back, VNIs, the desired state, FRR's
configuration and command lines (net/fabric.py, net/frr.py, net/names.py)."""
from __future__ import annotations

from pathlib import Path

import pytest

from lambdaplane.net import fabric, frr
from lambdaplane.net.names import (
    VNI_MAX,
    Names,
    fabric_bridge_ifname,
    fabric_port_ifname,
    fabric_vxlan_ifname,
    vni_of_fabric_link,
)


def test_fabric_names_fit_and_parse_back() -> None:
    names = Names("a1b")
    assert names.fabric_netns == "lpa1b-fabric"
    assert names.is_fabric_netns("lpa1b-fabric") and not names.is_fabric_netns("lpa1c-fabric")
    assert names.vpc_of_netns(names.fabric_netns) is None  # not taken for a VPC's
    assert names.owns(names.fabric_underlay_link) and len(names.fabric_underlay_link) <= 15
    for make in (fabric_vxlan_ifname, fabric_bridge_ifname, fabric_port_ifname):
        name = make(VNI_MAX)
        assert len(name) <= 15
        assert vni_of_fabric_link(name) == VNI_MAX
        assert vni_of_fabric_link(make(42)) == 42
    for other in ("vx", "vx0", "brx1", "under0", "lo", f"vp{VNI_MAX + 1}", "e0123"):
        assert vni_of_fabric_link(other) is None


def test_vni_is_derived_from_the_vpc_alone() -> None:
    a, b = fabric.vni_of_vpc("vpc-0a0a0a0a0a0a0a0a1"), fabric.vni_of_vpc("vpc-0b0b0b0b0b0b0b0b2")
    assert a == fabric.vni_of_vpc("vpc-0a0a0a0a0a0a0a0a1")  # the same on every host
    assert a != b
    vnis = {fabric.vni_of_vpc(f"vpc-{n:017x}") for n in range(2000)}
    assert all(1 <= v <= VNI_MAX for v in vnis)
    assert len(vnis) > 1990  # spread (a few collisions possible among 2000: documented)


def test_desired_fabric() -> None:
    names = Names("a1b")
    spec = fabric.desired_fabric(names, Path("/data"), "10.0.0.1",
                                 ["10.0.0.3", "10.0.0.1", "10.0.0.2", "10.0.0.3"],
                                 [("vpc-2", ["10.1.2.0/24", "10.1.1.0/24"]),
                                  ("vpc-1", ["10.1.1.0/24"])], host_netns="h")
    assert spec.peers == ("10.0.0.2", "10.0.0.3")  # not ourselves, once each
    assert spec.netns == "lpa1b-fabric" and spec.underlay_link == "lpa1bfu"
    assert spec.state_dir == Path("/data/fabric") and spec.host_netns == "h"
    assert [v.vni for v in spec.vpcs] == sorted(v.vni for v in spec.vpcs)
    by_id = {v.vpc_id: v for v in spec.vpcs}
    assert by_id["vpc-2"].prefixes == ("10.1.1.0/24", "10.1.2.0/24")
    assert by_id["vpc-1"].vpc_netns == names.vpc_netns("vpc-1")
    assert by_id["vpc-1"].vni == fabric.vni_of_vpc("vpc-1")
    assert spec.segment_mtu == 1450
    with pytest.raises(ValueError):
        fabric.desired_fabric(names, Path("/data"), "not-an-address", [], [])


def test_bgpd_configuration() -> None:
    text = frr.render_bgpd(frr.BgpConfig("lpa1b-fabric", "10.0.0.1", ("10.0.0.3", "10.0.0.2")))
    lines = text.splitlines()
    assert lines[0] == "frr defaults datacenter"
    assert "router bgp 65000" in lines and " bgp router-id 10.0.0.1" in lines
    assert " no bgp default ipv4-unicast" in lines  # EVPN only
    for peer in ("10.0.0.2", "10.0.0.3"):
        assert f" neighbor {peer} remote-as internal" in lines  # iBGP
        assert f" neighbor {peer} update-source 10.0.0.1" in lines
        assert f"  neighbor {peer} activate" in lines
    evpn = lines.index(" address-family l2vpn evpn")
    assert lines[evpn:].index("  advertise-all-vni") < lines[evpn:].index(" exit-address-family")
    assert text.index("10.0.0.2") < text.index("10.0.0.3")  # sorted: same peers, same text
    assert text == frr.render_bgpd(frr.BgpConfig("lpa1b-fabric", "10.0.0.1",
                                                 ("10.0.0.2", "10.0.0.3")))


def test_zebra_resolves_peers_through_the_default_route() -> None:
    assert "ip nht resolve-via-default" in frr.render_zebra("x").splitlines()


def test_daemons_keep_everything_under_the_state_dir() -> None:
    daemons = frr.Daemons(Path("/data/fabric"), "lpa1b-fabric")
    for daemon in frr.DAEMONS:
        cmd = daemons.command(daemon)
        assert not any("/etc/frr" in arg or "/var/run/frr" in arg for arg in cmd)
        assert cmd[cmd.index("-f") + 1] == f"/data/fabric/{daemon}.conf"
        assert cmd[cmd.index("-i") + 1] == f"/data/fabric/{daemon}.pid"
        assert cmd[cmd.index("-z") + 1] == "/data/fabric/zserv.api"
        assert cmd[cmd.index("--vty_socket") + 1] == "/data/fabric"
        assert cmd[cmd.index("-P") + 1] == "0"  # no TCP vty
        assert ["ip", "netns", "exec", "lpa1b-fabric"] == cmd[cmd.index("ip"):][:4]


def test_group_file_puts_root_in_the_vty_group() -> None:
    etc = "root:x:0:\nfrrvty:x:112:frr\nfrr:x:113:\n"
    out = frr.group_file_text(etc)
    assert "frrvty:x:112:frr,root" in out.splitlines()
    assert "root:x:0:" in out.splitlines() and "frr:x:113:" in out.splitlines()
    assert frr.group_file_text(out) == out  # once
    assert "frrvty:x:65533:root" in frr.group_file_text("root:x:0:\n").splitlines()


def test_a_change_of_peers_only_is_told_to_bgpd_live() -> None:
    def conf(router_id: str, *peers: str) -> str:
        return frr.render_bgpd(frr.BgpConfig("h", router_id, peers))

    assert frr.peer_change_commands(conf("10.0.0.1", "10.0.0.2"),
                                    conf("10.0.0.1", "10.0.0.3")) == [
        "configure terminal", "router bgp 65000", "no neighbor 10.0.0.2",
        "neighbor 10.0.0.3 remote-as internal", "neighbor 10.0.0.3 update-source 10.0.0.1",
        "neighbor 10.0.0.3 timers connect 2", "address-family l2vpn evpn",
        "neighbor 10.0.0.3 activate", "exit-address-family", "end"]
    assert frr.peer_change_commands(conf("10.0.0.1", "10.0.0.2"), conf("10.0.0.1")) == [
        "configure terminal", "router bgp 65000", "no neighbor 10.0.0.2", "end"]
    # anything else changed (the router id: the VTEP address): a restart, not a live change
    assert frr.peer_change_commands(conf("10.0.0.1", "10.0.0.2"),
                                    conf("10.0.0.9", "10.0.0.2")) is None


def test_host_fabric_puts_each_vpc_on_the_vni_the_store_gave_it(tmp_path: Path) -> None:
    import asyncio

    from lambdaplane.service.host_fabric import HostFabric, parse_underlay

    host = HostFabric(Names("t01"), tmp_path, parse_underlay("192.0.2.1", []))
    told: list[fabric.FabricSpec] = []

    async def ensure() -> list[str]:  # the kernel side is test_evpn_fabric's
        told.append(host.spec())
        return []

    host.ensure = ensure  # type: ignore[method-assign]
    vpcs = [("vpc-0000000000000000a", ["10.0.0.0/24"]),
            ("vpc-0000000000000000b", ["10.0.0.0/24"])]
    asyncio.run(host.set_vpcs(vpcs, {"vpc-0000000000000000a": 7}))
    by_vpc = {v.vpc_id: v.vni for v in told[-1].vpcs}
    assert by_vpc == {"vpc-0000000000000000a": 7,  # the store's
                      "vpc-0000000000000000b": fabric.vni_of_vpc("vpc-0000000000000000b")}
