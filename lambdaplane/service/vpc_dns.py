"""AmazonProvidedDNS of every VPC: what each VPC's resolver knows (its DnsView, from the
store: CIDR blocks, enableDnsSupport/enableDnsHostnames, Elastic IPs, interface endpoints'
private DNS names, whether it has a path to the internet), where it listens (the VPC base
address + 2 in the VPC namespace, net/vpc.py, and fd00:ec2::253 in VPCs with IPv6), and the resolv.conf of what runs in the VPC.
A part of VpcService (service/vpc.py), given its Ec2Core and the VPC endpoint part:
`sync_dns` runs after every reconcile and whenever a DNS attribute changes; the sockets are
service/dns_server.py's."""
from __future__ import annotations

from collections.abc import Callable

from ..net.names import Names
from ..net.vpc import RESOLVER_IPV6, resolver_address
from ..sandbox.environments import VPC_CA_FILE
from ..store.ec2 import Subnet, Vpc
from ..store.ec2_vpc_cidrs import VpcCidrStore
from ..store.gateways import GatewayStore
from .dns_answers import DnsView, public_dns_name, resolv_conf
from .dns_server import ResolverPlace, VpcResolvers
from .ec2_core import Ec2Core
from .endpoint_proxy import EndpointListeners, EndpointPlace
from .local_ca import LocalCa
from .vpc_endpoints import VpcEndpoints, lambda_private_dns_name


class VpcDns:
    """The DNS part of VpcService."""

    def __init__(self, core: Ec2Core, names: Names, resolvers: VpcResolvers,
                 endpoint_listeners: EndpointListeners, local_ca: LocalCa,
                 vpc_cidr_store: VpcCidrStore, gateway_store: GatewayStore,
                 vpc_attributes: Callable[[Vpc], dict[str, bool]],
                 endpoints: VpcEndpoints,
                 ipv6_vpcs: Callable[[], set[str]] = set,
                 dns64_cidrs: Callable[[], dict[str, tuple[str, ...]]] = dict) -> None:
        self.settings, self.store = core.settings, core.store
        self.names = names
        self.resolvers = resolvers
        self.endpoint_listeners = endpoint_listeners
        self.local_ca = local_ca
        self.vpc_cidr_store = vpc_cidr_store
        self.gateway_store = gateway_store
        self.vpc_attributes = vpc_attributes  # service/ec2_attributes.py
        self.endpoints = endpoints  # their private DNS names and interfaces
        self.ipv6_vpcs = ipv6_vpcs  # the VPCs with an IPv6 block: they answer at RESOLVER_IPV6
        self.dns64_cidrs = dns64_cidrs  # VPC → IPv6 CIDRs of its subnets with EnableDns64

    def resolver_of(self, vpc: Vpc) -> str:
        return resolver_address(vpc.cidr)

    def vpc_etc_files(self, vpc_id: str) -> dict[str, str]:
        """The /etc files of a function in VPC `vpc_id`: its resolver, and the CA its
        interface endpoints' certificates come from (AWS_CA_BUNDLE names it)."""
        conf = self.vpc_resolv_conf(vpc_id)
        if not conf:
            return {}
        return {"etc/resolv.conf": conf, VPC_CA_FILE: self.local_ca.ca_pem()}

    def vpc_resolv_conf(self, vpc_id: str, subnet_id: str = "") -> str:
        """The resolv.conf of a function or resource in VPC `vpc_id` ("" if there is none);
        in an IPv6-only subnet (no IPv4 to reach base + 2 with) it names fd00:ec2::253."""
        vpc = self.store.vpc(vpc_id)
        if vpc is None:
            return ""
        subnet = self.store.subnet(subnet_id) if subnet_id else None
        resolver = RESOLVER_IPV6 if subnet is not None and subnet.ipv6_native \
            else self.resolver_of(vpc)
        return resolv_conf(resolver, vpc.region)

    def dns_views(self) -> dict[str, DnsView]:
        internet = {g.vpc_id for g in self.gateway_store.gateways() if g.vpc_id} \
            if self.settings.internet_netns else set()
        secondary: dict[str, list[str]] = {}
        for c in self.vpc_cidr_store.all():
            secondary.setdefault(c.vpc_id, []).append(c.cidr)
        enis = {e.id: e for e in self.store.enis()}
        public: dict[str, dict[str, str]] = {}
        for a in self.gateway_store.snapshot().addresses:
            eni = enis.get(a.eni_id or "")
            if eni is not None and a.private_ip:
                public.setdefault(eni.vpc_id, {})[
                    public_dns_name(a.public_ip, eni.region)] = a.private_ip
        dns64_cidrs = self.dns64_cidrs()
        views = {}
        for vpc in self.store.vpcs():
            attributes = self.vpc_attributes(vpc)
            cidrs = tuple(dict.fromkeys([vpc.cidr, *secondary.get(vpc.id, [])]))
            views[vpc.id] = DnsView(
                vpc.id, vpc.region, self.resolver_of(vpc), cidrs,
                attributes["enableDnsSupport"],
                attributes["enableDnsSupport"] and attributes["enableDnsHostnames"],
                vpc.id in internet, self.endpoints.endpoint_dns_names(vpc.id),
                public.get(vpc.id, {}), dns64_cidrs.get(vpc.id, ()))
        return views

    async def sync_dns(self) -> None:
        """Resolvers listening in every VPC namespace, answering from the store as it is."""
        ipv6_vpcs = self.ipv6_vpcs()
        places = {vpc.id: ResolverPlace(self.names.vpc_netns(vpc.id), self.resolver_of(vpc),
                                        RESOLVER_IPV6 if vpc.id in ipv6_vpcs else "")
                  for vpc in self.store.vpcs()}
        await self.resolvers.sync(places, self.dns_views())
        await self.endpoint_listeners.sync({
            eni.id: EndpointPlace(eni.far_end.netns, eni.ip, lambda_private_dns_name(eni.region),
                                  (f"*.lambda.{eni.region}.vpce.amazonaws.com",))
            for eni in self.endpoints.endpoint_interfaces() if eni.far_end is not None})

    @staticmethod
    def dns64_cidrs_of(subnets: list[Subnet], enabled: Callable[[Subnet], bool],
                       ipv6_cidrs: Callable[[Subnet], list[str]]) -> dict[str, tuple[str, ...]]:
        """VPC → the IPv6 CIDRs of its subnets with EnableDns64 (service/dns64.py)."""
        out: dict[str, tuple[str, ...]] = {}
        for subnet in subnets:
            if enabled(subnet):
                out[subnet.vpc_id] = out.get(subnet.vpc_id, ()) + tuple(ipv6_cidrs(subnet))
        return out

    def refresh_dns_views(self) -> None:
        """After a change that moves no socket (a DNS attribute, an address association)."""
        self.resolvers.views = self.dns_views()
