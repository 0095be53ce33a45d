"""Flow-log records from kernel observations (pure): which ENI a conntrack entry or a dropped
packet is recorded on, with which addresses, and the default format's line; the security-group
table logs its drops to the collector's NFLOG group."""
from __future__ import annotations

from lambdaplane.net.flow_sources import NFLOG_GROUP, DroppedPacket, TrackedFlow
from lambdaplane.net.security_groups import PortRules, render
from lambdaplane.net.vpc import port_ifname
from lambdaplane.service.flow_collector import (
    Tally,
    drop_observations,
    flow_observations,
    nodata_line,
    record_line,
)
from lambdaplane.store.ec2 import Eni

FN_ENI, SRV_ENI = "eni-0aaaaaaaaaaaaaaaa", "eni-0bbbbbbbbbbbbbbbb"
FN_IP, SRV_IP, SANDBOX = "10.1.2.4", "10.1.1.10", "100.64.0.7"


def _eni(eni_id: str, ip: str) -> Eni:
    return Eni(eni_id, "us-east-1", "subnet-1", "vpc-1", ip, "02:00:00:00:00:01", "interface",
               False, "", "in-use", ())


def test_a_snatted_flow_is_recorded_on_both_enis_with_the_eni_address() -> None:
    # a sandbox (100.64.0.7:40000) → 10.1.1.10:8080 through the function's ENI (SNAT to
    # 10.1.2.4:41000): conntrack's reply tuple holds the translated source
    flow = TrackedFlow(1, 6, SANDBOX, SRV_IP, 40000, 8080, SRV_IP, FN_IP, 8080, 41000,
                       orig_packets=5, orig_bytes=300, reply_packets=4, reply_bytes=500)
    seen = flow_observations(flow, (5, 300, 4, 500), {FN_IP: FN_ENI, SRV_IP: SRV_ENI})
    keys = {(o.key, o.packets, o.bytes) for o in seen}
    for eni in (FN_ENI, SRV_ENI):
        assert ((eni, FN_IP, SRV_IP, 41000, 8080, 6, "ACCEPT"), 5, 300) in keys
        assert ((eni, SRV_IP, FN_IP, 8080, 41000, 6, "ACCEPT"), 4, 500) in keys
    assert len(seen) == 4
    # no new packets in one direction: no record for it; an address outside the VPC: no ENI
    only_out = flow_observations(flow, (1, 60, 0, 0), {SRV_IP: SRV_ENI})
    assert [o.key for o in only_out] == [(SRV_ENI, FN_IP, SRV_IP, 41000, 8080, 6, "ACCEPT")]


def test_drops_are_rejects_where_a_group_dropped_them() -> None:
    by_port = {port_ifname(FN_ENI): _eni(FN_ENI, FN_IP), port_ifname(SRV_ENI): _eni(SRV_ENI, SRV_IP)}
    # the receiver's ingress rules: REJECT on its ENI, the sender's ENI let it out (ACCEPT);
    # a Hyperplane sender's packet still carries the sandbox address: shown as the ENI's
    ingress = DroppedPacket("in", port_ifname(SRV_ENI), port_ifname(FN_ENI), 6, SANDBOX, SRV_IP,
                            40001, 8081, 60)
    assert [(o.key, o.packets, o.bytes) for o in drop_observations(ingress, by_port)] == [
        ((SRV_ENI, FN_IP, SRV_IP, 40001, 8081, 6, "REJECT"), 1, 60),
        ((FN_ENI, FN_IP, SRV_IP, 40001, 8081, 6, "ACCEPT"), 1, 60)]
    # the sender's egress rules: REJECT on the sender's ENI only
    egress = DroppedPacket("out", port_ifname(SRV_ENI), port_ifname(SRV_ENI), 17, SRV_IP, FN_IP,
                           53000, 53, 40)
    assert [o.key for o in drop_observations(egress, by_port)] == [
        (SRV_ENI, SRV_IP, FN_IP, 53000, 53, 17, "REJECT")]


def test_record_line_is_the_default_format_version_2() -> None:
    tally = Tally(packets=3, bytes=180, start=1700000000, end=1700000004)
    assert record_line("123456789012", (SRV_ENI, FN_IP, SRV_IP, 41000, 8080, 6, "ACCEPT"),
                       tally) == (f"2 123456789012 {SRV_ENI} {FN_IP} {SRV_IP} 41000 8080 6 3 "
                                  f"180 1700000000 1700000004 ACCEPT OK")
    assert nodata_line("123456789012", FN_ENI, 1700000000, 1700000060) == \
        f"2 123456789012 {FN_ENI} - - - - - - - 1700000000 1700000060 - NODATA"


def test_security_group_chains_log_their_drops_to_the_collector() -> None:
    script = render("lpx-sg", [PortRules("e1", ("sg-1",), "10.0.0.5")], {}, {})
    assert f'log prefix "lpflow out e1" group {NFLOG_GROUP}' in script
    assert f'log prefix "lpflow in e1" group {NFLOG_GROUP}' in script
