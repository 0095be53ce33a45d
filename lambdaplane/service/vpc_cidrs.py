"""Secondary IPv4 CIDR blocks of a VPC with AWS's rules (AssociateVpcCidrBlock /
DisassociateVpcCidrBlock): /16–/28, no overlap with the VPC's other blocks, from the same
RFC 1918 range as the primary block or a publicly routable / 100.64.0.0/10 one, never
198.19.0.0/16, not the same as or larger than a route's destination, five blocks at most; a
block with subnets in it stays. Every route table of the VPC gets a `local` route per block.
Subnets in a secondary block are routed like the primary's (the VPC namespace routes per
interface, whatever the block). A part of VpcService (service/vpc.py), given its Ec2Core."""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from ..errors import ec2_error
from ..store.ec2 import Vpc
from ..store.ec2_routes import Route, RouteStore
from ..store.ec2_vpc_cidrs import VpcCidr, VpcCidrStore
from . import ipam
from .ec2_core import Ec2Core
from .ec2_ids import new_id

MAX_CIDRS = 5
RFC1918 = tuple(ipaddress.IPv4Network(n) for n in ("10.0.0.0/8", "172.16.0.0/12",
                                                     "192.168.0.0/16"))
RESTRICTED = ipaddress.IPv4Network("198.19.0.0/16")


@dataclass(frozen=True)
class CidrAssociation:
    association_id: str
    cidr: str
    primary: bool


def _private_range(net: ipaddress.IPv4Network) -> ipaddress.IPv4Network | None:
    return next((r for r in RFC1918 if net.subnet_of(r)), None)


def check_secondary_range(primary: ipaddress.IPv4Network, new: ipaddress.IPv4Network) -> None:
    """AWS's table of the ranges a secondary block may come from, given the primary's."""
    home, wanted = _private_range(primary), _private_range(new)
    restricted = new.overlaps(RESTRICTED) or (wanted is not None and wanted != home)
    if home == RFC1918[1] and new.overlaps(ipaddress.IPv4Network("172.31.0.0/16")):
        restricted = True  # the default VPCs' range
    if home == RFC1918[0] and primary.subnet_of(ipaddress.IPv4Network("10.0.0.0/15")) and \
            new.overlaps(ipaddress.IPv4Network("10.0.0.0/16")):
        restricted = True
    if restricted:
        raise ec2_error("InvalidVpc.Range",
                        f"The CIDR '{new}' is restricted. Use a CIDR from the same private "
                        "address range as the current VPC CIDR, or use a publicly-routable "
                        "CIDR.")


class VpcCidrs:
    """The secondary CIDR part of VpcService."""

    def __init__(self, core: Ec2Core, routes: RouteStore, vpc_cidr_store: VpcCidrStore) -> None:
        self.core = core
        self.db, self.store = core.db, core.store
        self.routes = routes
        self.vpc_cidr_store = vpc_cidr_store

    def cidr_associations(self, vpc: Vpc) -> list[CidrAssociation]:
        """The VPC's IPv4 blocks, the primary first."""
        # the primary block's association id is derived from the VPC id: stable, never stored
        primary = CidrAssociation("vpc-cidr-assoc-" + vpc.id[4:], vpc.cidr, True)
        return [primary] + [CidrAssociation(c.association_id, c.cidr, False)
                            for c in self.vpc_cidr_store.all() if c.vpc_id == vpc.id]

    def vpc_cidrs(self, vpc: Vpc) -> list[str]:
        return [a.cidr for a in self.cidr_associations(vpc)]

    def containing_cidr(self, vpc: Vpc, cidr: str) -> str:
        """The VPC block a subnet CIDR lies in (the primary when none: ipam refuses it)."""
        net = ipam.parse_cidr(cidr)
        return next((c for c in self.vpc_cidrs(vpc)
                     if net.subnet_of(ipaddress.IPv4Network(c))), vpc.cidr)

    async def associate_vpc_cidr_block(self, region: str,
                                       p: dict[str, Any]) -> tuple[Vpc, CidrAssociation]:
        self.core.ensure_region(region)
        if not p.get("VpcId"):
            raise ec2_error("MissingParameter", "The request must contain the parameter vpcId")
        vpc = self.core.vpc(region, p["VpcId"])
        if p.get("AmazonProvidedIpv6CidrBlock") or p.get("Ipv6CidrBlock") or \
                p.get("Ipv6Pool") or p.get("Ipv6IpamPoolId") or p.get("Ipv4IpamPoolId"):
            raise ec2_error("InvalidParameterValue",  # [?] IPv6 and IPAM are not here yet
                            "IPv6 CIDR blocks and IPAM pools are not supported by lambdaplane "
                            "yet")
        if not p.get("CidrBlock"):
            raise ec2_error("MissingParameter", "The request must contain the parameter cidrBlock")
        net = ipam.check_vpc_cidr(p["CidrBlock"])
        have = self.cidr_associations(vpc)
        if len(have) >= MAX_CIDRS:
            raise ec2_error("CidrLimitExceeded",
                            f"This network '{vpc.id}' has met its maximum number of allowed "
                            f"CIDRs: {MAX_CIDRS}")
        for a in have:
            if net.overlaps(ipaddress.IPv4Network(a.cidr)):
                raise ec2_error("InvalidVpc.Range",  # [?] wording
                                f"The CIDR '{net}' conflicts with another CIDR block "
                                f"'{a.cidr}' of VPC '{vpc.id}'.")
        check_secondary_range(ipaddress.IPv4Network(vpc.cidr), net)
        tables = [t for t in self.routes.tables() if t.vpc_id == vpc.id]
        for t in tables:
            for r in self.routes.routes(t.id):
                if r.origin != "CreateRouteTable" and \
                        ipaddress.IPv4Network(r.destination).subnet_of(net):
                    raise ec2_error("InvalidVpc.Range",  # [?] wording
                                    f"The CIDR '{net}' is the same as or larger than the "
                                    f"destination {r.destination} of a route in {t.id}.")
        assoc = VpcCidr(new_id("vpc-cidr-assoc"), vpc.id, str(net))
        with self.db.transaction():
            self.vpc_cidr_store.add(assoc)
            for t in tables:
                self.routes.put_route(Route(t.id, str(net), "GatewayId", "local",
                                            "CreateRouteTable"))
        await self.core.reconcile()
        return vpc, CidrAssociation(assoc.association_id, assoc.cidr, False)

    async def disassociate_vpc_cidr_block(self, region: str, association_id: str | None
                                          ) -> tuple[Vpc, CidrAssociation]:
        self.core.ensure_region(region)
        if not association_id:
            raise ec2_error("MissingParameter",
                            "The request must contain the parameter associationId")
        for vpc in self.store.vpcs(region):
            found = next((a for a in self.cidr_associations(vpc)
                          if a.association_id == association_id), None)
            if found is not None:
                break
        else:
            raise ec2_error("InvalidVpcCidrBlockAssociationID.NotFound",  # [?] code
                            f"The vpc CIDR block association ID '{association_id}' does not "
                            "exist")
        if found.primary:
            raise ec2_error("OperationNotPermitted",  # [?] code
                            f"The vpc CIDR block with association ID {association_id} may not "
                            "be disassociated. It is the primary IPv4 CIDR block of the VPC")
        block = ipaddress.IPv4Network(found.cidr)
        if any(s.vpc_id == vpc.id and s.cidr and ipaddress.IPv4Network(s.cidr).subnet_of(block)
               for s in self.store.subnets(region)):
            raise ec2_error("InvalidCidrBlock.InUse",
                            f"The vpc {vpc.id} currently has a subnet within CIDR block "
                            f"{found.cidr}")
        with self.db.transaction():
            self.vpc_cidr_store.delete(association_id)
            for t in self.routes.tables():
                if t.vpc_id == vpc.id:
                    self.routes.delete_route(t.id, found.cidr)
        await self.core.reconcile()
        return vpc, found
