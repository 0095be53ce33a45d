"""Where an interface VPC endpoint's interfaces may go, checked the same way by
CreateVpcEndpoint (service/vpc_endpoints.py) and ModifyVpcEndpoint
(service/vpc_endpoint_edits.py), with AWS's errors: subnets of the endpoint's VPC, at most one
per availability zone; security groups of the endpoint's VPC."""
from __future__ import annotations

from collections.abc import Iterable

from ..errors import ec2_error
from ..store.ec2 import SecurityGroup, Subnet


def placed_subnets(vpc_id: str, subnets: Iterable[Subnet],
                   kept: Iterable[Subnet] = ()) -> list[Subnet]:
    """The subnets among `subnets` the endpoint does not have yet, each checked to be of the
    VPC and in a zone of its own; `kept` are the subnets the endpoint keeps (one left out of
    `subnets` is already there). Checked in order, as looked up (a generator looks each one
    up just before its check)."""
    kept = list(kept)
    zones = {s.az: s.id for s in kept}
    kept_ids = {s.id for s in kept}
    added: list[Subnet] = []
    for s in subnets:
        if s.vpc_id != vpc_id:
            raise ec2_error("InvalidParameter",
                            f"The subnet ID '{s.id}' does not belong to the VPC '{vpc_id}'")
        if s.id in kept_ids:
            continue  # already there: nothing to do
        if s.az in zones:
            raise ec2_error("DuplicateSubnetsInSameZone",
                            f"Found another VPC endpoint subnet in the availability zone of "
                            f"{s.id}: {zones[s.az]}")
        zones[s.az] = s.id
        added.append(s)
    return added


def placed_groups(vpc_id: str, groups: Iterable[SecurityGroup]) -> list[str]:
    """The ids of `groups`, each checked to be of the VPC."""
    ids: list[str] = []
    for g in groups:
        if g.vpc_id != vpc_id:
            raise ec2_error("InvalidParameter",
                            f"The security group '{g.id}' does not belong to the VPC "
                            f"'{vpc_id}'")
        ids.append(g.id)
    return ids
