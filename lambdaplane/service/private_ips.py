"""Several private IPv4 addresses per network interface, with AWS's rules: the secondary
addresses of CreateNetworkInterface (`SecondaryPrivateIpAddressCount`, `PrivateIpAddresses`),
AssignPrivateIpAddresses (a count or given addresses; `AllowReassignment` moves a secondary
address from another interface of the subnet) and UnassignPrivateIpAddresses. Addresses come
from the interface's subnet, never reserved or taken ones; a `lambdaplane run` resource holds
them all in its namespace (net/vpc.py), so each is reachable like the primary.

A part of VpcService by composition (`VpcService.private_ips`). Writes the store only."""
from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Any

from ..errors import ec2_error
from ..store.ec2 import Eni, Subnet
from ..store.ec2_private_ips import PrivateIpStore
from . import ipam, ipv6_only

if TYPE_CHECKING:
    from .vpc import VpcService

MAX_ADDRESSES = 50  # per interface, primary included: AWS's most for one interface [?]


class PrivateIps:
    """The secondary IPv4 part of VpcService."""

    def __init__(self, svc: "VpcService") -> None:
        self.svc = svc
        self.store = PrivateIpStore(svc.db)

    def of(self, eni_id: str) -> list[str]:
        return self.store.all().get(eni_id, [])

    def taken_in(self, subnet: Subnet) -> set[str]:
        """Every address of the subnet's interfaces, primary and secondary."""
        secondary = self.store.all()
        return {a for e in self.svc.store.enis() if e.subnet_id == subnet.id
                for a in (e.ip, *secondary.get(e.id, []))}

    def plan(self, subnet: Subnet, count: int | None, wanted: list[str], have: int,
             reassign: bool = False, eni_id: str | None = None,
             also_taken: frozenset[str] = frozenset()) -> tuple[list[str], list[str]]:
        """The addresses to add (and, with `reassign`, those to take from other interfaces)."""
        if count and wanted:
            raise ec2_error("InvalidParameterCombination",
                            "You may specify secondaryPrivateIpAddressCount or specific "
                            "private IP addresses, but not both.")
        if count is not None and count < 0 or count == 0 and not wanted:
            raise ec2_error("InvalidParameterValue",
                            f"Value ({count}) for parameter secondaryPrivateIpAddressCount is "
                            "invalid.")
        if have + (count or 0) + len(wanted) > MAX_ADDRESSES:
            raise ec2_error("PrivateIpAddressLimitExceeded",
                            f"Number of private addresses will exceed limit of {MAX_ADDRESSES} "
                            "per interface.")
        ipv6_only.refuse_ipv4(subnet, "a secondary private IPv4 address")
        taken = self.taken_in(subnet) | also_taken
        moved: list[str] = []
        out: list[str] = []
        for text in wanted:
            owner = self.store.owner(subnet.vpc_id, text)
            if reassign and owner is not None and owner != eni_id:
                moved.append(text)
                in_use = (taken | set(out)) - {text}
            else:
                in_use = taken | set(out)
            out.append(ipam.check_requested(text, subnet.cidr, in_use))
        for _ in range(count or 0):
            # addresses in a subnet CIDR reservation are given only when asked for by name
            out.append(ipam.pick_free(subnet.cidr, taken | set(out) |
                                      self.svc.reserved_addresses(subnet)))
        return out, moved

    def record(self, eni: Eni, addresses: list[str]) -> None:
        """In the transaction that makes the interface."""
        if addresses:
            self.store.add(eni.id, eni.vpc_id, addresses)

    def _interface(self, region: str, p: dict[str, Any]) -> Eni:
        svc = self.svc
        svc.ensure_region(region)
        if not p.get("NetworkInterfaceId"):
            raise ec2_error("MissingParameter",
                            "The request must contain the parameter networkInterfaceId")
        if p.get("Ipv4Prefixes") or p.get("Ipv4PrefixCount"):
            raise ec2_error("InvalidParameterValue",  # [?] prefix delegation is not here
                            "IPv4 prefix delegation is not available in lambdaplane")
        eni = svc.interface(region, p["NetworkInterfaceId"])
        if eni.requester_managed:
            raise ec2_error("OperationNotPermitted",  # [?] code
                            f"The network interface '{eni.id}' is managed by a service and "
                            "cannot be modified.")
        return eni

    async def assign(self, region: str, p: dict[str, Any]) -> tuple[Eni, list[str]]:
        svc = self.svc
        eni = self._interface(region, p)
        wanted = [str(a) for a in p.get("PrivateIpAddresses") or []]
        count = p.get("SecondaryPrivateIpAddressCount")
        if not wanted and count is None:
            raise ec2_error("MissingParameter",
                            "The request must contain the parameter "
                            "secondaryPrivateIpAddressCount or privateIpAddress")
        subnet = svc.subnet(region, eni.subnet_id)
        addresses, moved = self.plan(subnet, count, wanted, 1 + len(self.of(eni.id)),
                                     bool(p.get("AllowReassignment")), eni.id)
        with svc.db.transaction():
            for address in moved:
                owner = self.store.owner(subnet.vpc_id, address)
                if owner is not None:
                    self.store.delete(owner, [address])
            self.store.add(eni.id, eni.vpc_id, addresses)
        await svc.reconcile()
        return eni, addresses

    async def unassign(self, region: str, p: dict[str, Any]) -> Eni:
        svc = self.svc
        eni = self._interface(region, p)
        wanted = [str(a) for a in p.get("PrivateIpAddresses") or []]
        if not wanted:
            raise ec2_error("MissingParameter",
                            "The request must contain the parameter privateIpAddress")
        have = self.of(eni.id)
        for text in wanted:
            if text == eni.ip:
                raise ec2_error("InvalidParameterValue",  # [?] wording
                                f"The primary IP address {text} of network interface {eni.id} "
                                "cannot be unassigned.")
            try:
                ipaddress.IPv4Address(text)
            except ValueError:
                raise ec2_error("InvalidParameterValue",
                                f"Value ({text}) for parameter privateIpAddress is invalid. "
                                "This is not a valid IP address.") from None
            if text not in have:
                raise ec2_error("InvalidParameterValue",  # [?] wording
                                f"Some of the specified addresses are not assigned to "
                                f"interface {eni.id}")
        with svc.db.transaction():
            self.store.delete(eni.id, wanted)
        await svc.reconcile()
        return eni
