"""A function's VpcConfig checked against the EC2 store, as Lambda checks it: at most 16
subnets and 5 security groups, both lists given or both empty (empty detaches), every subnet and
group existing in the function's region, all of them in one VPC, no IPv6-only subnet among
them. EC2's own errors come back wrapped the way Lambda wraps them ("Error occurred while
DescribeSubnets. EC2 Error Code: …").

Shared by the Hyperplane service and legacy mode; reads the store through VpcService, changes
nothing."""
from __future__ import annotations

from dataclasses import dataclass
from ..errors import AwsError, InvalidParameterValue, ValidationError
from ..model.vpc_config import VpcConfig
from .vpc import VpcService

MAX_SUBNETS = 16
MAX_SECURITY_GROUPS = 5


@dataclass(frozen=True)
class ValidatedVpcConfig:
    vpc_id: str  # "" when the function is not attached to a VPC
    subnet_ids: tuple[str, ...]  # sorted, without duplicates
    security_group_ids: tuple[str, ...]

    @property
    def attached(self) -> bool:
        return bool(self.subnet_ids)


def _invalid(message: str, reason_code: str) -> AwsError:
    """InvalidParameterValueException carrying the StateReasonCode a background check (the
    ENIs being made) reports for the same fault, in `extra["ReasonCode"]`."""
    error = InvalidParameterValue(message)
    error.extra["ReasonCode"] = reason_code
    return error


def _too_long(values: list[str], field: str, limit: int) -> AwsError:
    return ValidationError(
        f"1 validation error detected: Value '[{', '.join(values)}]' at 'vpcConfig.{field}' "
        f"failed to satisfy constraint: Member must have length less than or equal to {limit}")


def validate_vpc_config(vpc: VpcService, region: str,
                        vpc_config: VpcConfig | None) -> ValidatedVpcConfig:
    """Raise Lambda's error for a VpcConfig that cannot be used; return its normalised form."""
    subnets = list(vpc_config.subnet_ids) if vpc_config else []
    groups = list(vpc_config.security_group_ids) if vpc_config else []
    if len(subnets) > MAX_SUBNETS:
        raise _too_long(subnets, "subnetIds", MAX_SUBNETS)
    if len(groups) > MAX_SECURITY_GROUPS:
        raise _too_long(groups, "securityGroupIds", MAX_SECURITY_GROUPS)
    if not subnets and not groups:
        return ValidatedVpcConfig("", (), ())
    if not subnets or not groups:
        raise _invalid("SubnetIds and SecurityIds must coexist or be both empty list.",
                       "InvalidConfiguration")
    vpc_ids: set[str] = set()
    for subnet_id in dict.fromkeys(subnets):
        try:
            subnet = vpc.subnet(region, subnet_id)
        except AwsError as e:
            raise _invalid(f"Error occurred while DescribeSubnets. EC2 Error Code: {e.code}. "
                           f"EC2 Error Message: {e.message}", "InvalidSubnet") from None
        if subnet.ipv6_native:
            # AWS: Lambda supports dual-stack subnets only, not IPv6-only ones (with or without
            # Ipv6AllowedForDualStack). [?] the exact wording of AWS's message
            raise _invalid(f"Lambda doesn't support IPv6-only subnets. Subnet {subnet.id} is "
                           "an IPv6-only subnet; use dual-stack subnets instead.",
                           "InvalidSubnet")
        vpc_ids.add(subnet.vpc_id)
    if len(vpc_ids) > 1:
        # [?] AWS's wording for subnets of several VPCs is not documented.
        raise _invalid("Subnets are required to be in the same VPC.", "InvalidSubnet")
    (vpc_id,) = vpc_ids
    for group_id in dict.fromkeys(groups):
        try:
            group = vpc.group(region, group_id)
        except AwsError as e:
            raise _invalid(f"Error occurred while DescribeSecurityGroups. EC2 Error Code: "
                           f"{e.code}. EC2 Error Message: {e.message}",
                           "InvalidSecurityGroup") from None
        if group.vpc_id != vpc_id:
            raise _invalid("Security Groups are required to be in the same VPC.",
                           "InvalidSecurityGroup")
    return ValidatedVpcConfig(vpc_id, tuple(sorted(set(subnets))), tuple(sorted(set(groups))))
