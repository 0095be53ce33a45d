"""IPv6-only subnets (CreateSubnet `Ipv6Native=True`) with AWS's rules.

Such a subnet has a /64 of its VPC's IPv6 block and no IPv4 CIDR block (stored with an empty
`cidr`: `Subnet.ipv6_native`). As on AWS: it needs an `Ipv6CidrBlock` and refuses a
`CidrBlock`; DescribeSubnets shows `Ipv6Native: true` and no `CidrBlock`, IPv6 addresses
assigned on creation and resource-name hostnames (the settings' defaults, and the only values
ModifySubnetAttribute accepts for them); its network interfaces have no private IPv4 address
at all, only IPv6 ones (at least one, given on creation), so no secondary private IPv4
addresses, Elastic IPs or IPv4 subnet CIDR reservations either; its /64 stays while the subnet
lives, and each interface keeps one IPv6 address. An IPv4 route to such an interface is a
blackhole (net/gateway_routes.py). Lambda refuses such subnets (service/vpc_config.py), and the
managed interfaces that need an IPv4 address (NAT gateways, interface endpoints) are refused
here.

Pure checks on what the service passes in; the service writes the store."""
from __future__ import annotations

from typing import Any

from ..errors import ec2_error
from ..model.ec2 import Subnet

# What an IPv6-only subnet's settings must be (AWS: no IPv4 to map a public address to or to
# name a host after; every interface needs its IPv6 address): attribute → the value it keeps.
NATIVE_SETTINGS = {"MapPublicIpOnLaunch": "false", "AssignIpv6AddressOnCreation": "true",
                   "PrivateDnsHostnameTypeOnLaunch": "resource-name",
                   "EnableResourceNameDnsARecordOnLaunch": "false"}
# The managed interfaces that live on an IPv4 address (InterfaceType): refused in such subnets.
IPV4_INTERFACE_TYPES = ("nat_gateway", "vpc_endpoint", "lambda")


def _lower_first(name: str) -> str:
    return name[0].lower() + name[1:]


def check_create(p: dict[str, Any]) -> None:
    """CreateSubnet's parameters for an IPv6-only subnet, before anything is made."""
    if not p.get("Ipv6Native"):
        return
    if p.get("CidrBlock") or p.get("Ipv4IpamPoolId"):
        raise ec2_error("InvalidParameterCombination",  # [?] AWS's wording
                        "The parameter cidrBlock cannot be used with the parameter "
                        "ipv6Native. An IPv6-only subnet has no IPv4 CIDR block.")
    if not p.get("Ipv6CidrBlock"):
        raise ec2_error("MissingParameter",  # [?] AWS's wording
                        "The request must contain the parameter ipv6CidrBlock "
                        "when ipv6Native is true")


def check_attribute(subnet: Subnet, name: str, value: str) -> None:
    """ModifySubnetAttribute on an IPv6-only subnet: the settings it must keep stay."""
    if not subnet.ipv6_native or name not in NATIVE_SETTINGS or value == NATIVE_SETTINGS[name]:
        return
    raise ec2_error("InvalidParameterValue",  # [?] AWS's wording
                    f"Invalid value '{value}' for {_lower_first(name)}. Subnet {subnet.id} is "
                    f"an IPv6-only subnet: {_lower_first(name)} must be "
                    f"{NATIVE_SETTINGS[name]}.")


def check_interface(subnet: Subnet, interface_type: str, ip: str | None,
                    secondary_count: int | None, secondary_addresses: list[str] | None) -> None:
    """A new interface of an IPv6-only subnet asks for no private IPv4 address."""
    if not subnet.ipv6_native:
        return
    if ip or secondary_count or secondary_addresses:
        raise ec2_error("InvalidParameterCombination",  # [?] AWS's wording
                        f"Subnet {subnet.id} is an IPv6-only subnet: a network interface in "
                        "it cannot have private IPv4 addresses (privateIpAddress, "
                        "privateIpAddresses, secondaryPrivateIpAddressCount).")
    if interface_type in IPV4_INTERFACE_TYPES:
        raise ec2_error("InvalidSubnet",  # [?] AWS's wording
                        f"Subnet {subnet.id} is an IPv6-only subnet; a {interface_type} "
                        "network interface needs an IPv4 address.")


def refuse_ipv4(subnet: Subnet, what: str) -> None:
    """An IPv4-only operation (secondary private IPv4 addresses, an IPv4 reservation, an
    Elastic IP) on an interface or subnet of an IPv6-only subnet."""
    if subnet.ipv6_native:
        raise ec2_error("InvalidParameterValue",  # [?] AWS's wording
                        f"Subnet {subnet.id} is an IPv6-only subnet and has no IPv4 "
                        f"addresses: {what} is not possible.")


def check_disassociate(subnet: Subnet, association_id: str) -> None:
    """An IPv6-only subnet keeps its only block."""
    if subnet.ipv6_native:
        raise ec2_error("InvalidCidrBlock.InUse",  # [?] AWS's wording
                        f"The subnet IPv6 CIDR block with association ID {association_id} "
                        f"may not be disassociated, because subnet {subnet.id} is an "
                        "IPv6-only subnet.")


def keep_an_address(eni_id: str) -> None:
    """An interface without an IPv4 address keeps at least one IPv6 address."""
    raise ec2_error("InvalidParameterValue",  # [?] AWS's wording
                    f"Network interface {eni_id} is in an IPv6-only subnet and must keep at "
                    "least one IPv6 address.")
