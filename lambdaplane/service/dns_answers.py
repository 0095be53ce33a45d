"""What the VPC resolver (AmazonProvidedDNS) answers, from a VPC's DNS view: EC2 private names
both ways (`ip-10-0-1-5.ec2.internal` in us-east-1, `ip-10-0-1-5.<region>.compute.internal`
elsewhere, and their PTR records), public DNS hostnames of Elastic IPs resolving to the
private address inside the VPC (with enableDnsHostnames), private hosted names such as an
interface endpoint's `lambda.<region>.amazonaws.com` (with both DNS attributes), and what is
left to forward upstream. Pure: messages in, messages out (dnspython); no sockets."""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.reversename
import dns.rrset

TTL_S = 60
# reverse names of these ranges are nobody's upstream business (RFC 6303)
_NOT_ON_THE_INTERNET = tuple(ipaddress.IPv4Network(n) for n in (
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "169.254.0.0/16",
    "127.0.0.0/8", "0.0.0.0/8"))


@dataclass(frozen=True)
class DnsView:
    """One VPC as its resolver sees it."""
    vpc_id: str
    region: str
    resolver: str
    cidrs: tuple[str, ...]
    dns_support: bool
    dns_hostnames: bool
    forwards: bool  # a path to the internet and an upstream resolver to ask
    # private hosted names (lowercase, no trailing dot) → addresses (endpoints' private DNS)
    private_names: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # public DNS hostnames of Elastic IPs (lowercase) → the private address they map to
    public_names: dict[str, str] = field(default_factory=dict)
    # IPv6 CIDRs of the subnets with EnableDns64: their AAAA queries get DNS64 (service/dns64.py)
    dns64_cidrs: tuple[str, ...] = ()


def private_domain(region: str) -> str:
    return "ec2.internal" if region == "us-east-1" else f"{region}.compute.internal"


def private_dns_name(ip: str, region: str) -> str:
    """An interface's private DNS name, as DescribeNetworkInterfaces shows it."""
    return f"ip-{ip.replace('.', '-')}.{private_domain(region)}"


def public_dns_name(public_ip: str, region: str) -> str:
    dashed = public_ip.replace(".", "-")
    if region == "us-east-1":
        return f"ec2-{dashed}.compute-1.amazonaws.com"
    return f"ec2-{dashed}.{region}.compute.amazonaws.com"


def resolv_conf(resolver: str, region: str) -> str:
    """/etc/resolv.conf of whatever runs in the VPC (functions, `lambdaplane run`)."""
    return (f"# lambdaplane: the VPC resolver (AmazonProvidedDNS)\n"
            f"search {private_domain(region)}\nnameserver {resolver}\n"
            f"options timeout:2 attempts:5\n")


class Forward:
    """answer()'s verdict for a name the VPC does not know: ask upstream."""


FORWARD = Forward()


def _in_vpc(view: DnsView, ip: str) -> bool:
    try:
        address = ipaddress.IPv4Address(ip)
    except ValueError:
        return False
    return any(address in ipaddress.IPv4Network(c) for c in view.cidrs)


def _ip_of_private_name(label: str) -> str | None:
    if not label.startswith("ip-"):
        return None
    parts = label[3:].split("-")
    if len(parts) != 4 or not all(p.isdigit() and str(int(p)) == p for p in parts):
        return None
    if any(int(p) > 255 for p in parts):
        return None
    return ".".join(parts)


def _response(query: dns.message.Message, rcode: dns.rcode.Rcode = dns.rcode.NOERROR
              ) -> dns.message.Message:
    response = dns.message.make_response(query)
    response.flags |= dns.flags.RA
    response.set_rcode(rcode)
    return response


def _add(response: dns.message.Message, qname: dns.name.Name, rdtype: dns.rdatatype.RdataType,
         values: list[str]) -> dns.message.Message:
    if values:
        response.answer.append(dns.rrset.from_text_list(qname, TTL_S, dns.rdataclass.IN,
                                                        rdtype, values))
    return response


def answer(view: DnsView, query: dns.message.Message) -> dns.message.Message | Forward:
    """The response to `query`, or FORWARD. The caller drops queries when DNS support is off
    and answers SERVFAIL for FORWARD when the VPC cannot forward."""
    if query.opcode() != dns.opcode.QUERY or len(query.question) != 1:
        return _response(query, dns.rcode.NOTIMP)
    question = query.question[0]
    qname, qtype = question.name, question.rdtype
    if question.rdclass != dns.rdataclass.IN:
        return _response(query, dns.rcode.REFUSED)
    text = qname.to_text(omit_final_dot=True).lower()
    domain = private_domain(view.region)
    # private hosted names: only with both DNS attributes (as AWS requires for private DNS)
    if view.dns_hostnames and text in view.private_names:
        values = list(view.private_names[text]) if qtype == dns.rdatatype.A else []
        return _add(_response(query), qname, dns.rdatatype.A, values)
    if view.dns_hostnames and text in view.public_names:
        values = [view.public_names[text]] if qtype == dns.rdatatype.A else []
        return _add(_response(query), qname, dns.rdatatype.A, values)
    if text == domain or text.endswith("." + domain):
        ip = _ip_of_private_name(text[:-len(domain) - 1]) if text != domain else None
        if ip is None or not _in_vpc(view, ip):
            return _response(query, dns.rcode.NXDOMAIN)
        values = [ip] if qtype == dns.rdatatype.A else []
        return _add(_response(query), qname, dns.rdatatype.A, values)
    if text.endswith(".in-addr.arpa"):
        try:
            ip = dns.reversename.to_address(qname)
        except (dns.exception.SyntaxError, ValueError):
            ip = ""
        if ip and _in_vpc(view, ip):
            values = [private_dns_name(ip, view.region) + "."] \
                if qtype == dns.rdatatype.PTR else []
            return _add(_response(query), qname, dns.rdatatype.PTR, values)
        if ip and any(ipaddress.IPv4Address(ip) in net for net in _NOT_ON_THE_INTERNET):
            return _response(query, dns.rcode.NXDOMAIN)  # never asked of the internet
    return FORWARD


def servfail(query: dns.message.Message) -> dns.message.Message:
    return _response(query, dns.rcode.SERVFAIL)
