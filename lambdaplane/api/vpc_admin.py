"""/_lambdaplane/ endpoints for the VPC side of the CLI: `run` (make an interface with a
namespace of its own for a program, attach the program, release it), `ps` and `net show`.
JSON in and out; AWS errors keep their EC2 code."""
from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from ..errors import AwsError
from ..net.security_groups import PortRules, port_rule_lines
from ..service.vpc import VpcService
from ..store.ec2 import Eni


log = logging.getLogger("lambdaplane.vpc")


@web.middleware
async def _json_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """Errors on the VPC admin routes come back as JSON the CLI can show."""
    if not request.path.startswith(_PATHS):
        return await handler(request)
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except Exception as e:  # noqa: BLE001 - reported to the CLI and logged
        log.exception("%s %s failed", request.method, request.path)
        return web.json_response({"code": "InternalError", "message": str(e)}, status=500)


_PATHS = ("/_lambdaplane/run", "/_lambdaplane/ps", "/_lambdaplane/net", "/_lambdaplane/vpc/")


def _error(e: AwsError) -> web.Response:
    return web.json_response({"code": e.code, "message": e.message}, status=e.status)


def eni_json(svc: VpcService, e: Eni) -> dict[str, Any]:
    subnet = svc.store.subnet(e.subnet_id)
    groups = [svc.store.group(g) for g in e.group_ids]
    rules = {g: svc.rules_of(g) for g in e.group_ids}
    port = PortRules("", e.group_ids)
    return {"id": e.id, "subnet": e.subnet_id, "vpc": e.vpc_id, "ip": e.ip, "mac": e.mac,
            "prefixlen": int(subnet.cidr.split("/")[1]) if subnet and subnet.cidr else None,
            "type": e.interface_type, "status": e.status, "requester_managed": e.requester_managed,
            "description": e.description, "name": e.name, "argv": e.argv,
            "groups": [{"id": g.id, "name": g.name} for g in groups if g],
            "netns": e.far_end.netns if e.far_end else None,
            "ifname": e.far_end.ifname if e.far_end else None,
            "owner_pid": e.owner_pid, "process_pid": e.process_pid,
            "resolv_conf": svc.vpc_resolv_conf(e.vpc_id, e.subnet_id),
            "rules_in": len(port_rule_lines(port, rules, egress=False)),
            "rules_out": len(port_rule_lines(port, rules, egress=True)),
            "ipv6": svc.ipv6.addresses_of(e.id),  # service/ipv6.py
            "secondary_ips": svc.private_ips.of(e.id)}  # service/private_ips.py


def network_tree(svc: VpcService) -> dict[str, Any]:
    store = svc.store
    enis = store.enis()
    regions: dict[str, list[dict[str, Any]]] = {}
    views = svc.resolvers.views
    listening = svc.resolvers.listening()
    for vpc in store.vpcs():
        groups = [g for g in store.groups() if g.vpc_id == vpc.id]
        subnets = []
        for s in store.subnets():
            if s.vpc_id != vpc.id:
                continue
            subnets.append({"id": s.id, "cidr": s.cidr, "az": s.az, "default": s.default_for_az,
                            "available": svc.available_ips(s),
                            "interfaces": [eni_json(svc, e) for e in enis if e.subnet_id == s.id]})
        regions.setdefault(vpc.region, []).append({
            "id": vpc.id, "cidr": vpc.cidr, "default": vpc.is_default,
            "netns": svc.names.vpc_netns(vpc.id), "subnets": subnets,
            "dns": _dns_json(svc, vpc.id, views.get(vpc.id), vpc.id in listening),
            "endpoints": [{"id": e.id, "service": e.service_name, "state": e.state,
                           "private_dns": e.private_dns, "interfaces": list(e.eni_ids)}
                          for e in svc.endpoint_store.all() if e.vpc_id == vpc.id],
            "groups": [{"id": g.id, "name": g.name,
                        "ingress": sum(1 for r in svc.rules_of(g.id) if not r.egress),
                        "egress": sum(1 for r in svc.rules_of(g.id) if r.egress)}
                       for g in groups]})
    return {"regions": [{"region": r, "vpcs": v} for r, v in sorted(regions.items())]}


def _dns_json(svc: VpcService, vpc_id: str, view: Any, listening: bool) -> dict[str, Any]:
    """The VPC resolver as `net show` prints it."""
    if view is None:
        return {"resolver": None, "listening": listening}
    return {"resolver": view.resolver, "listening": listening, "support": view.dns_support,
            "hostnames": view.dns_hostnames,
            "forwards": bool(view.forwards and svc.resolvers.can_forward),
            "private_names": sorted(n for n in view.private_names
                                    if not n.endswith(".vpce.amazonaws.com"))}


def add_admin_routes(app: web.Application, platform: Any) -> None:
    def svc() -> VpcService:
        return platform.vpc

    async def run_create(request: web.Request) -> web.Response:
        body = await request.json()
        region = body.get("region") or platform.settings.default_region
        try:
            await svc().use_region(region)
            eni = await svc().create_resource(region, body["subnet"],
                                              list(body.get("security_groups") or []),
                                              body.get("ip"), body.get("name"),
                                              list(body.get("argv") or []), int(body["pid"]),
                                              body.get("host"), body.get("pid_start"))
        except AwsError as e:
            return _error(e)
        return web.json_response(eni_json(svc(), eni))

    async def run_attach(request: web.Request) -> web.Response:
        body = await request.json()
        try:
            eni = await svc().attach_process(request.match_info["eni"], int(body["pid"]),
                                             body.get("start"))
        except AwsError as e:
            return _error(e)
        return web.json_response(eni_json(svc(), eni))

    async def run_release(request: web.Request) -> web.Response:
        await svc().release_resource(request.match_info["eni"])
        return web.json_response({"released": request.match_info["eni"]})

    async def ps(_request: web.Request) -> web.Response:
        return web.json_response({"resources": [eni_json(svc(), e) for e in svc().resources()]})

    async def net(_request: web.Request) -> web.Response:
        return web.json_response(network_tree(svc()))

    async def reconcile(_request: web.Request) -> web.Response:
        return web.json_response({"changes": await svc().reconcile(verify=True)})

    app.middlewares.append(_json_errors)
    app.router.add_post("/_lambdaplane/run", run_create)
    app.router.add_post("/_lambdaplane/run/{eni}/process", run_attach)
    app.router.add_delete("/_lambdaplane/run/{eni}", run_release)
    app.router.add_get("/_lambdaplane/ps", ps)
    app.router.add_get("/_lambdaplane/net", net)
    app.router.add_post("/_lambdaplane/vpc/reconcile", reconcile)
