"""Network ACL entries and Hyperplane ports (pure rendering): an `Ipv6CidrBlock` entry naming a
Hyperplane ENI's IPv6 address also matches that ENI's port (its flows carry transit addresses
until the NAT66 after the forward hook); an IPv4 entry naming its IPv4 address matches the port
for IPv4 only in a VPC with IPv6."""
from __future__ import annotations

from lambdaplane.model.network_acls import AclEntry
from lambdaplane.net.network_acls import AclPort, entry_lines

HP = AclPort("e7", "subnet-1", "10.0.1.9", ("fd00:1::9",))
PLAIN = AclPort("e8", "subnet-2")


def test_ipv6_entry_names_the_enis_ipv6_address() -> None:
    inbound = AclEntry("acl-1", False, 50, "6", False, "fd00:1::9/128", 80, 80)
    assert entry_lines(inbound, [HP], ipv6=True) == [
        "ip6 saddr fd00:1::9/128 meta l4proto tcp th dport 80 drop",
        'iifname { "e7" } meta nfproto ipv6 meta l4proto tcp th dport 80 drop']
    outbound = AclEntry("acl-1", True, 50, "-1", True, "fd00:1::/64")
    assert entry_lines(outbound, [HP], ipv6=True) == [
        "ip6 daddr fd00:1::/64 return", 'oifname { "e7" } meta nfproto ipv6 return']


def test_entries_naming_other_addresses_leave_the_port_alone() -> None:
    other = AclEntry("acl-1", False, 50, "6", False, "fd00:2::/64", 80, 80)
    assert entry_lines(other, [HP], ipv6=True) == [
        "ip6 saddr fd00:2::/64 meta l4proto tcp th dport 80 drop"]
    v4 = AclEntry("acl-1", False, 60, "-1", False, "10.0.1.9/32")
    assert entry_lines(v4, [HP], ipv6=True) == [
        "ip saddr 10.0.1.9/32 drop", 'iifname { "e7" } meta nfproto ipv4 drop']
    assert entry_lines(v4, [HP]) == ["ip saddr 10.0.1.9/32 drop", 'iifname { "e7" } drop']
