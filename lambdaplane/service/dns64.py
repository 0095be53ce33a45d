"""DNS64 of the VPC resolver (RFC 6147), for subnets with `EnableDns64`: an AAAA query from
such a subnet's IPv6 address whose name has no AAAA record but has A records is answered with
AAAA records synthesized in the well-known prefix 64:ff9b::/96 (RFC 6052), as AWS's Route 53
Resolver does. Which subnets: DnsView.dns64_cidrs (service/vpc_dns.py). The resolver asks
the A question the same way it asks any (service/dns_server.py). Synthesis only: the NAT64
that would carry traffic to such addresses is not built. Pure: messages in, messages out."""
from __future__ import annotations

import ipaddress

import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from .dns_answers import DnsView

WELL_KNOWN_PREFIX = ipaddress.IPv6Network("64:ff9b::/96")


def embed(ipv4: str) -> str:
    """An IPv4 address inside the well-known prefix: 10.0.1.5 → 64:ff9b::a00:105."""
    return str(ipaddress.IPv6Address(int(WELL_KNOWN_PREFIX.network_address)
                                     | int(ipaddress.IPv4Address(ipv4))))


def applies(view: DnsView, query: dns.message.Message, client: str) -> bool:
    """An AAAA question from an address of a subnet with DNS64."""
    if not view.dns64_cidrs or len(query.question) != 1:
        return False
    question = query.question[0]
    if question.rdtype != dns.rdatatype.AAAA or question.rdclass != dns.rdataclass.IN:
        return False
    try:
        address = ipaddress.ip_address(client.split("%")[0])
    except ValueError:
        return False
    return address.version == 6 and any(address in ipaddress.IPv6Network(c)
                                        for c in view.dns64_cidrs)


def needs_synthesis(reply: dns.message.Message) -> bool:
    """A reply with no AAAA record at all (an empty answer). NXDOMAIN and failures are
    passed on as they are (RFC 6147 5.1.2, 5.1.3)."""
    return reply.rcode() == dns.rcode.NOERROR and not any(
        rrset.rdtype == dns.rdatatype.AAAA for rrset in reply.answer)


def a_query(query: dns.message.Message) -> dns.message.Message:
    """The A question to ask for an AAAA one."""
    question = query.question[0]
    return dns.message.make_query(question.name, dns.rdatatype.A)


def synthesize(query: dns.message.Message, aaaa_reply: dns.message.Message,
               a_reply: dns.message.Message) -> dns.message.Message:
    """The AAAA reply to `query`: the A reply's records (CNAMEs kept) with every A record
    made AAAA in the well-known prefix; `aaaa_reply` itself when there is no A record."""
    if a_reply.rcode() != dns.rcode.NOERROR or not any(
            rrset.rdtype == dns.rdatatype.A for rrset in a_reply.answer):
        return aaaa_reply
    response = dns.message.make_response(query)
    response.flags = aaaa_reply.flags
    for rrset in a_reply.answer:
        if rrset.rdtype == dns.rdatatype.A:
            response.answer.append(dns.rrset.from_text_list(
                rrset.name, rrset.ttl, dns.rdataclass.IN, dns.rdatatype.AAAA,
                [embed(item.address) for item in rrset]))
        else:
            response.answer.append(rrset)
    return response
