"""Interface VPC endpoints (PrivateLink) for the one service lambdaplane serves itself, Lambda
(`com.amazonaws.<region>.lambda`), with AWS's rules: Create/Describe/DeleteVpcEndpoints and
DescribeVpcEndpointServices. An endpoint has a requester-managed interface (type
`vpc_endpoint`) in each of its subnets, in a namespace of its own like a `lambdaplane run`
resource, so its security groups judge what reaches it; service/endpoint_proxy.py listens
there and forwards to the server's own API. With private DNS the VPC resolver answers
`lambda.<region>.amazonaws.com` with the interfaces' addresses (service/vpc_dns.py asks
`endpoint_dns_names`). A part of VpcService, given its Ec2Core; writes the store, the kernel
follows through `reconcile`. States as on AWS: `pending` until the kernel has the interfaces,
the names and the listeners, then `available`; DeleteVpcEndpoints leaves it `deleting` until
its interfaces are gone, then it is gone (a stop in between is finished at start).
ModifyVpcEndpoint is service/vpc_endpoint_edits.py's."""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace
from collections.abc import Awaitable, Callable
from typing import Any

from ..errors import ec2_error
from ..store.ec2 import Eni, Subnet, Vpc
from ..store.vpc_endpoints import VpcEndpoint, VpcEndpointStore
from .ec2_core import Ec2Core
from .ec2_filters import check_names, matches
from .ec2_ids import IdKind, new_id
from .ec2_tags import specified_tags
from . import vpc_endpoint_edits
from .vpc_endpoint_placement import placed_groups, placed_subnets

log = logging.getLogger("lambdaplane.vpc")

VPC_ENDPOINT = IdKind("vpce", "InvalidVpcEndpointId.Malformed", "InvalidVpcEndpointId.NotFound",
                      "The Vpc Endpoint Id '{id}' does not exist")
ENDPOINT_FILTERS = ("vpc-endpoint-id", "vpc-id", "service-name", "vpc-endpoint-state",
                    "vpc-endpoint-type", "ip-address-type")
SERVICE_FILTERS = ("service-name", "service-type", "owner", "service-region")
# AWS's hosted zone of `*.vpce.amazonaws.com` names and of the private zone it makes
REGIONAL_ZONE_ID = "Z7HUB22UULQXV"


def lambda_service_name(region: str) -> str:
    return f"com.amazonaws.{region}.lambda"


def lambda_private_dns_name(region: str) -> str:
    return f"lambda.{region}.amazonaws.com"


def endpoint_dns_name(e: VpcEndpoint, zone: str = "") -> str:
    """The endpoint's own (regional or zonal) DNS name."""
    service = e.service_name.split(".")[-1]
    suffix = f"-{zone}" if zone else ""
    return f"{e.id}{suffix}.{service}.{e.region}.vpce.amazonaws.com"


class VpcEndpoints:
    """The VPC endpoint part of VpcService."""

    def __init__(self, core: Ec2Core, endpoint_store: VpcEndpointStore,
                 create_interface: Callable[..., Awaitable[Eni]],
                 vpc_attributes: Callable[[Vpc], dict[str, bool]],
                 tags_of: Callable[[str], dict[str, str]]) -> None:
        self.core = core
        self.db, self.store = core.db, core.store
        self.endpoint_store = endpoint_store
        self.create_interface = create_interface  # service/interfaces.py
        self.vpc_attributes = vpc_attributes  # service/ec2_attributes.py
        self.tags_of = tags_of  # service/ec2_tags.py
        self._tasks: set[asyncio.Task[None]] = set()  # state changes under way

    def endpoint_taggable_ids(self, region: str) -> set[str]:
        return {e.id for e in self.endpoint_store.all(region)}

    # the service ---------------------------------------------------------------------------
    def endpoint_services(self, region: str) -> list[str]:
        return [lambda_service_name(region)]

    def describe_endpoint_services(self, region: str, params: dict[str, Any]) -> list[str]:
        self.core.ensure_region(region)
        filters = params.get("Filters") or []
        check_names(filters, SERVICE_FILTERS)
        names = params.get("ServiceNames") or []
        for name in names:
            if name not in self.endpoint_services(region):
                raise ec2_error("InvalidServiceName",
                                f"The Vpc Endpoint Service '{name}' does not exist")
        out = []
        for name in self.endpoint_services(region):
            attrs = {"service-name": [name], "service-type": ["Interface"],
                     "owner": ["amazon"], "service-region": [region]}
            if (not names or name in names) and matches(filters, attrs, {}):
                out.append(name)
        return out

    # endpoints -----------------------------------------------------------------------------
    def vpc_endpoint(self, region: str, endpoint_id: str) -> VpcEndpoint:
        return VPC_ENDPOINT.find(region, endpoint_id, self.endpoint_store.get)

    async def create_vpc_endpoint(self, region: str, params: dict[str, Any]) -> VpcEndpoint:
        self.core.ensure_region(region)
        for name in ("VpcId", "ServiceName"):
            if not params.get(name):
                raise ec2_error("MissingParameter",
                                f"The request must contain the parameter {name}")
        vpc = self.core.vpc(region, params["VpcId"])
        service = params["ServiceName"]
        if service not in self.endpoint_services(region):
            raise ec2_error("InvalidServiceName",
                            f"The Vpc Endpoint Service '{service}' does not exist")
        kind = params.get("VpcEndpointType") or "Gateway"
        if kind != "Interface":
            raise ec2_error("InvalidParameter",
                            f"The Vpc Endpoint Service '{service}' does not support vpc "
                            f"endpoint type '{kind}'.")
        if params.get("RouteTableIds"):
            raise ec2_error("InvalidParameter",
                            "Route table IDs are only supported for Gateway type VPC Endpoint.")
        subnets = placed_subnets(vpc.id, [self.core.subnet(region, s)
                                          for s in dict.fromkeys(params.get("SubnetIds") or [])])
        group_ids = placed_groups(vpc.id, (self.core.group(region, gid) for gid in
                                           dict.fromkeys(params.get("SecurityGroupIds") or [])))
        if not group_ids:
            group_ids = [g.id for g in self.store.groups(region)
                         if g.vpc_id == vpc.id and g.name == "default"]
        private_dns = params.get("PrivateDnsEnabled")
        private_dns = True if private_dns is None else bool(private_dns)
        if private_dns:
            self._check_private_dns(vpc, service)
        tags = specified_tags(params.get("TagSpecifications"), "vpc-endpoint")
        endpoint_id = new_id("vpce")
        made = await self.make_interfaces(region, endpoint_id, subnets, group_ids)
        e = VpcEndpoint(endpoint_id, region, vpc.id, service, "Interface",
                        tuple(s.id for s in subnets), tuple(group_ids),
                        tuple(eni.id for eni in made), private_dns, "pending",
                        str(params.get("PolicyDocument") or vpc_endpoint_edits.FULL_ACCESS_POLICY), time.time())
        with self.db.transaction():
            self.endpoint_store.put(e)
            self.store.set_tags(e.id, tags)
        self._spawn(self._provision(e.id))
        return e

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _provision(self, endpoint_id: str) -> None:
        """pending → available once the kernel has its interfaces, the resolver its names
        and the proxy its listeners."""
        try:
            await self.core.reconcile()
            with self.db.transaction():
                e = self.endpoint_store.get(endpoint_id)
                if e is not None and e.state == "pending":
                    self.endpoint_store.put(replace(e, state="available"))
        except Exception:
            log.exception("VPC endpoint %s failed to come up", endpoint_id)

    async def _remove(self, endpoint_id: str) -> None:
        """deleting → gone: its interfaces go, then the endpoint."""
        try:
            e = self.endpoint_store.get(endpoint_id)
            if e is None:
                return
            await self._release_interfaces(list(e.eni_ids))
            with self.db.transaction():
                self.endpoint_store.delete(e.id)
                self.store.delete_tags(e.id)
        except Exception:
            log.exception("VPC endpoint %s failed to go", endpoint_id)

    async def settle_endpoints(self) -> None:
        """At start: finish what a stop interrupted (pending → available, deleting → gone)."""
        for e in self.endpoint_store.all():
            if e.state == "pending":
                await self._provision(e.id)
            elif e.state == "deleting":
                await self._remove(e.id)

    def _check_private_dns(self, vpc: Vpc, service: str) -> None:
        attributes = self.vpc_attributes(vpc)
        if not (attributes["enableDnsSupport"] and attributes["enableDnsHostnames"]):
            raise ec2_error("InvalidParameter",
                            "Enabling private DNS requires both enableDnsSupport and "
                            f"enableDnsHostnames VPC attributes set to true for {vpc.id}")
        name = lambda_private_dns_name(vpc.region)
        if any(e.vpc_id == vpc.id and e.private_dns and e.service_name == service
               and e.state != "deleting" for e in self.endpoint_store.all()):
            raise ec2_error("InvalidParameter",
                            "private-dns-enabled cannot be set because there is already a "
                            f"conflicting DNS domain for {name} in the VPC {vpc.id}")

    def describe_vpc_endpoints(self, region: str, params: dict[str, Any]) -> list[VpcEndpoint]:
        self.core.ensure_region(region)
        filters = params.get("Filters") or []
        check_names(filters, ENDPOINT_FILTERS)
        ids = params.get("VpcEndpointIds") or []
        for eid in ids:
            self.vpc_endpoint(region, eid)
        out = []
        for e in self.endpoint_store.all(region):
            attrs = {"vpc-endpoint-id": [e.id], "vpc-id": [e.vpc_id],
                     "service-name": [e.service_name], "vpc-endpoint-state": [e.state],
                     "vpc-endpoint-type": [e.endpoint_type], "ip-address-type": ["ipv4"]}
            if (not ids or e.id in ids) and matches(filters, attrs, self.tags_of(e.id)):
                out.append(e)
        return out

    async def delete_vpc_endpoints(self, region: str, ids: list[str]
                                   ) -> list[tuple[str, str, str]]:
        """Deletes what exists; (id, error code, message) of each that could not be."""
        self.core.ensure_region(region)
        if not ids:
            raise ec2_error("MissingParameter",
                            "The request must contain the parameter VpcEndpointId")
        failed = []
        for eid in ids:
            try:
                e = self.vpc_endpoint(region, eid)
            except Exception as err:  # noqa: BLE001 - reported per id, as AWS does
                code = getattr(err, "code", "InvalidVpcEndpointId.NotFound")
                failed.append((eid, code, getattr(err, "message", str(err))))
                continue
            if e.state == "deleting":
                continue
            with self.db.transaction():
                self.endpoint_store.put(replace(e, state="deleting"))
            self._spawn(self._remove(e.id))
        return failed

    async def make_interfaces(self, region: str, endpoint_id: str, subnets: list[Subnet],
                              group_ids: list[str]) -> list[Eni]:
        """The endpoint's interface in each of `subnets`; all released again if one fails."""
        made: list[Eni] = []
        try:
            for s in subnets:
                made.append(await self.create_interface(
                    region, s.id, group_ids, description=f"VPC Endpoint Interface {endpoint_id}",
                    interface_type="vpc_endpoint", requester_managed=True, own_netns=True))
        except BaseException:
            await self._release_interfaces([m.id for m in made])
            raise
        return made

    async def _release_interfaces(self, eni_ids: list[str]) -> None:
        with self.db.transaction():
            for eni_id in eni_ids:
                self.store.delete_eni(eni_id)
        await self.core.reconcile()

    async def modify_vpc_endpoint(self, region: str, params: dict[str, Any]) -> None:
        await vpc_endpoint_edits.modify_vpc_endpoint(self, region, params)

    # what other parts ask -------------------------------------------------------------------
    def endpoint_dns_names(self, vpc_id: str) -> dict[str, tuple[str, ...]]:
        """The names the VPC resolver answers for the VPC's endpoints: each endpoint's own
        regional and zonal names, and with private DNS the service's default name."""
        enis = {e.id: e for e in self.store.enis()}
        subnets = {s.id: s for s in self.store.subnets()}
        out: dict[str, tuple[str, ...]] = {}
        for e in self.endpoint_store.all():
            if e.vpc_id != vpc_id:
                continue
            ips = tuple(enis[i].ip for i in e.eni_ids if i in enis)
            out[endpoint_dns_name(e)] = ips
            for subnet_id, eni_id in zip(e.subnet_ids, e.eni_ids):
                if eni_id in enis and subnet_id in subnets:
                    out[endpoint_dns_name(e, subnets[subnet_id].az)] = (enis[eni_id].ip,)
            if e.private_dns:
                out[lambda_private_dns_name(e.region)] = ips
        return out

    def endpoint_interfaces(self) -> list[Eni]:
        """The interfaces of every endpoint (service/endpoint_proxy.py listens on them)."""
        wanted = {i for e in self.endpoint_store.all() for i in e.eni_ids}
        return [eni for eni in self.store.enis() if eni.id in wanted]

    def endpoint_dns_entries(self, e: VpcEndpoint) -> list[dict[str, str]]:
        subnets = {s.id: s for s in self.store.subnets()}
        entries = [{"DnsName": endpoint_dns_name(e), "HostedZoneId": REGIONAL_ZONE_ID}]
        entries += [{"DnsName": endpoint_dns_name(e, subnets[s].az),
                     "HostedZoneId": REGIONAL_ZONE_ID} for s in e.subnet_ids if s in subnets]
        if e.private_dns:
            entries.append({"DnsName": lambda_private_dns_name(e.region),
                            "HostedZoneId": REGIONAL_ZONE_ID})
        return entries

