"""Every DescribeNetworkInterfaces filter AWS documents, as the values of one interface: its
addresses (primary, secondary, IPv6), attachment, Elastic IP association, groups, zone,
flags. Pure: VpcService (service/interfaces.py) passes in what it looked up."""
from __future__ import annotations

from ..store.ec2 import Eni, SecurityGroup, Subnet
from ..store.gateways import Address
from .ec2_filters import bool_text

FILTERS = ("addresses.private-ip-address", "addresses.primary",
           "addresses.association.public-ip", "addresses.association.owner-id",
           "association.association-id", "association.allocation-id",
           "association.ip-owner-id", "association.public-ip", "association.public-dns-name",
           "attachment.attachment-id", "attachment.attach-time",
           "attachment.delete-on-termination", "attachment.device-index",
           "attachment.instance-id", "attachment.instance-owner-id", "attachment.status",
           "availability-zone", "availability-zone-id", "description", "group-id",
           "group-name", "ipv6-addresses.ipv6-address", "interface-type", "mac-address",
           "network-interface-id", "operator.managed", "operator.principal", "owner-id",
           "private-dns-name", "private-ip-address", "requester-id", "requester-managed",
           "source-dest-check", "status", "subnet-id", "vpc-id")


def private_dns_name(region: str, ip: str) -> str:
    """AWS's IP-based name of an address: ip-10-0-1-5.ec2.internal in us-east-1,
    ip-10-0-1-5.<region>.compute.internal elsewhere."""
    host = "ip-" + ip.replace(".", "-")
    return f"{host}.ec2.internal" if region == "us-east-1" else \
        f"{host}.{region}.compute.internal"


def interface_filter_values(eni: Eni, subnet: Subnet | None, zone_id: str,
                            groups: dict[str, SecurityGroup], secondary: list[str],
                            ipv6: list[str], addresses: list[Address], account_id: str,
                            source_dest_check: bool) -> dict[str, list[str]]:
    elastic = [a for a in addresses if a.eni_id == eni.id]
    attached = eni.status == "in-use"
    owner = "amazon-aws" if eni.requester_managed else account_id
    return {
        "addresses.private-ip-address": [eni.ip, *secondary],
        "addresses.primary": ["true"] + ["false" for _ in secondary],
        "addresses.association.public-ip": [a.public_ip for a in elastic],
        "addresses.association.owner-id": [account_id for _ in elastic],
        "association.association-id": [a.association_id or "" for a in elastic],
        "association.allocation-id": [a.allocation_id for a in elastic],
        "association.ip-owner-id": [account_id for _ in elastic],
        "association.public-ip": [a.public_ip for a in elastic],
        "association.public-dns-name": [],  # no public DNS names here
        "attachment.attachment-id": ["ela-attach-" + eni.id[4:]] if attached else [],
        "attachment.attach-time": [],
        "attachment.delete-on-termination": ["false"] if attached else [],
        "attachment.device-index": ["0"] if attached else [],
        "attachment.instance-id": [],  # attached to no EC2 instance: a resource or Lambda
        "attachment.instance-owner-id": [owner] if attached else [],
        "attachment.status": ["attached"] if attached else [],
        "availability-zone": [subnet.az if subnet else ""],
        "availability-zone-id": [zone_id],
        "description": [eni.description],
        "group-id": list(eni.group_ids),
        "group-name": [groups[g].name for g in eni.group_ids if g in groups],
        "ipv6-addresses.ipv6-address": ipv6,
        "interface-type": [eni.interface_type],
        "mac-address": [eni.mac],
        "network-interface-id": [eni.id],
        "operator.managed": ["false"],
        "operator.principal": [],
        "owner-id": [account_id],
        "private-dns-name": [private_dns_name(eni.region, eni.ip)],
        "private-ip-address": [eni.ip, *secondary],
        "requester-id": ["AROA" + eni.id[4:].upper()] if eni.requester_managed else [],
        "requester-managed": [bool_text(eni.requester_managed)],
        "source-dest-check": [bool_text(source_dest_check)],
        "status": [eni.status],
        "subnet-id": [eni.subnet_id],
        "vpc-id": [eni.vpc_id],
    }
