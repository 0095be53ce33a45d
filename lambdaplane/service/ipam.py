"""Address management with AWS's rules: VPC and subnet CIDR sizes (/16–/28), subnets inside
their VPC without overlap, the five reserved addresses of every subnet (network, router .1,
DNS .2, future .3, broadcast), and picking a free address. Pure functions, no state."""
from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import TypeVar

from ..errors import ec2_error
from ..model.ipam import capacity as capacity  # re-exported: the arithmetic
from ..model.ipam import gateway as gateway
from ..model.ipam import reserved as reserved

MIN_PREFIX, MAX_PREFIX = 16, 28


_Network = TypeVar("_Network", ipaddress.IPv4Network, ipaddress.IPv6Network)


def _parse(kind: type[_Network], cidr: str, parameter: str, what: str) -> _Network:
    """The canonical network of `cidr` (host bits are dropped, as AWS does)."""
    try:
        return kind(cidr, strict=False)
    except ValueError:
        raise ec2_error("InvalidParameterValue",
                        f"Value ({cidr}) for parameter {parameter} is invalid. "
                        f"This is not a valid {what} block.") from None


def parse_cidr(cidr: str, parameter: str = "cidrBlock") -> ipaddress.IPv4Network:
    return _parse(ipaddress.IPv4Network, cidr, parameter, "CIDR")


def parse_ipv6_cidr(cidr: str, parameter: str) -> ipaddress.IPv6Network:
    return _parse(ipaddress.IPv6Network, cidr, parameter, "IPv6 CIDR")


def check_vpc_cidr(cidr: str) -> ipaddress.IPv4Network:
    net = parse_cidr(cidr)
    if not MIN_PREFIX <= net.prefixlen <= MAX_PREFIX:
        raise ec2_error("InvalidVpc.Range", f"The CIDR '{cidr}' is invalid.")
    return net


def check_subnet_cidr(cidr: str, vpc_cidr: str, siblings: Iterable[str]) -> ipaddress.IPv4Network:
    net = parse_cidr(cidr)
    vpc = ipaddress.IPv4Network(vpc_cidr)
    if not MIN_PREFIX <= net.prefixlen <= MAX_PREFIX or not net.subnet_of(vpc):
        raise ec2_error("InvalidSubnet.Range", f"The CIDR '{cidr}' is invalid.")
    for other in siblings:
        if net.overlaps(ipaddress.IPv4Network(other)):
            raise ec2_error("InvalidSubnet.Conflict",
                            f"The CIDR '{cidr}' conflicts with another subnet")
    return net


def check_requested(address: str, subnet_cidr: str, in_use: set[str]) -> str:
    try:
        ip = ipaddress.IPv4Address(address)
    except ValueError:
        raise ec2_error("InvalidParameterValue",
                        f"Value ({address}) for parameter privateIpAddress is invalid. "
                        "This is not a valid IP address.") from None
    if ip not in ipaddress.IPv4Network(subnet_cidr):
        raise ec2_error("InvalidParameterValue",
                        "Address does not fall within the subnet's address range")
    if str(ip) in reserved(subnet_cidr):
        raise ec2_error("InvalidParameterValue",
                        f"Address {ip} is in subnet's reserved address range")
    if str(ip) in in_use:
        raise ec2_error("InvalidIPAddress.InUse",
                        f"The specified address {ip} is already in use.")
    return str(ip)


def pick_free(subnet_cidr: str, in_use: set[str]) -> str:
    """The lowest free, unreserved address (AWS picks at random [?]; lowest is predictable)."""
    taken = in_use | reserved(subnet_cidr)
    for ip in ipaddress.IPv4Network(subnet_cidr):
        if str(ip) not in taken:
            return str(ip)
    raise ec2_error("InsufficientFreeAddressesInSubnet",
                    "The specified subnet does not have enough free addresses to satisfy the "
                    "request.")


def default_subnets(vpc_cidr: str, count: int) -> list[str]:
    """AWS's default subnets: consecutive /20s of the default VPC, one per zone."""
    return [str(n) for n in list(ipaddress.IPv4Network(vpc_cidr).subnets(new_prefix=20))[:count]]
