"""EC2 Query actions of interface VPC endpoints: Create/Describe/Modify/DeleteVpcEndpoints and
DescribeVpcEndpointServices (service/vpc_endpoints.py). Same shape as api/ec2_api.py's
handlers, which merges `ACTIONS` into its table."""
from __future__ import annotations

import datetime
from collections.abc import Awaitable, Callable
from hashlib import sha256
from typing import Any

from ..service.ec2_paging import paginate
from ..service.vpc import VpcService
from ..service.vpc import zones as region_zones
from ..service.vpc_endpoints import lambda_private_dns_name
from ..store.vpc_endpoints import VpcEndpoint

Handler = Callable[[VpcService, str, dict[str, Any]], Awaitable[dict[str, Any]]]


def _time(t: float) -> str:
    return datetime.datetime.fromtimestamp(t, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def endpoint_out(svc: VpcService, e: VpcEndpoint) -> dict[str, Any]:
    groups = [svc.store.group(g) for g in e.group_ids]
    return {"VpcEndpointId": e.id, "VpcEndpointType": e.endpoint_type, "VpcId": e.vpc_id,
            "ServiceName": e.service_name, "State": e.state, "PolicyDocument": e.policy,
            "RouteTableIds": [], "SubnetIds": list(e.subnet_ids),
            "Groups": [{"GroupId": g.id, "GroupName": g.name} for g in groups if g],
            "IpAddressType": "ipv4", "DnsOptions": {"DnsRecordIpType": "ipv4"},
            "PrivateDnsEnabled": e.private_dns, "RequesterManaged": False,
            "NetworkInterfaceIds": list(e.eni_ids), "DnsEntries": svc.endpoint_dns_entries(e),
            "CreationTimestamp": _time(e.created), "OwnerId": svc.settings.account_id,
            "Tags": [{"Key": k, "Value": v} for k, v in svc.tags_of(e.id).items()]}


async def create_vpc_endpoint(svc: VpcService, region: str, p: dict[str, Any]) -> dict[str, Any]:
    e = await svc.create_vpc_endpoint(region, p)
    out: dict[str, Any] = {"VpcEndpoint": endpoint_out(svc, e)}
    if p.get("ClientToken"):
        out["ClientToken"] = p["ClientToken"]
    return out


async def describe_vpc_endpoints(svc: VpcService, region: str,
                                 p: dict[str, Any]) -> dict[str, Any]:
    found = svc.describe_vpc_endpoints(region, p)
    page, token = paginate(found, p.get("MaxResults"), p.get("NextToken"), low=5, high=1000)
    return {"VpcEndpoints": [endpoint_out(svc, e) for e in page], "NextToken": token}


async def delete_vpc_endpoints(svc: VpcService, region: str, p: dict[str, Any]) -> dict[str, Any]:
    failed = await svc.delete_vpc_endpoints(region, p.get("VpcEndpointIds") or [])
    return {"Unsuccessful": [{"Error": {"Code": code, "Message": message}, "ResourceId": rid}
                             for rid, code, message in failed]}


async def modify_vpc_endpoint(svc: VpcService, region: str, p: dict[str, Any]) -> dict[str, Any]:
    await svc.modify_vpc_endpoint(region, p)
    return {"Return": True}


async def describe_vpc_endpoint_services(svc: VpcService, region: str,
                                         p: dict[str, Any]) -> dict[str, Any]:
    names = svc.describe_endpoint_services(region, p)
    azs = [z.name for z in region_zones(region)]
    details = [{"ServiceName": n, "ServiceId": "vpce-svc-" + sha256(n.encode()).hexdigest()[:17],
                "ServiceType": [{"ServiceType": "Interface"}], "ServiceRegion": region,
                "AvailabilityZones": azs, "Owner": "amazon",
                "BaseEndpointDnsNames": [f"lambda.{region}.vpce.amazonaws.com"],
                "PrivateDnsName": lambda_private_dns_name(region),
                "PrivateDnsNames": [{"PrivateDnsName": lambda_private_dns_name(region)}],
                "VpcEndpointPolicySupported": True, "AcceptanceRequired": False,
                "ManagesVpcEndpoints": False, "SupportedIpAddressTypes": ["ipv4"],
                "PrivateDnsNameVerificationState": "verified", "Tags": []} for n in names]
    return {"ServiceNames": names, "ServiceDetails": details}


ACTIONS: dict[str, Handler] = {
    "CreateVpcEndpoint": create_vpc_endpoint,
    "DescribeVpcEndpoints": describe_vpc_endpoints,
    "DeleteVpcEndpoints": delete_vpc_endpoints,
    "ModifyVpcEndpoint": modify_vpc_endpoint,
    "DescribeVpcEndpointServices": describe_vpc_endpoint_services,
}
