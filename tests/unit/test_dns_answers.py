"""What the VPC resolver answers from a VPC's DnsView (service/dns_answers.py): pure messages,
no sockets. The end-to-end behaviour is in tests/e2e/test_vpc_dns.py."""
from __future__ import annotations

import dns.message
import dns.rcode

from lambdaplane.service.dns_answers import (
    FORWARD,
    DnsView,
    answer,
    private_dns_name,
    public_dns_name,
    resolv_conf,
)


def _view(**kw: object) -> DnsView:
    base: dict[str, object] = dict(
        vpc_id="vpc-1", region="us-east-1", resolver="10.0.0.2",
        cidrs=("10.0.0.0/16", "10.1.0.0/16"), dns_support=True, dns_hostnames=True,
        forwards=False,
        private_names={"lambda.us-east-1.amazonaws.com": ("10.0.1.9", "10.0.2.9")},
        public_names={"ec2-198-51-100-7.compute-1.amazonaws.com": "10.0.1.5"})
    base.update(kw)
    return DnsView(**base)  # type: ignore[arg-type]


def _ask(view: DnsView, name: str, rdtype: str = "A") -> str:
    result = answer(view, dns.message.make_query(name, rdtype))
    if result is FORWARD:
        return "forward"
    assert isinstance(result, dns.message.Message)
    if result.rcode() != dns.rcode.NOERROR:
        return dns.rcode.to_text(result.rcode())
    return " ".join(sorted(str(item) for rr in result.answer for item in rr)) or "empty"


def test_private_names_both_ways() -> None:
    v = _view()
    assert _ask(v, "ip-10-0-1-5.ec2.internal") == "10.0.1.5"
    assert _ask(v, "IP-10-1-0-4.EC2.INTERNAL") == "10.1.0.4"  # a secondary block; any case
    assert _ask(v, "ip-10-0-1-5.ec2.internal", "AAAA") == "empty"
    assert _ask(v, "ip-10-2-0-4.ec2.internal") == "NXDOMAIN"  # not in the VPC
    assert _ask(v, "ip-10-0-1-500.ec2.internal") == "NXDOMAIN"
    assert _ask(v, "web.ec2.internal") == "NXDOMAIN"
    assert _ask(v, "5.1.0.10.in-addr.arpa", "PTR") == "ip-10-0-1-5.ec2.internal."
    assert _ask(v, "5.1.168.192.in-addr.arpa", "PTR") == "NXDOMAIN"  # private: never asked
    assert _ask(v, "7.100.51.198.in-addr.arpa", "PTR") == "forward"


def test_other_regions() -> None:
    v = _view(region="eu-west-1", cidrs=("10.0.0.0/16",))
    assert _ask(v, "ip-10-0-1-5.eu-west-1.compute.internal") == "10.0.1.5"
    assert _ask(v, "ip-10-0-1-5.ec2.internal") == "forward"  # not this region's domain
    assert private_dns_name("10.0.1.5", "eu-west-1") == "ip-10-0-1-5.eu-west-1.compute.internal"
    assert public_dns_name("198.51.100.7", "eu-west-1") == \
        "ec2-198-51-100-7.eu-west-1.compute.amazonaws.com"
    assert "search eu-west-1.compute.internal\nnameserver 10.0.0.2" in \
        resolv_conf("10.0.0.2", "eu-west-1")


def test_private_and_public_hostnames_need_dns_hostnames() -> None:
    v = _view()
    assert _ask(v, "lambda.us-east-1.amazonaws.com") == "10.0.1.9 10.0.2.9"
    assert _ask(v, "ec2-198-51-100-7.compute-1.amazonaws.com") == "10.0.1.5"
    off = _view(dns_hostnames=False)
    assert _ask(off, "lambda.us-east-1.amazonaws.com") == "forward"
    assert _ask(off, "ec2-198-51-100-7.compute-1.amazonaws.com") == "forward"
    assert _ask(off, "ip-10-0-1-5.ec2.internal") == "10.0.1.5"  # private names stay


def test_everything_else_is_forwarded() -> None:
    assert _ask(_view(), "www.example.com") == "forward"
