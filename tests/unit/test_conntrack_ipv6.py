"""ctnetlink entries of IPv6 flows (NAT66 of dual-stack functions' flows): their addresses are
read (CTA_IP_V6_SRC/DST), and they count toward the ENI's IPv6 address like IPv4 flows toward
its IPv4 address."""
from __future__ import annotations

import socket
import struct

from lambdaplane.net.conntrack import TCP_ESTABLISHED, Flow, flow_of, parse_entry, parse_messages
from lambdaplane.net.hyperplane.counters import busiest_per_address, per_address
from tests.unit.test_conntrack import NESTED, attr, message

ENI6 = "fd00:1::9"
SANDBOX6 = "fd6c:7000::5"


def ip6_tuple(src: str, dst: str, proto: int, sport: int, dport: int) -> bytes:
    ip = attr(3, socket.inet_pton(socket.AF_INET6, src)) \
        + attr(4, socket.inet_pton(socket.AF_INET6, dst))
    ports = attr(1, bytes([proto])) + attr(2, struct.pack("!H", sport)) \
        + attr(3, struct.pack("!H", dport))
    return attr(1 | NESTED, ip) + attr(2 | NESTED, ports)


def entry6(src: str, dst: str, sport: int, dport: int, reply_dst: str,
           proto: int = socket.IPPROTO_TCP):
    body = attr(1 | NESTED, ip6_tuple(src, dst, proto, sport, dport))
    body += attr(2 | NESTED, ip6_tuple(dst, reply_dst, proto, dport, sport))
    body += attr(4 | NESTED, attr(1 | NESTED, attr(1, bytes([TCP_ESTABLISHED]))))
    body += attr(7, struct.pack("!I", 120))
    ((_kind, payload),) = list(parse_messages(message(0x100, body, family=socket.AF_INET6)))
    return parse_entry(payload)


def test_an_ipv6_natted_flow_reads_as_its_tuple_and_the_enis_address() -> None:
    flow = flow_of(entry6(SANDBOX6, "fd00:1:0:1::20", 40000, 8086, ENI6))
    assert flow == Flow("tcp", SANDBOX6, "fd00:1:0:1::20", 40000, 8086, ENI6, True, 120)
    assert flow.destination == ("tcp", "fd00:1:0:1::20", 8086)


def test_ipv6_flows_count_per_address_beside_ipv4_ones() -> None:
    made = [flow_of(entry6(SANDBOX6, "fd00:1:0:1::20", 40000 + i, 8086, ENI6))
            for i in range(3)]
    made.append(flow_of(entry6(SANDBOX6, "fd00:1:0:1::21", 41000, 53, ENI6,
                               proto=socket.IPPROTO_UDP)))
    flows = [f for f in made if f is not None]
    assert per_address(flows) == {ENI6: 4}
    assert busiest_per_address(flows) == {ENI6: 3}


def test_an_un_natted_ipv6_flow_is_not_the_planes() -> None:
    assert flow_of(entry6("fd00:1::20", "fd00:1:0:1::20", 40000, 80, "fd00:1::20")) is None
