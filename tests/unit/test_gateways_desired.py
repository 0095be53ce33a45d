"""The desired gateway and routing state (net/gateways.py, pure): a kernel table per route
table, a rule per port to its subnet's table (main when unassociated), routes to an attached
gateway only with an internet namespace, blackholes for gone targets and for no route, 1:1 NAT
only for addresses whose interface is in the VPC, and the nft script's fingerprint."""
from __future__ import annotations

from lambdaplane.net.gateways import GatewayNetSpec, desired_state
from lambdaplane.net.names import Names
from lambdaplane.net.routing import TABLE_BASE, KernelRoute
from lambdaplane.net.vpc import port_ifname
from lambdaplane.store.ec2 import Eni, FarEnd, Subnet, Vpc
from lambdaplane.store.ec2_routes import Route, RouteTable, RouteTableAssociation
from lambdaplane.store.gateways import Address, InternetGateway

NAMES = Names("abc")
VPC = Vpc("vpc-00000000000000001", "us-east-1", "10.0.0.0/16", False)
SUBNETS = [Subnet("subnet-0000000000000000a", "us-east-1", VPC.id, "10.0.1.0/24", "us-east-1a",
                  False),
           Subnet("subnet-0000000000000000b", "us-east-1", VPC.id, "10.0.2.0/24", "us-east-1a",
                  False)]
MAIN = RouteTable("rtb-0000000000000000a", "us-east-1", VPC.id)
PUBLIC = RouteTable("rtb-0000000000000000b", "us-east-1", VPC.id)
IGW = InternetGateway("igw-0000000000000000a", "us-east-1", VPC.id)


def _eni(n: int, subnet: Subnet, ip: str) -> Eni:
    eni_id = f"eni-{n}" + "0" * 16  # the link name keeps the first 14 digits
    return Eni(eni_id, "us-east-1", subnet.id, VPC.id, ip, "02:00:00:00:00:01", "interface",
               False, "", "in-use", (), FarEnd(NAMES.resource_netns(eni_id), "eth0", True))


ENIS = [_eni(1, SUBNETS[0], "10.0.1.4"), _eni(2, SUBNETS[1], "10.0.2.4")]
ROUTES = [Route(MAIN.id, "10.0.0.0/16", "GatewayId", "local", "CreateRouteTable"),
          Route(PUBLIC.id, "10.0.0.0/16", "GatewayId", "local", "CreateRouteTable"),
          Route(PUBLIC.id, "0.0.0.0/0", "GatewayId", IGW.id, "CreateRoute"),
          Route(PUBLIC.id, "192.0.2.0/24", "NetworkInterfaceId", "eni-00000000000000099",
                "CreateRoute")]
ASSOCS = [RouteTableAssociation("rtbassoc-0000000000000000a", MAIN.id, None, True),
          RouteTableAssociation("rtbassoc-0000000000000000b", PUBLIC.id, SUBNETS[0].id, False)]
ADDRESSES = [Address("eipalloc-0000000000000000a", "us-east-1", "198.51.100.1",
                     "eipassoc-0000000000000000a", ENIS[0].id, "10.0.1.4"),
             Address("eipalloc-0000000000000000b", "us-east-1", "198.51.100.2")]


def _spec(internet: str, gateways: list[InternetGateway]) -> GatewayNetSpec:
    (spec,) = desired_state(NAMES, internet, [VPC], SUBNETS, ENIS, [MAIN, PUBLIC], ROUTES,
                            ASSOCS, gateways, ADDRESSES)
    return spec


def test_tables_rules_and_nat_with_an_internet() -> None:
    spec = _spec("lptinet", [IGW])
    main, public = TABLE_BASE, TABLE_BASE + 1  # ranked by id
    assert spec.routing.rules == ((port_ifname(ENIS[0].id), public),
                                  (port_ifname(ENIS[1].id), main))
    assert set(spec.routing.tables[public]) == {
        KernelRoute("10.0.0.0/16", "blackhole"),
        KernelRoute("0.0.0.0/0", "unicast", "169.254.253.2", "igw0"),
        KernelRoute("192.0.2.0/24", "blackhole")}  # its interface is gone
    assert set(spec.routing.tables[main]) == {KernelRoute("10.0.0.0/16", "blackhole"),
                                              KernelRoute("0.0.0.0/0", "blackhole")}
    assert spec.internet_netns == "lptinet" and spec.peer == "lpabcg000000000"
    assert spec.nat == (("198.51.100.1", "10.0.1.4"),)
    assert "198.51.100.1 : 10.0.1.4" in spec.nft_script()
    assert spec.nft_script() != _spec("lptinet", [IGW]).__class__(
        spec.vpc_id, spec.netns, spec.internet_netns, spec.peer, (), spec.nft_table,
        spec.routing).nft_script()  # the fingerprint follows the content


def test_no_internet_namespace_or_no_attachment_leads_nowhere() -> None:
    for internet, gateways in (("", [IGW]), ("lptinet", []),
                               ("lptinet", [InternetGateway(IGW.id, "us-east-1", None)])):
        spec = _spec(internet, gateways)
        assert spec.internet_netns == "" and spec.nat == ()
        assert KernelRoute("0.0.0.0/0", "blackhole") in spec.routing.tables[TABLE_BASE + 1]


def test_a_route_to_a_private_nat_gateway_follows_its_subnets_routes() -> None:
    """Subnet b (main table) holds a private NAT gateway; the main table sends 192.0.2.0/24 to
    interface 1 and 0.0.0.0/0 to the internet gateway. A route to the NAT gateway leads there,
    marked with its realm (so its flows are translated to its private address); a destination
    its subnet has no route for is a blackhole."""
    from lambdaplane.store.nat_gateways import NatGateway

    nat = NatGateway("nat-0000000000000000a", "us-east-1", VPC.id, SUBNETS[1].id, "private",
                     None, "eni-0000000000000000c", "10.0.2.9", None, "available", 0.0)
    routes = [Route(MAIN.id, "10.0.0.0/16", "GatewayId", "local", "CreateRouteTable"),
              Route(MAIN.id, "192.0.2.0/24", "NetworkInterfaceId", ENIS[0].id, "CreateRoute"),
              Route(MAIN.id, "0.0.0.0/0", "GatewayId", IGW.id, "CreateRoute"),
              Route(PUBLIC.id, "10.0.0.0/16", "GatewayId", "local", "CreateRouteTable"),
              Route(PUBLIC.id, "192.0.2.0/25", "NatGatewayId", nat.id, "CreateRoute"),
              Route(PUBLIC.id, "0.0.0.0/0", "NatGatewayId", nat.id, "CreateRoute")]
    (spec,) = desired_state(NAMES, "", [VPC], SUBNETS, ENIS, [MAIN, PUBLIC], routes, ASSOCS,
                            [IGW], [], [nat])
    assert spec.private_nat_gateways == ((1, "10.0.2.9"),) and spec.translates
    via_eni = ("unicast", "10.0.1.4", port_ifname(ENIS[0].id), 1)
    assert set(spec.routing.tables[TABLE_BASE + 1]) == {
        KernelRoute("10.0.0.0/16", "blackhole"),
        KernelRoute("192.0.2.0/25", *via_eni),
        # 0.0.0.0/0: the NAT's subnet sends it to a gateway that leads nowhere here, and its
        # more specific 192.0.2.0/24 goes through the NAT gateway too
        KernelRoute("0.0.0.0/0", "blackhole"),
        KernelRoute("192.0.2.0/24", *via_eni)}
    script = spec.nft_script()
    assert "meta rtclassid 1 meta l4proto { tcp, udp } snat to 10.0.2.9:1024-65535" in script
    assert 'oifname "igw0" meta rtclassid 1' not in script  # it leaves by its subnet's routes
    assert 'counter name "nat1_est"' in script
    nat_gone = NatGateway(*[*vars(nat).values()][:9], "deleted", 0.0)
    (spec,) = desired_state(NAMES, "", [VPC], SUBNETS, ENIS, [MAIN, PUBLIC], routes, ASSOCS,
                            [IGW], [], [nat_gone])
    assert not spec.translates
    assert KernelRoute("0.0.0.0/0", "blackhole") in spec.routing.tables[TABLE_BASE + 1]
