"""DNS64 synthesis (service/dns64.py) and the VPC resolver's use of it
(service/dns_server.py): which queries it applies to, the well-known prefix, CNAMEs kept,
NXDOMAIN and real AAAA records passed on, and a forwarded name synthesized from its A answer."""
from __future__ import annotations

import asyncio

import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset

from lambdaplane.service import dns64
from lambdaplane.service.dns_answers import DnsView
from lambdaplane.service.dns_server import VpcResolvers

SUBNET6 = "fd12:3456:789a:1::/64"
VIEW = DnsView("vpc-1", "us-east-1", "10.0.0.2", ("10.0.0.0/16",), True, True, False,
               dns64_cidrs=(SUBNET6,))


def _query(name: str, rdtype: str = "AAAA") -> dns.message.Message:
    return dns.message.make_query(name, rdtype)


def _reply(query: dns.message.Message, *records: tuple[str, str, str],
           rcode: dns.rcode.Rcode = dns.rcode.NOERROR) -> dns.message.Message:
    reply = dns.message.make_response(query)
    reply.set_rcode(rcode)
    for name, rdtype, value in records:
        reply.answer.append(dns.rrset.from_text(name, 300, "IN", rdtype, value))
    return reply


def _texts(message: dns.message.Message) -> list[str]:
    return [f"{rr.name} {dns.rdatatype.to_text(rr.rdtype)} {item}"
            for rr in message.answer for item in rr]


def test_embed_in_the_well_known_prefix() -> None:
    assert dns64.embed("10.0.1.5") == "64:ff9b::a00:105"
    assert dns64.embed("192.0.2.33") == "64:ff9b::c000:221"


def test_applies_to_aaaa_from_a_dns64_subnet_only() -> None:
    assert dns64.applies(VIEW, _query("x.example"), "fd12:3456:789a:1::10")
    assert not dns64.applies(VIEW, _query("x.example", "A"), "fd12:3456:789a:1::10")
    assert not dns64.applies(VIEW, _query("x.example"), "fd12:3456:789a:2::10")
    assert not dns64.applies(VIEW, _query("x.example"), "10.0.1.5")
    assert not dns64.applies(VIEW, _query("x.example"), "")
    off = DnsView("vpc-1", "us-east-1", "10.0.0.2", ("10.0.0.0/16",), True, True, False)
    assert not dns64.applies(off, _query("x.example"), "fd12:3456:789a:1::10")


def test_synthesis_from_a_records_keeps_cnames() -> None:
    query = _query("www.example.com")
    empty = _reply(query)
    assert dns64.needs_synthesis(empty)
    a_reply = _reply(dns64.a_query(query), ("www.example.com.", "CNAME", "web.example.com."),
                     ("web.example.com.", "A", "203.0.113.80"))
    out = dns64.synthesize(query, empty, a_reply)
    assert out.id == query.id and out.question == query.question
    assert _texts(out) == ["www.example.com. CNAME web.example.com.",
                           "web.example.com. AAAA 64:ff9b::cb00:7150"]


def test_no_synthesis_when_aaaa_exists_or_the_name_does_not() -> None:
    query = _query("www.example.com")
    assert not dns64.needs_synthesis(_reply(query, ("www.example.com.", "AAAA", "2001:db8::1")))
    assert not dns64.needs_synthesis(_reply(query, rcode=dns.rcode.NXDOMAIN))
    empty = _reply(query)
    # no A record either: the empty AAAA answer stands
    assert dns64.synthesize(query, empty, _reply(dns64.a_query(query))) is empty


class _Upstream(VpcResolvers):
    """The resolver with its upstream replaced: A answers for one name, nothing else."""

    def __init__(self) -> None:
        super().__init__(net=None, internet_netns="lpx", upstreams=("192.0.2.53",))  # type: ignore[arg-type]
        self.asked: list[str] = []

    async def _forward(self, data: bytes, tcp: bool) -> bytes | None:
        query = dns.message.from_wire(data)
        rdtype = dns.rdatatype.to_text(query.question[0].rdtype)
        self.asked.append(rdtype)
        records = [("www.example.com.", "A", "203.0.113.80")] if rdtype == "A" else []
        return _reply(query, *records).to_wire()


def test_resolver_synthesizes_for_local_and_forwarded_names() -> None:
    resolvers = _Upstream()
    resolvers.views = {"vpc-1": DnsView("vpc-1", "us-east-1", "10.0.0.2", ("10.0.0.0/16",),
                                        True, True, True, dns64_cidrs=(SUBNET6,))}

    def ask(name: str, client: str) -> list[str]:
        data = asyncio.run(resolvers.resolve("vpc-1", _query(name).to_wire(), False, client))
        assert data is not None
        return _texts(dns.message.from_wire(data))

    assert ask("ip-10-0-1-5.ec2.internal", "fd12:3456:789a:1::7") == [
        "ip-10-0-1-5.ec2.internal. AAAA 64:ff9b::a00:105"]
    assert ask("ip-10-0-1-5.ec2.internal", "fd12:3456:789a:2::7") == []  # DNS64 off there
    assert ask("www.example.com", "fd12:3456:789a:1::7") == [
        "www.example.com. AAAA 64:ff9b::cb00:7150"]
    assert resolvers.asked == ["AAAA", "A"]
