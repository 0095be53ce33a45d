"""ModifyVpcEndpoint for interface endpoints: subnets added (an interface made in each) and
removed (its interface released), security groups added and removed (on the endpoint and on
every interface of it), private DNS switched, the policy replaced or reset — checked in full
before anything changes, with AWS's errors; then the store is written and the kernel follows
(`reconcile`). The endpoint part itself is service/vpc_endpoints.py."""
from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ..errors import ec2_error
from .vpc_endpoint_placement import placed_groups, placed_subnets

if TYPE_CHECKING:
    from .vpc_endpoints import VpcEndpoints


# the policy of an endpoint that was given none (and ResetPolicy's)
FULL_ACCESS_POLICY = ('{"Version":"2008-10-17","Statement":[{"Effect":"Allow","Principal":"*",'
                      '"Action":"*","Resource":"*"}]}')


def _ids(params: dict[str, Any], name: str) -> list[str]:
    return list(dict.fromkeys(params.get(name) or []))


def _check_modifiable(endpoint_id: str, state: str) -> None:
    """AWS serialises an endpoint's operations: while one is in progress (`pending`) a modify
    is refused with OperationInProgress and this message (seen from AWS by Terraform users,
    terraform-provider-aws #42875). While `deleting`: IncorrectState (not confirmed)."""
    if state == "pending":
        raise ec2_error("OperationInProgress", "VpcEndpoint modify operation in progress")
    if state != "available":
        raise ec2_error("IncorrectState",
                        f"The VPC endpoint {endpoint_id} is in state {state} and cannot be "
                        f"modified")


async def modify_vpc_endpoint(part: VpcEndpoints, region: str, params: dict[str, Any]) -> None:
    core = part.core
    core.ensure_region(region)
    if not params.get("VpcEndpointId"):
        raise ec2_error("MissingParameter",
                        "The request must contain the parameter VpcEndpointId")
    e = part.vpc_endpoint(region, params["VpcEndpointId"])
    _check_modifiable(e.id, e.state)
    if params.get("AddRouteTableIds") or params.get("RemoveRouteTableIds"):
        raise ec2_error("InvalidParameter",
                        "Route table IDs are only supported for Gateway type VPC Endpoint.")
    vpc = core.vpc(region, e.vpc_id)

    # subnets: what stays, what goes, what comes (one per zone, in the endpoint's VPC).
    # Removing one not attached is InvalidParameter: Terraform's subnet and security group
    # association resources take exactly that code from AWS as "already detached".
    removed = _ids(params, "RemoveSubnetIds")
    for sid in removed:
        core.subnet(region, sid)
        if sid not in e.subnet_ids:
            raise ec2_error("InvalidParameter",
                            f"The subnet ID '{sid}' is not part of the VPC endpoint '{e.id}'")
    kept = [(s, i) for s, i in zip(e.subnet_ids, e.eni_ids) if s not in removed]
    added = placed_subnets(vpc.id, (core.subnet(region, sid)
                                    for sid in _ids(params, "AddSubnetIds")),
                           [core.subnet(region, s) for s, _ in kept])

    # security groups: of the endpoint's VPC; at least one stays (AWS keeps one always; the
    # code for removing the last is not confirmed)
    groups = list(e.group_ids)
    for gid in _ids(params, "RemoveSecurityGroupIds"):
        core.group(region, gid)
        if gid not in groups:
            raise ec2_error("InvalidParameter",
                            f"The security group '{gid}' is not associated with the VPC "
                            f"endpoint '{e.id}'")
        groups.remove(gid)
    for gid in placed_groups(vpc.id, (core.group(region, gid)
                                      for gid in _ids(params, "AddSecurityGroupIds"))):
        if gid not in groups:
            groups.append(gid)
    if not groups:
        raise ec2_error("InvalidParameter",
                        "An interface VPC endpoint must have at least one security group")

    private_dns = e.private_dns
    if params.get("PrivateDnsEnabled") is not None:
        private_dns = bool(params["PrivateDnsEnabled"])
        if private_dns and not e.private_dns:
            part._check_private_dns(vpc, e.service_name)
    policy = e.policy
    if params.get("ResetPolicy"):
        policy = FULL_ACCESS_POLICY
    elif params.get("PolicyDocument"):
        policy = str(params["PolicyDocument"])

    # every check passed: the new interfaces first (released again if one fails)
    made = await part.make_interfaces(region, e.id, added, groups)
    gone = [i for s, i in zip(e.subnet_ids, e.eni_ids) if s in removed]
    with part.db.transaction():
        for _s, eni_id in kept:
            part.store.set_eni_groups(eni_id, tuple(groups))
        part.endpoint_store.put(replace(
            e, subnet_ids=tuple(s for s, _ in kept) + tuple(s.id for s in added),
            eni_ids=tuple(i for _, i in kept) + tuple(m.id for m in made),
            group_ids=tuple(groups), private_dns=private_dns, policy=policy))
    if gone:
        await part._release_interfaces(gone)  # reconciles too
    else:
        await core.reconcile()
