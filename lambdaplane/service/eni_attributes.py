"""Network interface attributes with AWS's rules (Describe/Modify/ResetNetworkInterfaceAttribute):
the description, the security groups (1 to 5, of the interface's VPC; the kernel follows at
once) and SourceDestCheck, one attribute per call. Interfaces the service manages (Lambda's
Hyperplane ENIs) are not the user's to change. A part of VpcService (service/vpc.py), given
its Ec2Core."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import ec2_error
from ..store.ec2 import Eni
from ..store.ec2_attributes import AttributeStore
from .ec2_attributes import one_attribute
from .ec2_core import Ec2Core

MAX_GROUPS = 5
ATTRIBUTES = ("description", "groupSet", "sourceDestCheck", "attachment",
              "associatePublicIpAddress")
_MODIFIABLE = ("Description", "SourceDestCheck", "Groups", "Attachment",
               "AssociatePublicIpAddress", "EnaSrdSpecification", "EnablePrimaryIpv6",
               "ConnectionTrackingSpecification", "AssociatedSubnetIds")


def source_dest_check(attributes: AttributeStore, eni: Eni) -> bool:
    return attributes.of(eni.id).get("SourceDestCheck", "true") == "true"


class EniAttributes:
    """The interface attribute part of VpcService."""

    def __init__(self, core: Ec2Core, attributes: AttributeStore,
                 interface: Callable[[str, str], Eni]) -> None:
        self.core = core
        self.db, self.store = core.db, core.store
        self.attributes = attributes
        self.interface = interface  # service/interfaces.py

    def source_dest_check(self, eni: Eni) -> bool:
        return source_dest_check(self.attributes, eni)

    def _eni(self, region: str, eni_id: str | None) -> Eni:
        if not eni_id:
            raise ec2_error("MissingParameter",
                            "The request must contain the parameter networkInterfaceId")
        return self.interface(region, eni_id)

    def describe_interface_attribute(self, region: str, eni_id: str | None,
                                     attribute: str | None) -> tuple[Eni, str]:
        self.core.ensure_region(region)
        eni = self._eni(region, eni_id)
        if not attribute:
            raise ec2_error("MissingParameter",
                            "The request must contain the parameter attribute")
        if attribute not in ATTRIBUTES:
            raise ec2_error("InvalidParameterValue",
                            f"Value ({attribute}) for parameter attribute is invalid. "
                            "Unknown attribute.")
        return eni, attribute

    async def modify_interface_attribute(self, region: str, p: dict[str, Any]) -> None:
        self.core.ensure_region(region)
        eni = self._eni(region, p.get("NetworkInterfaceId"))
        given = [n for n in _MODIFIABLE if p.get(n) not in (None, [], {})]
        name = one_attribute(given)
        if eni.requester_managed:
            raise ec2_error("OperationNotPermitted",  # [?] code
                            f"The network interface '{eni.id}' is managed by a service and "
                            "cannot be modified.")
        if name == "Description":
            text = str((p["Description"] or {}).get("Value") or "")
            with self.db.transaction():
                self.store.set_eni_description(eni.id, text)
        elif name == "SourceDestCheck":
            value = "true" if (p["SourceDestCheck"] or {}).get("Value") else "false"
            with self.db.transaction():
                self.attributes.set(eni.id, "SourceDestCheck", value)
        elif name == "Groups":
            await self._set_groups(region, eni, list(p["Groups"]))
        else:
            raise ec2_error("InvalidParameterValue",  # [?] no attachments/IPv6/ENA here
                            f"The attribute {name[0].lower() + name[1:]} is not supported by "
                            "lambdaplane for this interface")

    async def _set_groups(self, region: str, eni: Eni, group_ids: list[str]) -> None:
        groups = [self.core.group(region, g) for g in dict.fromkeys(group_ids)]
        if len(groups) > MAX_GROUPS:
            raise ec2_error("SecurityGroupsPerInterfaceLimitExceeded",
                            "You have exceeded the maximum number of security groups allowed "
                            "per network interface.")
        for g in groups:
            if g.vpc_id != eni.vpc_id:
                raise ec2_error("InvalidParameterValue",  # [?] wording
                                f"The security group '{g.id}' does not belong to VPC "
                                f"'{eni.vpc_id}'")
        with self.db.transaction():
            self.store.set_eni_groups(eni.id, tuple(g.id for g in groups))
        await self.core.reconcile()

    async def reset_interface_attribute(self, region: str, eni_id: str | None,
                                        attribute: str | None) -> None:
        self.core.ensure_region(region)
        eni = self._eni(region, eni_id)
        if attribute != "sourceDestCheck":
            raise ec2_error("InvalidParameterValue",
                            f"Value ({attribute}) for parameter sourceDestCheck is invalid. "
                            "Only sourceDestCheck can be reset.")
        with self.db.transaction():
            self.attributes.set(eni.id, "SourceDestCheck", "true")
