"""EC2 Query API (`POST /`, form-encoded `Action=…&Version=2016-11-15`, XML out): parse with
the botocore model (query_xml), call VpcService, turn its dataclasses into the model's output
shapes. The region comes from the SigV4 credential scope."""
from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from ..errors import AwsError, ec2_error
from ..service.ec2_paging import paginate
from ..service.vpc import VpcService
from ..store.ec2 import Eni, SecurityGroup, SgRule, Subnet, Vpc
from .ec2_ipv6_api import eni_ipv6_addresses, subnet_ipv6_set, vpc_ipv6_set
from .ec2_private_ips_api import create_params, private_ip_addresses
from . import ec2_endpoints_api  # noqa: I001 - beside the other action tables
from . import ec2_egress_only_api
from . import (ec2_eni_api, ec2_gateways_api, ec2_ipv6_api, ec2_private_ips_api, ec2_more_api,
               ec2_network_acls_api, ec2_routes_api, flow_logs_api, query_xml)

log = logging.getLogger("lambdaplane.ec2")
_SCOPE = re.compile(r"Credential=[^/,]+/\d{8}/([a-z0-9-]+)/")

Handler = Callable[[VpcService, str, dict[str, Any]], Awaitable[dict[str, Any]]]


def region_of(request: web.Request, default: str) -> str:
    found = _SCOPE.search(request.headers.get("Authorization", ""))
    return found.group(1) if found else default


# --- dataclass → output shape ---------------------------------------------------------------

def _tags(svc: VpcService, rid: str) -> list[dict[str, str]] | None:
    tags = svc.tags_of(rid)
    return [{"Key": k, "Value": v} for k, v in tags.items()] or None


def vpc_out(svc: VpcService, v: Vpc) -> dict[str, Any]:
    return {"VpcId": v.id, "OwnerId": svc.settings.account_id, "InstanceTenancy": "default",
            "CidrBlock": v.cidr, "DhcpOptionsId": "default", "State": "available",
            "IsDefault": v.is_default, "Tags": _tags(svc, v.id),
            "CidrBlockAssociationSet": [{"AssociationId": b.association_id,
                                         "CidrBlock": b.cidr,
                                         "CidrBlockState": {"State": "associated"}}
                                        for b in svc.cidr_associations(v)],
            "Ipv6CidrBlockAssociationSet": vpc_ipv6_set(svc, v)}


def subnet_out(svc: VpcService, s: Subnet) -> dict[str, Any]:
    settings = svc.subnet_settings(s)
    return {"SubnetId": s.id, "VpcId": s.vpc_id, "CidrBlock": s.cidr or None,
            "State": "available",
            "AvailabilityZone": s.az, "AvailabilityZoneId": svc.zone_of(s).zone_id,
            "AvailableIpAddressCount": svc.available_ips(s), "DefaultForAz": s.default_for_az,
            "MapPublicIpOnLaunch": settings.map_public_ip_on_launch,
            "MapCustomerOwnedIpOnLaunch": settings.map_customer_owned_ip_on_launch,
            "OwnerId": svc.settings.account_id,
            "AssignIpv6AddressOnCreation": settings.assign_ipv6_address_on_creation,
            "Ipv6CidrBlockAssociationSet": subnet_ipv6_set(svc, s), "EnableDns64": settings.enable_dns64,
            "Ipv6Native": s.ipv6_native, "PrivateDnsNameOptionsOnLaunch": {
                "HostnameType": settings.hostname_type,
                "EnableResourceNameDnsARecord": settings.enable_resource_name_dns_a_record,
                "EnableResourceNameDnsAAAARecord": settings.enable_resource_name_dns_aaaa_record},
            "SubnetArn": svc.subnet_arn(s), "Tags": _tags(svc, s.id)}


def _ports(rule: SgRule) -> dict[str, Any]:
    return {} if rule.protocol not in ("tcp", "udp", "icmp", "58") else \
        {"FromPort": rule.from_port, "ToPort": rule.to_port}


def permissions_out(svc: VpcService, rules: list[SgRule]) -> list[dict[str, Any]]:
    """AWS groups rules with the same protocol and ports into one IpPermission."""
    grouped: dict[tuple[str, int, int], dict[str, Any]] = {}
    for r in rules:
        perm = grouped.setdefault((r.protocol, r.from_port, r.to_port), {
            "IpProtocol": r.protocol, **_ports(r), "IpRanges": [], "UserIdGroupPairs": [],
            "Ipv6Ranges": [], "PrefixListIds": []})
        if r.ref_group_id:
            pair = {"GroupId": r.ref_group_id, "UserId": svc.settings.account_id}
            if r.description:
                pair["Description"] = r.description
            perm["UserIdGroupPairs"].append(pair)
        elif r.cidr and ":" in r.cidr:  # IPv6
            rng6 = {"CidrIpv6": r.cidr}
            if r.description:
                rng6["Description"] = r.description
            perm["Ipv6Ranges"].append(rng6)
        else:
            rng = {"CidrIp": r.cidr}
            if r.description:
                rng["Description"] = r.description
            perm["IpRanges"].append(rng)
    return list(grouped.values())


def group_out(svc: VpcService, g: SecurityGroup) -> dict[str, Any]:
    rules = svc.rules_of(g.id)
    return {"GroupId": g.id, "GroupName": g.name, "Description": g.description,
            "VpcId": g.vpc_id, "OwnerId": svc.settings.account_id,
            "SecurityGroupArn": f"arn:aws:ec2:{g.region}:{svc.settings.account_id}:"
                                f"security-group/{g.id}",
            "IpPermissions": permissions_out(svc, [r for r in rules if not r.egress]),
            "IpPermissionsEgress": permissions_out(svc, [r for r in rules if r.egress]),
            "Tags": _tags(svc, g.id)}


def rule_out(svc: VpcService, r: SgRule) -> dict[str, Any]:
    out: dict[str, Any] = {"SecurityGroupRuleId": r.id, "GroupId": r.group_id,
                           "GroupOwnerId": svc.settings.account_id, "IsEgress": r.egress,
                           "IpProtocol": r.protocol, "FromPort": r.from_port,
                           "ToPort": r.to_port, "Tags": _tags(svc, r.id) or []}
    if r.description:
        out["Description"] = r.description
    if r.ref_group_id:
        out["ReferencedGroupInfo"] = {"GroupId": r.ref_group_id,
                                      "UserId": svc.settings.account_id}
    elif r.cidr and ":" in r.cidr:
        out["CidrIpv6"] = r.cidr
    else:
        out["CidrIpv4"] = r.cidr
    return out


def eni_out(svc: VpcService, e: Eni) -> dict[str, Any]:
    subnet = svc.store.subnet(e.subnet_id)
    groups = [svc.store.group(g) for g in e.group_ids]
    out: dict[str, Any] = {
        "NetworkInterfaceId": e.id, "SubnetId": e.subnet_id, "VpcId": e.vpc_id,
        "AvailabilityZone": subnet.az if subnet else None, "Description": e.description,
        "Groups": [{"GroupId": g.id, "GroupName": g.name} for g in groups if g],
        "InterfaceType": e.interface_type, "MacAddress": e.mac,
        "OwnerId": svc.settings.account_id, "PrivateIpAddress": e.ip or None,
        "PrivateIpAddresses": private_ip_addresses(svc, e),
        "PrivateDnsName": private_ip_addresses(svc, e)[0]["PrivateDnsName"] if e.ip else None,
        "Ipv6Native": not e.ip,
        "Ipv6Addresses": eni_ipv6_addresses(svc, e), "RequesterManaged": e.requester_managed,
        "SourceDestCheck": svc.source_dest_check(e),
        "Status": e.status, "TagSet": _tags(svc, e.id) or []}
    association = svc.public_association(e)  # an Elastic IP or a public IP given at launch
    if association is not None:
        out["Association"] = association
        out["PrivateIpAddresses"][0]["Association"] = association
    if e.requester_managed:
        out["RequesterId"] = "AROA" + e.id[4:].upper()
    if e.status == "in-use":
        out["Attachment"] = {"AttachmentId": "ela-attach-" + e.id[4:], "DeviceIndex": 0,
                             "Status": "attached", "DeleteOnTermination": False,
                             "InstanceOwnerId": "amazon-aws" if e.requester_managed
                             else svc.settings.account_id}
    return out


# --- actions ----------------------------------------------------------------------------------

def _filters(p: dict[str, Any]) -> list[dict]:
    return p.get("Filters") or []


def _page(p: dict[str, Any], items: list[Any]) -> tuple[list[Any], str | None]:
    return paginate(items, p.get("MaxResults"), p.get("NextToken"))


async def create_vpc(svc: VpcService, region: str, p: dict[str, Any]) -> dict[str, Any]:
    if p.get("AmazonProvidedIpv6CidrBlock") or p.get("Ipv6Pool") or p.get("Ipv6CidrBlock"):
        svc.ipv6.check_vpc_request(region, {**p, "VpcId": None})  # before anything is made
    vpc = await svc.create_vpc(region, p.get("CidrBlock"), p.get("TagSpecifications"))
    if p.get("AmazonProvidedIpv6CidrBlock"):
        await svc.ipv6.associate_vpc_block(region, {**p, "VpcId": vpc.id, "CidrBlock": None})
    return {"Vpc": vpc_out(svc, vpc)}


async def describe_vpcs(svc: VpcService, region: str, p: dict[str, Any]) -> dict[str, Any]:
    vpcs, token = _page(p, svc.describe_vpcs(region, p.get("VpcIds") or [], _filters(p)))
    return {"Vpcs": [vpc_out(svc, v) for v in vpcs], "NextToken": token}


async def delete_vpc(svc: VpcService, region: str, p: dict[str, Any]) -> dict[str, Any]:
    query_xml.raise_missing(p, "VpcId")
    await svc.delete_vpc(region, p["VpcId"])
    return {}


async def create_subnet(svc: VpcService, region: str, p: dict[str, Any]) -> dict[str, Any]:
    svc.ipv6.check_new_subnet(region, p)  # service/ipv6.py: before anything is made
    subnet = await svc.create_subnet(region, p.get("VpcId"), p.get("CidrBlock"),
                                     p.get("AvailabilityZone"), p.get("AvailabilityZoneId"),
                                     p.get("TagSpecifications"), bool(p.get("Ipv6Native")))
    if p.get("Ipv6CidrBlock"):
        try:
            await svc.ipv6.add_subnet_block(region, subnet.id, p["Ipv6CidrBlock"])
        except Exception:
            await svc.delete_subnet(region, subnet.id)
            raise
    return {"Subnet": subnet_out(svc, subnet)}


async def describe_subnets(svc: VpcService, region: str, p: dict[str, Any]) -> dict[str, Any]:
    subnets, token = _page(p, svc.describe_subnets(region, p.get("SubnetIds") or [],
                                                   _filters(p)))
    return {"Subnets": [subnet_out(svc, s) for s in subnets], "NextToken": token}


async def delete_subnet(svc: VpcService, region: str, p: dict[str, Any]) -> dict[str, Any]:
    query_xml.raise_missing(p, "SubnetId")
    await svc.delete_subnet(region, p["SubnetId"])
    return {}


async def create_security_group(svc: VpcService, region: str, p: dict[str, Any]) -> dict[str, Any]:
    group = await svc.create_security_group(region, p.get("GroupName"), p.get("Description"),
                                             p.get("VpcId"), p.get("TagSpecifications"))
    return {"GroupId": group.id, "SecurityGroupArn": group_out(svc, group)["SecurityGroupArn"],
            "Tags": _tags(svc, group.id)}


async def describe_security_groups(svc: VpcService, region: str,
                                   p: dict[str, Any]) -> dict[str, Any]:
    groups, token = _page(p, svc.describe_security_groups(region, p.get("GroupIds") or [],
                                                          p.get("GroupNames") or [],
                                                          _filters(p)))
    return {"SecurityGroups": [group_out(svc, g) for g in groups], "NextToken": token}


async def delete_security_group(svc: VpcService, region: str, p: dict[str, Any]) -> dict[str, Any]:
    group = await svc.delete_security_group(region, p.get("GroupId"), p.get("GroupName"))
    return {"Return": True, "GroupId": group.id}


def _authorize(egress: bool) -> Handler:
    async def handler(svc: VpcService, region: str, p: dict[str, Any]) -> dict[str, Any]:
        rules = await svc.authorize(region, p, egress)
        return {"Return": True, "SecurityGroupRules": [rule_out(svc, r) for r in rules]}
    return handler


def _revoke(egress: bool) -> Handler:
    async def handler(svc: VpcService, region: str, p: dict[str, Any]) -> dict[str, Any]:
        await svc.revoke(region, p, egress)
        return {"Return": True}
    return handler


async def describe_security_group_rules(svc: VpcService, region: str,
                                        p: dict[str, Any]) -> dict[str, Any]:
    rules, token = _page(p, svc.describe_rules(region, p.get("SecurityGroupRuleIds") or [],
                                               _filters(p)))
    return {"SecurityGroupRules": [rule_out(svc, r) for r in rules], "NextToken": token}


async def create_network_interface(svc: VpcService, region: str,
                                   p: dict[str, Any]) -> dict[str, Any]:
    primary, secondary_count, secondary = create_params(p)
    eni = await svc.create_interface(region, p.get("SubnetId"), p.get("Groups") or [],
                                     primary, p.get("Description") or "",
                                     tag_specs=p.get("TagSpecifications"),
                                     ipv6_count=p.get("Ipv6AddressCount"),
                                     ipv6_addresses=[a.get("Ipv6Address") for a in
                                                     p.get("Ipv6Addresses") or []],
                                     secondary_count=secondary_count,
                                     secondary_addresses=secondary)
    return {"NetworkInterface": eni_out(svc, eni)}


async def describe_network_interfaces(svc: VpcService, region: str,
                                      p: dict[str, Any]) -> dict[str, Any]:
    enis, token = _page(p, svc.describe_interfaces(region, p.get("NetworkInterfaceIds") or [],
                                                   _filters(p)))
    return {"NetworkInterfaces": [eni_out(svc, e) for e in enis], "NextToken": token}


async def delete_network_interface(svc: VpcService, region: str,
                                   p: dict[str, Any]) -> dict[str, Any]:
    query_xml.raise_missing(p, "NetworkInterfaceId")
    await svc.delete_interface(region, p["NetworkInterfaceId"])
    return {}


async def describe_availability_zones(svc: VpcService, region: str,
                                      p: dict[str, Any]) -> dict[str, Any]:
    found = svc.availability_zones(region, p.get("ZoneNames") or [], p.get("ZoneIds") or [],
                                   _filters(p))
    return {"AvailabilityZones": [{
        "ZoneName": z.name, "ZoneId": z.zone_id, "RegionName": z.region, "State": "available",
        "OptInStatus": "opt-in-not-required", "ZoneType": "availability-zone",
        "GroupName": z.region, "NetworkBorderGroup": z.region, "Messages": []} for z in found]}


async def create_tags(svc: VpcService, region: str, p: dict[str, Any]) -> dict[str, Any]:
    query_xml.raise_missing(p, "Resources", "Tags")
    await svc.create_tags(region, p["Resources"], p["Tags"])
    return {}


ACTIONS: dict[str, Handler] = {
    "CreateVpc": create_vpc, "DescribeVpcs": describe_vpcs, "DeleteVpc": delete_vpc,
    "CreateSubnet": create_subnet, "DescribeSubnets": describe_subnets,
    "DeleteSubnet": delete_subnet, "CreateSecurityGroup": create_security_group,
    "DescribeSecurityGroups": describe_security_groups,
    "DeleteSecurityGroup": delete_security_group,
    "AuthorizeSecurityGroupIngress": _authorize(False),
    "AuthorizeSecurityGroupEgress": _authorize(True),
    "RevokeSecurityGroupIngress": _revoke(False), "RevokeSecurityGroupEgress": _revoke(True),
    "DescribeSecurityGroupRules": describe_security_group_rules,
    "CreateNetworkInterface": create_network_interface,
    "DescribeNetworkInterfaces": describe_network_interfaces,
    "DeleteNetworkInterface": delete_network_interface,
    "DescribeAvailabilityZones": describe_availability_zones, "CreateTags": create_tags,
}
ACTIONS.update(ec2_more_api.ACTIONS)
ACTIONS.update(ec2_routes_api.ACTIONS)
ACTIONS.update(ec2_network_acls_api.ACTIONS)
ACTIONS.update(ec2_eni_api.ACTIONS)
ACTIONS.update(flow_logs_api.ACTIONS)  # VPC flow logs
ACTIONS.update(ec2_gateways_api.ACTIONS)  # internet and NAT gateways, Elastic IPs
ACTIONS.update(ec2_ipv6_api.ACTIONS)  # IPv6 blocks and addresses
ACTIONS.update(ec2_private_ips_api.ACTIONS)  # secondary private IPv4 addresses
ACTIONS.update(ec2_endpoints_api.ACTIONS)  # interface VPC endpoints
ACTIONS.update(ec2_egress_only_api.ACTIONS)  # egress-only internet gateways


async def handle(svc: VpcService, default_region: str, request: web.Request) -> web.Response:
    request_id = str(uuid.uuid4())
    action = ""
    try:
        form = await _form(request)
        action = str(form.get("Action", ""))
        if not action:
            raise ec2_error("MissingAction", "The request must contain the parameter Action")
        op = query_xml.operation(action)
        handler = ACTIONS.get(action)
        if handler is None:
            raise ec2_error("InvalidAction",
                            f"The action {action} is not valid for this web service.")
        params = query_xml.parse_params(op, {k: str(v) for k, v in form.items()})
        region = region_of(request, default_region)
        await svc.use_region(region)
        if params.get("DryRun"):
            raise ec2_error("DryRunOperation",
                            "Request would have succeeded, but DryRun flag is set.", 412)
        result = await handler(svc, region, params)
        body = query_xml.response_xml(op, result, request_id)
        return web.Response(text=body, content_type="text/xml")
    except AwsError as e:
        return web.Response(text=query_xml.error_xml(e, request_id), status=e.status,
                            content_type="text/xml")
    except Exception:
        log.exception("EC2 %s failed", action)
        err = ec2_error("InternalError", "An internal error has occurred", 500)
        return web.Response(text=query_xml.error_xml(err, request_id), status=500,
                            content_type="text/xml")


async def _form(request: web.Request) -> dict[str, str]:
    """Query string and form body together (AWS accepts either). A body that is not valid
    form encoding is the caller's fault: EC2's MalformedQueryString, not a 500."""
    try:
        if "lp_form_error" in request:  # api/dispatch.py tried already and read the body
            raise request["lp_form_error"]
        posted = await request.post()
        form = {**request.query, **posted}
    except (ValueError, UnicodeDecodeError, AssertionError, web.HTTPException,
            HttpProcessingError) as e:  # e.g. a multipart line past 512 KB
        raise ec2_error("MalformedQueryString",
                        f"The query string contains a syntax error: {type(e).__name__}") from None
    for key, value in form.items():
        if not isinstance(value, str):  # a multipart file part
            raise ec2_error("MalformedQueryString",
                            f"The query string contains a syntax error: parameter {key} is "
                            f"not a string")
    return form  # type: ignore[return-value]


def add_routes(app: web.Application, platform: Any) -> None:
    async def ec2(request: web.Request) -> web.Response:
        return await handle(platform.vpc, platform.settings.default_region, request)

    from .dispatch import serve_query  # POST / and GET /?Action=… by Version (api/dispatch.py)
    serve_query(app, "ec2", query_xml.API_VERSION, ec2)

