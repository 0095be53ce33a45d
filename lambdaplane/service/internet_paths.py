"""Why a subnet's functions and resources do or do not reach the internet, with the fix: the
route tables, internet gateways and NAT gateways of every VPC as `lambdaplane net show`
prints them. Pure reading of the store, by the same rules net/gateways.py applies to the
kernel (a function's Hyperplane ENI never has a public address: only a NAT gateway lets it
out, as on AWS)."""
from __future__ import annotations

from typing import Any


def _effective_table(svc: Any, subnet_id: str, vpc_id: str) -> str | None:
    assocs = svc.routes.associations()
    explicit = next((a.route_table_id for a in assocs if a.subnet_id == subnet_id), None)
    table: str | None = explicit or svc.main_route_table(vpc_id)
    return table


def _default_route(svc: Any, table_id: str | None) -> Any:
    if table_id is None:
        return None
    return next((v for v in svc.route_views(table_id)
                 if v.route.destination == "0.0.0.0/0"), None)


def _nat_works(svc: Any, nat: Any) -> str:
    """"" when NAT gateway `nat` gets flows out, else why not."""
    if nat.state != "available":
        return f"NAT gateway {nat.id} is {nat.state}"
    if nat.connectivity != "public":
        return f"NAT gateway {nat.id} is private (ConnectivityType private): it does not " \
               "lead to the internet"
    route = _default_route(svc, _effective_table(svc, nat.subnet_id, nat.vpc_id))
    if route is None or route.state != "active" or not route.route.target_id.startswith("igw-"):
        return (f"NAT gateway {nat.id}'s subnet {nat.subnet_id} has no active route "
                "0.0.0.0/0 to an internet gateway (fix: route it to the VPC's internet "
                "gateway — a NAT gateway must sit in a public subnet)")
    return ""


def subnet_paths(svc: Any, subnet: Any) -> dict[str, Any]:
    """What a function and a resource in `subnet` get, and why."""
    table = _effective_table(svc, subnet.id, subnet.vpc_id)
    route = _default_route(svc, table)
    no_internet_here = "" if svc.settings.internet_netns else \
        " (this server has no internet for VPCs: it runs with --no-uplink and no " \
        "--internet-netns)"
    out: dict[str, Any] = {"route_table": table, "default_route": None}
    if route is None:
        why = (f"no route to 0.0.0.0/0 in {table}: a private subnet without a NAT gateway")
        fix = (f"create a NAT gateway in a public subnet (one routed to an internet gateway) "
               f"and add 0.0.0.0/0 → nat-… to {table}")
        out.update(function=(False, why, fix), resource=(False, why, fix))
        return out
    target = route.route.target_id
    out["default_route"] = f"0.0.0.0/0 → {target} ({route.state})"
    if route.state != "active":
        why = f"the default route leads to {target}, which is gone (blackhole)"
        fix = f"replace the route 0.0.0.0/0 in {table} with a live target"
        out.update(function=(False, why, fix), resource=(False, why, fix))
    elif target.startswith("igw-"):
        out["function"] = (
            False, f"routed straight to internet gateway {target}: a function's Hyperplane ENI "
                   "has no public address, so it has no internet (as on AWS)",
            "put the function in private subnets whose route table sends 0.0.0.0/0 to a NAT "
            "gateway placed in this public subnet")
        given = svc.subnet_settings(subnet).map_public_ip_on_launch
        out["resource"] = (
            "only with a public address" if not no_internet_here else False,
            f"routed to internet gateway {target}: a resource reaches the internet (and is "
            f"reached on the ports its groups open) only with a public address: an Elastic IP"
            + (", or the one this subnet gives at launch (MapPublicIpOnLaunch)" if given else
               "") + no_internet_here,
            "AllocateAddress, then AssociateAddress with the resource's interface"
            + ("" if given else "; or ModifySubnetAttribute MapPublicIpOnLaunch before "
               "launching it"))
    elif target.startswith("nat-"):
        nat = svc.nat_store.get(target)
        problem = _nat_works(svc, nat) if nat else f"NAT gateway {target} does not exist"
        ok = not problem and not no_internet_here
        why = (problem or f"through NAT gateway {target} ({nat.public_ip})") + no_internet_here
        out.update(function=(ok, why, "" if ok else "see above"),
                   resource=(ok, why, "" if ok else "see above"))
    else:
        why = f"the default route leads to {target}, not to a gateway"
        out.update(function=(False, why, "route 0.0.0.0/0 to a NAT gateway"),
                   resource=(False, why, "route 0.0.0.0/0 to a NAT gateway"))
    return out


def routing_tree(svc: Any) -> dict[str, Any]:
    """Every VPC's route tables, gateways and each subnet's way out (JSON for the CLI)."""
    vpcs = []
    for vpc in svc.store.vpcs():
        tables = []
        for t in (t for t in svc.routes.tables() if t.vpc_id == vpc.id):
            assocs = svc.associations_of(t.id)
            tables.append({"id": t.id, "main": any(a.main for a in assocs),
                           "subnets": [a.subnet_id for a in assocs if a.subnet_id],
                           "routes": [f"{v.route.destination} → {v.route.target_id}"
                                      f"{'' if v.state == 'active' else ' (blackhole)'}"
                                      for v in svc.route_views(t.id)]})
        igws = [g.id for g in svc.gateway_store.gateways() if g.vpc_id == vpc.id]
        nats = [{"id": n.id, "subnet": n.subnet_id, "state": n.state,
                 "connectivity": n.connectivity, "public_ip": n.public_ip,
                 "private_ip": n.private_ip}
                for n in svc.nat_store.all() if n.vpc_id == vpc.id and n.state != "deleted"]
        eips = [{"public_ip": a.public_ip, "interface": a.eni_id, "private_ip": a.private_ip,
                 "kind": "Elastic IP" if a.allocation_id else "public IP given at launch"}
                for a in map(svc.visible_address, svc.mapped_addresses(vpc.id))]
        subnets = []
        for s in (s for s in svc.store.subnets() if s.vpc_id == vpc.id):
            paths = subnet_paths(svc, s)
            subnets.append({"id": s.id, "cidr": s.cidr, **{
                k: ({"internet": v[0], "why": v[1], "fix": v[2]} if isinstance(v, tuple) else v)
                for k, v in paths.items()}})
        vpcs.append({"id": vpc.id, "region": vpc.region, "internet_gateways": igws,
                     "nat_gateways": nats, "elastic_ips": eips, "route_tables": tables,
                     "subnets": subnets})
    return {"internet_netns": svc.settings.internet_netns,
            "internet_via_uplink": svc.settings.internet_via_uplink, "vpcs": vpcs}
