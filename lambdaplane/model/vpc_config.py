"""A function's VpcConfig, parsed once: the subnets and security groups asked for (sorted, as
Lambda answers them), whether IPv6 is allowed for dual stack, and the VPC id once the subnets
have been checked. service/function_config.py makes it from a request, store/functions.py
keeps it in the record's JSON in Lambda's wire shape (so data dirs of earlier versions read
back unchanged), api/ answers it with `to_wire`; service/vpc_config.py checks it."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class VpcConfig:
    subnet_ids: tuple[str, ...] = ()
    security_group_ids: tuple[str, ...] = ()
    ipv6_allowed_for_dual_stack: bool = False
    vpc_id: str = ""  # "" until the subnets are checked, and for a detached function

    @property
    def attached(self) -> bool:
        """Lambda attaches a function to a VPC when subnets are given (an empty list detaches)."""
        return bool(self.subnet_ids)

    @classmethod
    def from_request(cls, params: Mapping[str, object] | None) -> VpcConfig:
        """The VpcConfig of CreateFunction/UpdateFunctionConfiguration (the VPC id unknown)."""
        params = params or {}
        return cls(tuple(sorted(_strings(params.get("SubnetIds")))),
                   tuple(sorted(_strings(params.get("SecurityGroupIds")))),
                   bool(params.get("Ipv6AllowedForDualStack", False)))

    @classmethod
    def from_wire(cls, data: Mapping[str, object]) -> VpcConfig:
        """Read back what `to_wire` wrote (kept as given, VpcId included)."""
        return cls(tuple(_strings(data.get("SubnetIds"))),
                   tuple(_strings(data.get("SecurityGroupIds"))),
                   bool(data.get("Ipv6AllowedForDualStack", False)), str(data.get("VpcId") or ""))

    def to_wire(self) -> dict[str, object]:
        """Lambda's VpcConfigResponse shape (also the stored shape)."""
        return {"SubnetIds": list(self.subnet_ids),
                "SecurityGroupIds": list(self.security_group_ids),
                "Ipv6AllowedForDualStack": self.ipv6_allowed_for_dual_stack,
                "VpcId": self.vpc_id}

    def with_vpc_id(self, vpc_id: str) -> VpcConfig:
        return replace(self, vpc_id=vpc_id)


def _strings(value: object) -> list[str]:
    return [str(v) for v in value] if isinstance(value, (list, tuple)) else []
