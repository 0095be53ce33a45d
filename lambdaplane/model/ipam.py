"""Subnet address arithmetic every layer shares (AWS's rules): a subnet's router address, its
five reserved addresses, its capacity. Pure functions; the checks with AWS errors and the
picking of free addresses are service/ipam.py's."""
from __future__ import annotations

import ipaddress


def gateway(subnet_cidr: str) -> str:
    """The subnet's router: its first usable address, as in AWS."""
    return str(ipaddress.IPv4Network(subnet_cidr).network_address + 1)


def reserved(subnet_cidr: str) -> set[str]:
    """Network, router (.1), DNS (.2), future use (.3) and broadcast."""
    net = ipaddress.IPv4Network(subnet_cidr)
    first = net.network_address
    return {str(first + i) for i in range(4)} | {str(net.broadcast_address)}


def capacity(subnet_cidr: str) -> int:
    return ipaddress.IPv4Network(subnet_cidr).num_addresses - 5
