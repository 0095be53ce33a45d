"""The settable attributes of VPCs and subnets with AWS's defaults and rules:
Describe/ModifyVpcAttribute (enableDnsSupport, enableDnsHostnames,
enableNetworkAddressUsageMetrics) and ModifySubnetAttribute (MapPublicIpOnLaunch,
PrivateDnsHostnameTypeOnLaunch, …), one attribute per call as AWS insists. A part of VpcService
(service/vpc.py), given its Ec2Core; the values live in store/ec2_attributes.py, absent
meaning AWS's default."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import ec2_error
from ..store.ec2 import Subnet, Vpc
from ..store.ec2_attributes import AttributeStore
from . import ipv6_only
from .ec2_core import Ec2Core
from .ec2_filters import bool_text

VPC_ATTRIBUTES = {  # the API's attribute name → the request/response member
    "enableDnsSupport": "EnableDnsSupport",
    "enableDnsHostnames": "EnableDnsHostnames",
    "enableNetworkAddressUsageMetrics": "EnableNetworkAddressUsageMetrics",
}
HOSTNAME_TYPES = ("ip-name", "resource-name")
_SUBNET_BOOLEANS = ("MapPublicIpOnLaunch", "AssignIpv6AddressOnCreation",
                    "MapCustomerOwnedIpOnLaunch", "EnableDns64",
                    "EnableResourceNameDnsARecordOnLaunch",
                    "EnableResourceNameDnsAAAARecordOnLaunch", "DisableLniAtDeviceIndex")
_SUBNET_OTHERS = ("PrivateDnsHostnameTypeOnLaunch", "CustomerOwnedIpv4Pool",
                  "EnableLniAtDeviceIndex")


@dataclass(frozen=True)
class SubnetSettings:
    """What DescribeSubnets shows of a subnet's launch-time settings."""
    map_public_ip_on_launch: bool
    assign_ipv6_address_on_creation: bool
    map_customer_owned_ip_on_launch: bool
    enable_dns64: bool
    hostname_type: str
    enable_resource_name_dns_a_record: bool
    enable_resource_name_dns_aaaa_record: bool


def _text(value: bool) -> str:
    return "true" if value else "false"


def one_attribute(given: list[str]) -> str:
    """The one attribute a ModifySubnetAttribute / ModifyNetworkInterfaceAttribute request
    sets (`given`: the members it sets): MissingParameter for none, InvalidParameterCombination
    (naming them in camelCase) for several."""
    if not given:
        raise ec2_error("MissingParameter",  # [?] AWS's code for none is undocumented
                        "The request must contain the parameter of an attribute to modify")
    if len(given) > 1:
        raise ec2_error("InvalidParameterCombination",
                        "Fields for multiple attribute types specified: "
                        f"{', '.join(g[0].lower() + g[1:] for g in given)}")
    return given[0]


def _given(params: dict[str, Any], names: tuple[str, ...]) -> list[str]:
    return [n for n in names if params.get(n) is not None]


class Ec2Attributes:
    """The VPC and subnet attribute part of VpcService."""

    def __init__(self, core: Ec2Core, attributes: AttributeStore,
                 refresh_dns_views: Callable[[], None],
                 ipv6_cidrs_of: Callable[[Subnet], list[str]]) -> None:
        self.core = core
        self.db = core.db
        self.attributes = attributes
        self.refresh_dns_views = refresh_dns_views  # service/vpc_dns.py
        self.ipv6_cidrs_of = ipv6_cidrs_of  # service/ipv6.py

    # VPCs --------------------------------------------------------------------------------
    def vpc_attributes(self, vpc: Vpc) -> dict[str, bool]:
        """Every VPC attribute by its API name. AWS: DNS support on; DNS hostnames on only
        in a default VPC; address usage metrics off."""
        stored = self.attributes.of(vpc.id)
        defaults = {"enableDnsSupport": True, "enableDnsHostnames": vpc.is_default,
                    "enableNetworkAddressUsageMetrics": False}
        return {name: stored.get(name, _text(default)) == "true"
                for name, default in defaults.items()}

    def describe_vpc_attribute(self, region: str, vpc_id: str | None,
                               attribute: str | None) -> tuple[Vpc, str, bool]:
        self.core.ensure_region(region)
        if not vpc_id:
            raise ec2_error("MissingParameter", "The request must contain the parameter vpcId")
        if not attribute:
            raise ec2_error("MissingParameter",
                            "The request must contain the parameter attribute")
        vpc = self.core.vpc(region, vpc_id)
        if attribute not in VPC_ATTRIBUTES:
            raise ec2_error("InvalidParameterValue",
                            f"Value ({attribute}) for parameter attribute is invalid. "
                            "Unknown attribute.")
        return vpc, attribute, self.vpc_attributes(vpc)[attribute]

    async def modify_vpc_attribute(self, region: str, params: dict[str, Any]) -> None:
        self.core.ensure_region(region)
        if not params.get("VpcId"):
            raise ec2_error("MissingParameter", "The request must contain the parameter vpcId")
        vpc = self.core.vpc(region, params["VpcId"])
        given = [name for name, member in VPC_ATTRIBUTES.items()
                 if (params.get(member) or {}).get("Value") is not None]
        if not given:
            raise ec2_error("MissingParameter",  # [?] AWS's code for none is undocumented
                            "The request must contain one of the parameters enableDnsSupport, "
                            "enableDnsHostnames or enableNetworkAddressUsageMetrics")
        if len(given) > 1:
            raise ec2_error("InvalidParameterCombination",
                            f"Fields for multiple attribute types specified: {', '.join(given)}")
        (name,) = given
        value = bool(params[VPC_ATTRIBUTES[name]]["Value"])
        current = self.vpc_attributes(vpc)
        if name == "enableDnsHostnames" and value and not current["enableDnsSupport"]:
            raise ec2_error("InvalidParameterCombination",  # [?] wording
                            "DNS hostnames can only be enabled in a VPC with DNS support "
                            "enabled (enableDnsSupport).")
        with self.db.transaction():
            self.attributes.set(vpc.id, name, _text(value))
        self.refresh_dns_views()  # DNS support and hostnames take effect at once

    # subnets -----------------------------------------------------------------------------
    def subnet_settings(self, subnet: Subnet) -> SubnetSettings:
        # an IPv6-only subnet's fixed settings (service/ipv6_only.py) over what is stored
        stored = {**self.attributes.of(subnet.id),
                  **(ipv6_only.NATIVE_SETTINGS if subnet.ipv6_native else {})}

        def flag(name: str, default: bool = False) -> bool:
            return stored.get(name, _text(default)) == "true"

        return SubnetSettings(
            map_public_ip_on_launch=flag("MapPublicIpOnLaunch", subnet.default_for_az),
            assign_ipv6_address_on_creation=flag("AssignIpv6AddressOnCreation"),
            map_customer_owned_ip_on_launch=flag("MapCustomerOwnedIpOnLaunch"),
            enable_dns64=flag("EnableDns64"),
            hostname_type=stored.get("PrivateDnsHostnameTypeOnLaunch", "ip-name"),
            enable_resource_name_dns_a_record=flag("EnableResourceNameDnsARecordOnLaunch"),
            enable_resource_name_dns_aaaa_record=flag("EnableResourceNameDnsAAAARecordOnLaunch"))

    def subnet_ipv6_cidrs(self, subnet: Subnet) -> list[str]:
        """The subnet's IPv6 CIDR blocks (service/ipv6.py)."""
        return self.ipv6_cidrs_of(subnet)

    async def modify_subnet_attribute(self, region: str, params: dict[str, Any]) -> None:
        self.core.ensure_region(region)
        if not params.get("SubnetId"):
            raise ec2_error("MissingParameter", "The request must contain the parameter subnetId")
        subnet = self.core.subnet(region, params["SubnetId"])
        given = _given(params, _SUBNET_BOOLEANS + _SUBNET_OTHERS)
        name = one_attribute(given)
        if name in _SUBNET_BOOLEANS:
            value = _text(bool(params[name].get("Value")))
        else:
            value = str(params[name])
        self._check_subnet_attribute(subnet, name, value)
        with self.db.transaction():
            self.attributes.set(subnet.id, name, value)
        if name == "EnableDns64":
            self.refresh_dns_views()  # the resolver's DNS64 takes effect at once

    def _check_subnet_attribute(self, subnet: Subnet, name: str, value: str) -> None:
        ipv6_only.check_attribute(subnet, name, value)
        ipv6 = bool(self.subnet_ipv6_cidrs(subnet))
        if name in ("AssignIpv6AddressOnCreation", "EnableResourceNameDnsAAAARecordOnLaunch",
                    "EnableDns64") and value == "true" and not ipv6:
            raise ec2_error("InvalidParameterValue",  # [?] wording
                            f"Invalid value 'true' for {name[0].lower() + name[1:]}. "
                            f"Subnet {subnet.id} has no IPv6 CIDR block.")
        if name == "PrivateDnsHostnameTypeOnLaunch" and value not in HOSTNAME_TYPES:
            raise ec2_error("InvalidParameterValue",
                            f"Value ({value}) for parameter privateDnsHostnameTypeOnLaunch is "
                            f"invalid. Valid values: {', '.join(HOSTNAME_TYPES)}.")
        if name in ("MapCustomerOwnedIpOnLaunch", "CustomerOwnedIpv4Pool",
                    "EnableLniAtDeviceIndex", "DisableLniAtDeviceIndex") and value != "false":
            raise ec2_error("InvalidParameterValue",  # [?] no Outposts here
                            f"The {name[0].lower() + name[1:]} attribute applies only to "
                            "subnets on an Outpost.")


SUBNET_SETTING_FILTERS = ("map-public-ip-on-launch", "map-customer-owned-ip-on-launch",
                          "enable-dns64", "ipv6-native", "enable-lni-at-device-index",
                          "private-dns-name-options-on-launch.hostname-type",
                          "private-dns-name-options-on-launch.enable-resource-name-dns-a-record",
                          "private-dns-name-options-on-launch."
                          "enable-resource-name-dns-aaaa-record")


def subnet_setting_attributes(s: SubnetSettings) -> dict[str, list[str]]:
    """DescribeSubnets' filter values of a subnet's launch settings."""
    return {"map-public-ip-on-launch": [bool_text(s.map_public_ip_on_launch)],
            "map-customer-owned-ip-on-launch": [bool_text(s.map_customer_owned_ip_on_launch)],
            "enable-dns64": [bool_text(s.enable_dns64)], "ipv6-native": ["false"],
            "private-dns-name-options-on-launch.hostname-type": [s.hostname_type],
            "private-dns-name-options-on-launch.enable-resource-name-dns-a-record":
                [bool_text(s.enable_resource_name_dns_a_record)],
            "private-dns-name-options-on-launch.enable-resource-name-dns-aaaa-record":
                [bool_text(s.enable_resource_name_dns_aaaa_record)]}
