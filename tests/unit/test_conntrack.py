"""ctnetlink answers → entries → flows, per-CPU statistics, and the counts built from them
(net/conntrack.py, net/hyperplane/counters.py), from bytes laid out as the kernel sends them;
and the clear error where conntrack cannot be read."""
from __future__ import annotations

import errno
import socket
import struct

import pytest

from lambdaplane.net import conntrack
from lambdaplane.net.conntrack import (TCP_ESTABLISHED, ConntrackUnavailable, CtEntry, CtTuple,
                                       Flow, flow_of, parse_entry, parse_messages, parse_stats)
from lambdaplane.net.hyperplane.counters import busiest_per_address, per_address

ENI_A, ENI_B = "10.0.1.10", "10.0.1.11"
NESTED = 0x8000


def attr(kind: int, value: bytes) -> bytes:
    length = 4 + len(value)
    return struct.pack("=HH", length, kind) + value + b"\0" * (-length % 4)


def ip_tuple(src: str, dst: str, proto: int, sport: int, dport: int) -> bytes:
    ip = attr(1, socket.inet_aton(src)) + attr(2, socket.inet_aton(dst))
    ports = attr(1, bytes([proto])) + attr(2, struct.pack("!H", sport)) \
        + attr(3, struct.pack("!H", dport))
    return attr(1 | NESTED, ip) + attr(2 | NESTED, ports)


def message(kind: int, body: bytes, family: int = socket.AF_INET, res_id: int = 0) -> bytes:
    payload = struct.pack("!BBH", family, 0, res_id) + body
    return struct.pack("=IHHII", 16 + len(payload), kind, 2, 1, 0) + payload


def ct_message(src: str, dst: str, sport: int, dport: int, reply_dst: str,
               proto: int = socket.IPPROTO_TCP, state: int | None = TCP_ESTABLISHED,
               timeout: int = 300) -> bytes:
    body = attr(1 | NESTED, ip_tuple(src, dst, proto, sport, dport))
    body += attr(2 | NESTED, ip_tuple(dst, reply_dst, proto, dport, 1024 + sport % 60000))
    body += attr(3, struct.pack("!I", 0x18e))  # status, not read
    if state is not None:
        body += attr(4 | NESTED, attr(1 | NESTED, attr(1, bytes([state]))))
    body += attr(7, struct.pack("!I", timeout))
    return message(0x100, body)


def entry(*args: object, **kwargs: object) -> CtEntry:
    ((_kind, payload),) = list(parse_messages(ct_message(*args, **kwargs)))  # type: ignore[arg-type]
    return parse_entry(payload)


def test_an_entry_is_read_from_its_attributes() -> None:
    e = entry("100.64.0.2", "10.0.2.5", 51000, 5432, ENI_A)
    assert e == CtEntry(CtTuple("100.64.0.2", "10.0.2.5", socket.IPPROTO_TCP, 51000, 5432),
                        CtTuple("10.0.2.5", ENI_A, socket.IPPROTO_TCP, 5432, 1024 + 51000),
                        TCP_ESTABLISHED, 300)


def test_a_natted_tcp_flow_reads_as_its_original_tuple_and_eni_address() -> None:
    flow = flow_of(entry("100.64.0.2", "10.0.2.5", 51000, 5432, ENI_A))
    assert flow == Flow("tcp", "100.64.0.2", "10.0.2.5", 51000, 5432, ENI_A, True, 300)
    assert flow.key == "tcp src=100.64.0.2 dst=10.0.2.5 sport=51000 dport=5432"
    assert flow.destination == ("tcp", "10.0.2.5", 5432)


def test_the_namespaces_own_flows_are_not_the_planes() -> None:
    # not NATed: the reply goes back to the original source
    assert flow_of(entry("10.0.1.20", "10.0.2.5", 33000, 80, "10.0.1.20")) is None


def test_only_established_tcp_counts_for_the_idle_watch() -> None:
    syn = flow_of(entry("100.64.0.2", "10.0.2.5", 51000, 80, ENI_A, state=1))
    udp = flow_of(entry("100.64.0.2", "10.0.2.5", 51000, 53, ENI_A, proto=socket.IPPROTO_UDP,
                        state=None, timeout=30))
    assert syn is not None and not syn.established_tcp
    assert udp is not None and not udp.established_tcp and udp.proto == "udp"
    assert udp.timeout_s == 30 and udp.destination == ("udp", "10.0.2.5", 53)


def test_several_messages_in_one_read_and_done() -> None:
    data = ct_message("100.64.0.2", "10.0.2.5", 1, 80, ENI_A) \
        + ct_message("100.64.0.3", "10.0.2.5", 2, 80, ENI_B) \
        + struct.pack("=IHHII", 20, 3, 2, 1, 0) + b"\0" * 4  # NLMSG_DONE
    kinds = [kind for kind, _payload in parse_messages(data)]
    assert kinds == [0x100, 0x100, 3]


def test_an_error_message_is_an_os_error() -> None:
    data = struct.pack("=IHHII", 36, 2, 0, 1, 0) + struct.pack("=i", -errno.EOPNOTSUPP) \
        + b"\0" * 16
    with pytest.raises(OSError) as raised:
        list(parse_messages(data))
    assert raised.value.errno == errno.EOPNOTSUPP


def test_per_cpu_statistics_are_read_and_summed() -> None:
    cpus = [parse_stats(payload) for _kind, payload in parse_messages(
        message(0x104, attr(9, struct.pack("!I", 2)) + attr(10, struct.pack("!I", 1)), res_id=0)
        + message(0x104, attr(9, struct.pack("!I", 3)) + attr(10, struct.pack("!I", 0)),
                  res_id=1))]
    assert cpus == [{"insert_failed": 2, "drop": 1}, {"insert_failed": 3, "drop": 0}]
    assert conntrack.sum_stats(cpus) == {"insert_failed": 5, "drop": 1}


def test_flows_per_eni_address_and_busiest_destination() -> None:
    made = [flow_of(entry("100.64.0.2", "10.0.2.5", 1000 + i, 5432, ENI_A)) for i in range(3)]
    made += [flow_of(entry("100.64.0.3", "10.0.2.6", 2000, 80, ENI_A)),
             flow_of(entry("100.64.0.4", "10.0.2.5", 3000, 5432, ENI_B)),
             flow_of(entry("100.64.0.4", "10.0.2.5", 3001, 5433, ENI_B))]
    flows = [f for f in made if f is not None]
    assert per_address(flows) == {ENI_A: 4, ENI_B: 2}
    assert busiest_per_address(flows) == {ENI_A: 3, ENI_B: 1}


def test_the_kernel_answers_in_this_namespace() -> None:
    """A real dump (root or not: a process may always read its own namespace's table)."""
    try:
        assert isinstance(conntrack.stats(None), dict)
        assert all(isinstance(f, Flow) for f in conntrack.nat_flows(None))
    except ConntrackUnavailable:
        pytest.skip("no ctnetlink on this kernel")


def test_an_unreadable_conntrack_is_an_error_not_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_netfilter_netlink(*_args: object) -> socket.socket:
        raise OSError(errno.EPROTONOSUPPORT, "Protocol not supported")

    monkeypatch.setattr(conntrack.socket, "socket", no_netfilter_netlink)
    with pytest.raises(ConntrackUnavailable, match="nf_conntrack_netlink"):
        conntrack.nat_flows(None)
    with pytest.raises(ConntrackUnavailable):
        conntrack.stats(None)
