"""IPv6-only subnets in the pure parts: CreateSubnet's Ipv6Native checks, the settings such a
subnet keeps, what its interfaces may not ask for, the store's encoding of an interface without
an IPv4 address, and the kernel state wanted for one (no IPv4 address, router or route)."""
from __future__ import annotations

import pytest

from lambdaplane.errors import AwsError
from lambdaplane.model.ec2 import Eni, FarEnd, SecurityGroup, SgRule, Snapshot, Subnet, Vpc
from lambdaplane.model.ipv6 import Ipv6Snapshot, SubnetIpv6Cidr, VpcIpv6Cidr
from lambdaplane.net.names import Names
from lambdaplane.net.vpc import desired_state
from lambdaplane.service import ipv6_only
from lambdaplane.store.db import Database
from lambdaplane.store.ec2 import Ec2Store

NATIVE = Subnet("subnet-1", "us-east-1", "vpc-1", "", "us-east-1a", False)
DUAL = Subnet("subnet-2", "us-east-1", "vpc-1", "10.0.1.0/24", "us-east-1a", False)


def _code(fn, *args) -> str:
    with pytest.raises(AwsError) as err:
        fn(*args)
    return err.value.code


def test_native_is_no_ipv4_block() -> None:
    assert NATIVE.ipv6_native and not DUAL.ipv6_native


@pytest.mark.parametrize(("params", "code"), [
    ({"Ipv6Native": True, "CidrBlock": "10.0.0.0/24", "Ipv6CidrBlock": "fd00::/64"},
     "InvalidParameterCombination"),
    ({"Ipv6Native": True, "Ipv4IpamPoolId": "ipam-pool-1", "Ipv6CidrBlock": "fd00::/64"},
     "InvalidParameterCombination"),
    ({"Ipv6Native": True}, "MissingParameter"),
])
def test_create_refuses(params: dict, code: str) -> None:
    assert _code(ipv6_only.check_create, params) == code


def test_create_accepts() -> None:
    ipv6_only.check_create({"Ipv6Native": True, "Ipv6CidrBlock": "fd00::/64"})
    ipv6_only.check_create({"Ipv6Native": False, "CidrBlock": "10.0.0.0/24"})
    ipv6_only.check_create({"CidrBlock": "10.0.0.0/24"})


@pytest.mark.parametrize(("name", "bad", "good"), [
    ("MapPublicIpOnLaunch", "true", "false"),
    ("AssignIpv6AddressOnCreation", "false", "true"),
    ("PrivateDnsHostnameTypeOnLaunch", "ip-name", "resource-name"),
    ("EnableResourceNameDnsARecordOnLaunch", "true", "false"),
])
def test_attributes_it_keeps(name: str, bad: str, good: str) -> None:
    assert _code(ipv6_only.check_attribute, NATIVE, name, bad) == "InvalidParameterValue"
    ipv6_only.check_attribute(NATIVE, name, good)
    ipv6_only.check_attribute(DUAL, name, bad)  # a subnet with IPv4 may


def test_attributes_it_may_change() -> None:
    for name in ("EnableDns64", "EnableResourceNameDnsAAAARecordOnLaunch"):
        for value in ("true", "false"):
            ipv6_only.check_attribute(NATIVE, name, value)


def test_interfaces_ask_for_no_ipv4() -> None:
    check = ipv6_only.check_interface
    assert _code(check, NATIVE, "interface", "10.0.0.5", None, None) == \
        "InvalidParameterCombination"
    assert _code(check, NATIVE, "interface", None, 1, None) == "InvalidParameterCombination"
    assert _code(check, NATIVE, "interface", None, None, ["10.0.0.6"]) == \
        "InvalidParameterCombination"
    for kind in ipv6_only.IPV4_INTERFACE_TYPES:
        assert _code(check, NATIVE, kind, None, None, None) == "InvalidSubnet"
        check(DUAL, kind, None, None, None)
    check(NATIVE, "interface", None, None, None)
    check(DUAL, "interface", "10.0.1.5", 2, None)
    assert _code(ipv6_only.refuse_ipv4, NATIVE, "x") == "InvalidParameterValue"
    ipv6_only.refuse_ipv4(DUAL, "x")
    assert _code(ipv6_only.check_disassociate, NATIVE, "subnet-cidr-assoc-1") == \
        "InvalidCidrBlock.InUse"
    ipv6_only.check_disassociate(DUAL, "subnet-cidr-assoc-1")
    assert _code(ipv6_only.keep_an_address, "eni-1") == "InvalidParameterValue"


def _eni(eni_id: str, subnet: Subnet, ip: str, far: FarEnd | None = None) -> Eni:
    return Eni(eni_id, "us-east-1", subnet.id, "vpc-1", ip, "02:00:00:00:00:01", "interface",
               False, "", "in-use" if far else "available", ("sg-1",), far)


def test_store_keeps_interfaces_without_ipv4_apart(tmp_path) -> None:
    db = Database.open(tmp_path)
    store = Ec2Store(db)
    with db.transaction():
        store.add_vpc(Vpc("vpc-1", "us-east-1", "10.0.0.0/16", False))
        store.add_subnet(NATIVE)
        store.add_subnet(DUAL)
        store.add_group(SecurityGroup("sg-1", "us-east-1", "vpc-1", "default", "d"))
        store.add_eni(_eni("eni-1", NATIVE, ""))
        store.add_eni(_eni("eni-2", NATIVE, ""))  # UNIQUE (vpc_id, ip) does not bite
        store.add_eni(_eni("eni-3", DUAL, "10.0.1.5"))
    assert {e.id: e.ip for e in store.enis()} == {"eni-1": "", "eni-2": "", "eni-3": "10.0.1.5"}
    assert store.subnet(NATIVE.id).ipv6_native


def test_kernel_state_of_an_ipv6_only_port() -> None:
    names = Names("t1")
    far = FarEnd("lpt1r-x", "eth0", True)
    snap = Snapshot(
        vpcs=[Vpc("vpc-1", "us-east-1", "10.0.0.0/16", False)], subnets=[NATIVE, DUAL],
        groups=[SecurityGroup("sg-1", "us-east-1", "vpc-1", "default", "d")],
        rules=[SgRule("sgr-1", "sg-1", False, "-1", -1, -1, None, "sg-1")],
        enis=[_eni("eni-1", NATIVE, "", far), _eni("eni-3", DUAL, "10.0.1.5", far)],
        ipv6=Ipv6Snapshot([VpcIpv6Cidr("a1", "vpc-1", "fd00:1::/56", "us-east-1")],
                          [SubnetIpv6Cidr("a2", NATIVE.id, "fd00:1::/64")],
                          {"eni-1": ["fd00:1::10"]}))
    (spec,) = desired_state(names, snap)
    assert spec.gateways == ("10.0.1.1",)  # no IPv4 router for the IPv6-only subnet
    ports = {p.eni_id: p for p in spec.ports}
    assert ports["eni-1"].far_addresses == () and ports["eni-1"].gateway == ""
    assert ports["eni-1"].ipv6 == ("fd00:1::10",)
    assert ports["eni-3"].far_addresses == (("10.0.1.5", 24),)
    # the group's members: the IPv6-only interface in the IPv6 set only
    lines = spec.nft_script.splitlines()
    (v4,) = [x for x in lines if "set g_sg_1 " in x]
    (v6,) = [x for x in lines if "set g6_sg_1 " in x]
    assert "10.0.1.5" in v4 and "fd00:1::10" not in v4 and "{ ," not in v4
    assert "fd00:1::10" in v6 and spec.ipv6
