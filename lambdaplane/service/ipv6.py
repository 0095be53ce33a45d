"""IPv6 dual stack with AWS's rules: a VPC's Amazon-provided /56 (here from the unique-local
range fd00::/8, its 48 random bits drawn per association, unique across the store), a subnet's
/64 inside it (CreateSubnet Ipv6CidrBlock, Associate/DisassociateSubnetCidrBlock) and the
IPv6 addresses of network interfaces (Ipv6AddressCount / Ipv6Addresses on create,
AssignIpv6Addresses / UnassignIpv6Addresses, the subnet's AssignIpv6AddressOnCreation, one
address for every `lambdaplane run` resource in a subnet with a /64). As AWS does, associating
a VPC's first block adds the `::/0` outbound rule to its default security group, the IPv6
allow entries (101) to its default network ACL and the IPv6 `*` entries (32768) to all its
ACLs.

A part of VpcService by composition: `VpcService.ipv6` holds one, which uses the service's
lookups and `reconcile`. Writes the store only; the kernel follows (net/vpc.py, net/ipv6.py)."""
from __future__ import annotations

import hashlib
import ipaddress
import secrets
from typing import TYPE_CHECKING, Any

from ..errors import ec2_error
from ..store.ec2 import Eni, SgRule, Subnet, Vpc
from ..store.ec2_ipv6 import Ipv6Store, SubnetIpv6Cidr, VpcIpv6Cidr
from ..model.network_acls import AclEntry
from ..net.vpc import RESOLVER_IPV6
from .ec2_filters import bool_text
from .ec2_ids import new_id
from .ipam import parse_ipv6_cidr
from . import ipv6_only
from .sg_rules import new_rule_id

if TYPE_CHECKING:
    from .vpc import VpcService

ULA = ipaddress.IPv6Network("fd00::/8")
RESOLVER_ADDRESS6 = ipaddress.IPv6Address(RESOLVER_IPV6)  # the VPC resolver's (net/vpc.py)
ANY_V6 = "::/0"
VPC_PREFIX, SUBNET_PREFIX = 56, 64
MAX_VPC_BLOCKS = 5
# AWS: as many IPv6 addresses per interface as private IPv4 ones (service/private_ips.py)
MAX_ADDRESSES = 50
IPV6_STAR_RULE = 32768  # AWS lists the IPv6 `*` entry after the IPv4 one (32767)
IPV6_ALLOW_RULE = 101  # the default ACL's "allow all IPv6" entry, as AWS adds it


def vpc_block_for(seed: str, attempt: int = 0) -> ipaddress.IPv6Network:
    """A /56 in fd00::/8 from a seed (the association id): 48 bits of its digest."""
    digest = hashlib.sha256(f"{seed}/{attempt}".encode()).digest()
    prefix = int.from_bytes(digest[:6], "big")
    return ipaddress.IPv6Network(((0xFD << 120) | (prefix << 72), VPC_PREFIX))


def is_v6(cidr: str | None) -> bool:
    return bool(cidr) and ":" in str(cidr)


class Ipv6Addressing:
    """The IPv6 part of VpcService."""

    def __init__(self, svc: "VpcService") -> None:
        self.svc = svc
        self.store = Ipv6Store(svc.db)

    # reads --------------------------------------------------------------------------------------
    def vpc_blocks(self, vpc_id: str) -> list[VpcIpv6Cidr]:
        return [c for c in self.store.vpc_cidrs() if c.vpc_id == vpc_id]

    def subnet_blocks(self, subnet_id: str) -> list[SubnetIpv6Cidr]:
        return [c for c in self.store.subnet_cidrs() if c.subnet_id == subnet_id]

    def subnet_cidrs(self, subnet: Subnet) -> list[str]:
        return [c.cidr for c in self.subnet_blocks(subnet.id)]

    def addresses_of(self, eni_id: str) -> list[str]:
        return self.store.addresses().get(eni_id, [])

    def vpc_filter_values(self, vpc: Vpc) -> dict[str, list[str]]:
        blocks = self.vpc_blocks(vpc.id)
        return {"ipv6-cidr-block-association.ipv6-cidr-block": [b.cidr for b in blocks],
                "ipv6-cidr-block-association.ipv6-pool": ["Amazon" for _ in blocks],
                "ipv6-cidr-block-association.association-id":
                    [b.association_id for b in blocks],
                "ipv6-cidr-block-association.state": ["associated" for _ in blocks]}

    def subnet_filter_values(self, subnet: Subnet) -> dict[str, list[str]]:
        blocks = self.subnet_blocks(subnet.id)
        return {"ipv6-cidr-block-association.ipv6-cidr-block": [b.cidr for b in blocks],
                "ipv6-cidr-block-association.association-id":
                    [b.association_id for b in blocks],
                "ipv6-cidr-block-association.state": ["associated" for _ in blocks],
                "ipv6-native": [bool_text(subnet.ipv6_native)]}

    # VPC blocks ---------------------------------------------------------------------------------
    async def associate_vpc_block(self, region: str, p: dict[str, Any]
                                  ) -> tuple[Vpc, VpcIpv6Cidr]:
        svc = self.svc
        svc.ensure_region(region)
        if not p.get("VpcId"):
            raise ec2_error("MissingParameter", "The request must contain the parameter vpcId")
        vpc = svc.vpc(region, p["VpcId"])
        with svc.db.transaction():
            block = self._add_vpc_block(vpc, p)
        await svc.reconcile()
        return vpc, block

    def check_vpc_request(self, region: str, p: dict[str, Any]) -> None:
        """AWS's checks of the IPv6 parameters of CreateVpc / AssociateVpcCidrBlock."""
        if p.get("CidrBlock") and p.get("VpcId"):
            raise ec2_error("InvalidParameterCombination",
                            "The parameter cidrBlock cannot be used with the parameter "
                            "amazonProvidedIpv6CidrBlock")
        if p.get("Ipv6Pool") or p.get("Ipv6CidrBlock") or p.get("Ipv6IpamPoolId"):
            raise ec2_error("InvalidParameterValue",  # [?] no BYOIP pools or IPAM here
                            "Only Amazon-provided IPv6 CIDR blocks "
                            "(amazonProvidedIpv6CidrBlock) are available in lambdaplane")
        group = p.get("Ipv6CidrBlockNetworkBorderGroup")
        if group and group != region:
            raise ec2_error("InvalidParameterValue",
                            f"The network border group '{group}' is invalid for region "
                            f"{region}.")

    def _add_vpc_block(self, vpc: Vpc, p: dict[str, Any]) -> VpcIpv6Cidr:
        """In the caller's transaction: a new /56 for `vpc`, its default group's `::/0`
        egress and its default ACL's IPv6 entries."""
        self.check_vpc_request(vpc.region, p)
        if len(self.vpc_blocks(vpc.id)) >= MAX_VPC_BLOCKS:
            raise ec2_error("CidrLimitExceeded",
                            f"This network '{vpc.id}' has met its maximum number of allowed "
                            f"IPv6 CIDRs: {MAX_VPC_BLOCKS}")
        association_id = new_id("vpc-cidr-assoc")
        taken = {c.cidr for c in self.store.vpc_cidrs()}
        attempt = 0
        while str(vpc_block_for(association_id, attempt)) in taken or \
                RESOLVER_ADDRESS6 in vpc_block_for(association_id, attempt):  # never fd00:ec2::
            attempt += 1
        block = VpcIpv6Cidr(association_id, vpc.id, str(vpc_block_for(association_id, attempt)),
                            vpc.region)
        first = not self.vpc_blocks(vpc.id)
        self.store.add_vpc_cidr(block)
        if first:
            self._open_defaults(vpc)
        return block

    def _open_defaults(self, vpc: Vpc) -> None:
        svc = self.svc
        default = next((g for g in svc.store.groups(vpc.region)
                        if g.vpc_id == vpc.id and g.name == "default"), None)
        if default is not None and not any(r.egress and r.cidr == ANY_V6
                                           for r in svc.store.rules(default.id)):
            svc.store.add_rule(SgRule(new_rule_id(), default.id, True, "-1", -1, -1, ANY_V6,
                                      None))
        for acl in svc.acls.acls():  # every ACL of the VPC ends with the IPv6 `*` entries
            if acl.vpc_id != vpc.id:
                continue
            have = {(e.egress, e.rule_number) for e in svc.acls.entries(acl.id)}
            for egress in (False, True):
                if acl.is_default and (egress, IPV6_ALLOW_RULE) not in have:
                    svc.acls.put_entry(AclEntry(acl.id, egress, IPV6_ALLOW_RULE, "-1", True,
                                                ANY_V6))
                svc.acls.put_entry(AclEntry(acl.id, egress, IPV6_STAR_RULE, "-1", False,
                                            ANY_V6))

    def owns_association(self, association_id: str | None) -> bool:
        return any(c.association_id == association_id for c in self.store.vpc_cidrs())

    async def disassociate_vpc_block(self, region: str, association_id: str
                                     ) -> tuple[Vpc, VpcIpv6Cidr]:
        svc = self.svc
        block = next(c for c in self.store.vpc_cidrs() if c.association_id == association_id)
        vpc = svc.vpc(region, block.vpc_id)
        net = ipaddress.IPv6Network(block.cidr)
        if any(ipaddress.IPv6Network(c.cidr).subnet_of(net) for s in svc.store.subnets(region)
               if s.vpc_id == vpc.id for c in self.subnet_blocks(s.id)):
            raise ec2_error("InvalidCidrBlock.InUse",
                            f"The vpc {vpc.id} currently has a subnet within CIDR block "
                            f"{block.cidr}")
        with svc.db.transaction():
            self.store.delete_vpc_cidr(association_id)
        await svc.reconcile()
        return vpc, block

    # subnet blocks ------------------------------------------------------------------------------
    def _check_subnet_block(self, subnet_vpc: Vpc, cidr: str, subnet_id: str | None
                            ) -> ipaddress.IPv6Network:
        net = parse_ipv6_cidr(cidr, "ipv6CidrBlock")
        if net.prefixlen != SUBNET_PREFIX:
            raise ec2_error("InvalidParameterValue",
                            f"The IPv6 CIDR '{cidr}' is invalid. The prefix length must be "
                            f"/{SUBNET_PREFIX}.")
        blocks = [ipaddress.IPv6Network(b.cidr) for b in self.vpc_blocks(subnet_vpc.id)]
        if not any(net.subnet_of(b) for b in blocks):
            raise ec2_error("InvalidSubnet.Range",
                            f"The IPv6 CIDR '{cidr}' is not within the IPv6 CIDR blocks of "
                            f"VPC '{subnet_vpc.id}'.")
        for s in self.svc.store.subnets(subnet_vpc.region):
            if s.vpc_id == subnet_vpc.id and s.id != subnet_id and \
                    any(c.cidr == str(net) for c in self.subnet_blocks(s.id)):
                raise ec2_error("InvalidSubnet.Conflict",
                                f"The CIDR '{net}' conflicts with another subnet")
        return net

    def check_new_subnet(self, region: str, p: dict[str, Any]) -> None:
        """Before CreateSubnet makes anything: its IPv6 parameters are sound."""
        ipv6_only.check_create(p)  # Ipv6Native: service/ipv6_only.py
        if p.get("Ipv6IpamPoolId") or p.get("Ipv6NetmaskLength"):
            raise ec2_error("InvalidParameterValue",  # [?] no IPAM here
                            "IPAM pools are not available in lambdaplane")
        if p.get("Ipv6CidrBlock") and p.get("VpcId"):
            self._check_subnet_block(self.svc.vpc(region, p["VpcId"]), p["Ipv6CidrBlock"], None)

    async def add_subnet_block(self, region: str, subnet_id: str | None, cidr: str | None
                               ) -> tuple[Subnet, SubnetIpv6Cidr]:
        svc = self.svc
        svc.ensure_region(region)
        if not subnet_id:
            raise ec2_error("MissingParameter", "The request must contain the parameter subnetId")
        if not cidr:
            raise ec2_error("MissingParameter",
                            "The request must contain the parameter ipv6CidrBlock")
        subnet = svc.subnet(region, subnet_id)
        if self.subnet_blocks(subnet.id):
            raise ec2_error("InvalidParameterValue",  # [?] wording
                            f"The subnet '{subnet.id}' already has an IPv6 CIDR block "
                            "associated.")
        net = self._check_subnet_block(svc.vpc(region, subnet.vpc_id), cidr, subnet.id)
        block = SubnetIpv6Cidr(new_id("subnet-cidr-assoc"), subnet.id, str(net))
        with svc.db.transaction():
            self.store.add_subnet_cidr(block)
        await svc.reconcile()
        return subnet, block

    async def remove_subnet_block(self, region: str, association_id: str | None
                                  ) -> tuple[Subnet, SubnetIpv6Cidr]:
        svc = self.svc
        svc.ensure_region(region)
        if not association_id:
            raise ec2_error("MissingParameter",
                            "The request must contain the parameter associationId")
        block = next((c for c in self.store.subnet_cidrs()
                      if c.association_id == association_id), None)
        subnet = svc.store.subnet(block.subnet_id) if block else None
        if block is None or subnet is None or subnet.region != region:
            raise ec2_error("InvalidSubnetCidrBlockAssociationID.NotFound",
                            f"The subnet CIDR block with association ID '{association_id}' "
                            "does not exist")
        ipv6_only.check_disassociate(subnet, association_id)
        net = ipaddress.IPv6Network(block.cidr)
        for eni in svc.store.enis(region):
            if eni.subnet_id == subnet.id and any(ipaddress.IPv6Address(a) in net
                                                  for a in self.addresses_of(eni.id)):
                raise ec2_error("InvalidCidrBlock.InUse",  # [?] AWS's code
                                f"The subnet {subnet.id} has network interfaces with IPv6 "
                                f"addresses in {block.cidr}: {eni.id}")
        with svc.db.transaction():
            self.store.delete_subnet_cidr(association_id)
        await svc.reconcile()
        return subnet, block

    # interface addresses ------------------------------------------------------------------------
    def _pick(self, net: ipaddress.IPv6Network, taken: set[str]) -> str:
        while True:  # 2^64 interface ids: a collision is a retry, not a full subnet
            address = str(net.network_address + 4 + secrets.randbelow(net.num_addresses - 5))
            if address not in taken:
                return address

    def plan_addresses(self, subnet: Subnet, count: int | None, wanted: list[str],
                       eni_id: str | None = None) -> list[str]:
        """The addresses an interface of `subnet` gets: `wanted` checked, or `count` picked."""
        if count and wanted:
            raise ec2_error("InvalidParameterCombination",
                            "You may specify ipv6AddressCount or ipv6Addresses, but not both.")
        if not count and not wanted:
            return []
        if count is not None and count < 0:
            raise ec2_error("InvalidParameterValue",
                            f"Value ({count}) for parameter ipv6AddressCount is invalid.")
        have = len(self.addresses_of(eni_id)) if eni_id else 0
        if have + (count or 0) + len(wanted) > MAX_ADDRESSES:
            raise ec2_error("PrivateIpAddressLimitExceeded",  # [?] AWS's code for IPv6
                            f"Number of IPv6 addresses will exceed limit of {MAX_ADDRESSES} "
                            "per interface.")
        blocks = [ipaddress.IPv6Network(c) for c in self.subnet_cidrs(subnet)]
        if not blocks:
            raise ec2_error("InvalidParameterValue",  # [?] wording
                            f"The subnet '{subnet.id}' does not have an IPv6 CIDR block "
                            "associated.")
        taken = {a for e in self.svc.store.enis() if e.subnet_id == subnet.id
                 for a in self.addresses_of(e.id)}
        out: list[str] = []
        for text in wanted:
            try:
                address = ipaddress.IPv6Address(text)
            except ValueError:
                raise ec2_error("InvalidParameterValue",
                                f"Value ({text}) for parameter ipv6Addresses is invalid. "
                                "This is not a valid IPv6 address.") from None
            if not any(address in b for b in blocks):
                raise ec2_error("InvalidParameterValue",
                                f"Address {address} does not fall within the subnet's "
                                "IPv6 address range")
            if str(address) in taken or str(address) in out:
                raise ec2_error("InvalidIPAddress.InUse",
                                f"Address {address} is in use.")
            out.append(str(address))
        for _ in range(count or 0):
            out.append(self._pick(blocks[0], taken | set(out)))
        return out

    def on_create_count(self, subnet: Subnet, count: int | None, wanted: list[str],
                        resource: bool) -> int | None:
        """How many addresses a new interface gets unasked: one in a subnet that assigns them
        on creation, or for a `lambdaplane run` resource in a subnet with a /64."""
        if count or wanted or not self.subnet_cidrs(subnet):
            return count
        if resource or self.svc.subnet_settings(subnet).assign_ipv6_address_on_creation:
            return 1
        return count

    def record(self, eni_id: str, addresses: list[str]) -> None:
        """In the transaction that makes the interface."""
        if addresses:
            self.store.add_addresses(eni_id, addresses)

    async def assign(self, region: str, p: dict[str, Any]) -> tuple[Eni, list[str]]:
        svc = self.svc
        svc.ensure_region(region)
        if not p.get("NetworkInterfaceId"):
            raise ec2_error("MissingParameter",
                            "The request must contain the parameter networkInterfaceId")
        if p.get("Ipv6Prefixes") or p.get("Ipv6PrefixCount"):
            raise ec2_error("InvalidParameterValue",  # [?] prefix delegation is not here
                            "IPv6 prefix delegation is not available in lambdaplane")
        eni = svc.interface(region, p["NetworkInterfaceId"])
        wanted = [str(a) for a in p.get("Ipv6Addresses") or []]
        count = p.get("Ipv6AddressCount")
        if not wanted and not count:
            raise ec2_error("MissingParameter",
                            "The request must contain the parameter ipv6AddressCount or "
                            "ipv6Addresses")
        subnet = svc.subnet(region, eni.subnet_id)
        addresses = self.plan_addresses(subnet, count, wanted, eni.id)
        with svc.db.transaction():
            self.store.add_addresses(eni.id, addresses)
        await svc.reconcile()
        return eni, addresses

    async def unassign(self, region: str, p: dict[str, Any]) -> tuple[Eni, list[str]]:
        svc = self.svc
        svc.ensure_region(region)
        if not p.get("NetworkInterfaceId"):
            raise ec2_error("MissingParameter",
                            "The request must contain the parameter networkInterfaceId")
        eni = svc.interface(region, p["NetworkInterfaceId"])
        wanted = [str(a) for a in p.get("Ipv6Addresses") or []]
        if not wanted:
            raise ec2_error("MissingParameter",
                            "The request must contain the parameter ipv6Addresses")
        have = self.addresses_of(eni.id)
        normal: list[str] = []
        for text in wanted:
            try:
                address = str(ipaddress.IPv6Address(text))
            except ValueError:
                address = text
            if address not in have:
                raise ec2_error("UnassignIpv6Addresses.NotFound",  # [?] AWS's code
                                f"The IPv6 address {text} is not assigned to network "
                                f"interface {eni.id}")
            normal.append(address)
        if not eni.ip and not set(have) - set(normal):  # service/ipv6_only.py
            ipv6_only.keep_an_address(eni.id)
        with svc.db.transaction():
            self.store.delete_addresses(eni.id, normal)
        await svc.reconcile()
        return eni, normal
