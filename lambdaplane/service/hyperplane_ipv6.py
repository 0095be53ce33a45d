"""IPv6 of Hyperplane ENIs: Lambda's `Ipv6AllowedForDualStack`.

A Hyperplane ENI is shared by every function with its (subnet, groups) key. When any function
in use with that key allows dual stack and the subnet has an IPv6 /64, the ENI gets one IPv6
address of that /64 (picked like any interface's, shown by DescribeNetworkInterfaces): made
with it, or given it when such a function is created or reconfigured onto an existing ENI.
An ENI keeps its address while it lives. A function without the flag, or a subnet without
IPv6, leaves the ENI IPv4-only, exactly as before.

Only the store is written here (through VpcService); the data path that carries a sandbox's
IPv6 flows to the ENI's address is not part of this module."""
from __future__ import annotations

from ..model.vpc_config import VpcConfig
from ..store.hyperplane import EniKey, group_key
from .functions import FunctionService
from .vpc import VpcService


def allows_dual_stack(config: VpcConfig | None) -> bool:
    """Whether a function's VpcConfig asks for IPv6 (Ipv6AllowedForDualStack)."""
    return config is not None and config.ipv6_allowed_for_dual_stack


def wants_ipv6(vpc: VpcService, functions: FunctionService, key: EniKey) -> bool:
    """Whether an ENI of `key` should carry an IPv6 address: its subnet has a /64 and a
    configuration in use with that key allows dual stack."""
    subnet = vpc.store.subnet(key.subnet_id)
    if subnet is None or not vpc.ipv6.subnet_cidrs(subnet):
        return False
    for region, _name, config in functions.vpc_configs_in_use():
        if region != key.region or not allows_dual_stack(config):
            continue
        groups = group_key(list(config.security_group_ids))
        if groups == key.groups and key.subnet_id in config.subnet_ids:
            return True
    return False


async def ensure_address(vpc: VpcService, region: str, eni_id: str) -> bool:
    """Give an existing ENI one IPv6 address of its subnet's /64 unless it has one; returns
    whether it was given one."""
    if vpc.ipv6.addresses_of(eni_id):
        return False
    await vpc.ipv6.assign(region, {"NetworkInterfaceId": eni_id, "Ipv6AddressCount": 1})
    return True
