"""IPv6 dual stack through boto3, the API half: a VPC's Amazon-provided /56 (CreateVpc and
AssociateVpcCidrBlock), subnet /64s (CreateSubnet Ipv6CidrBlock, Associate/
DisassociateSubnetCidrBlock), interface addresses (Ipv6AddressCount, Ipv6Addresses,
AssignIpv6Addresses / UnassignIpv6Addresses, AssignIpv6AddressOnCreation), IPv6 security group
rules and network ACL entries, the Describe filters — with AWS's shapes and errors."""
from __future__ import annotations

import ipaddress

import pytest
from botocore.exceptions import ClientError

pytestmark = pytest.mark.root


def _code(fn, **kwargs) -> str:
    with pytest.raises(ClientError) as err:
        fn(**kwargs)
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    return err.value.response["Error"]["Code"]


def _vpc_block(ec2, vpc: str) -> dict:
    (v,) = ec2.describe_vpcs(VpcIds=[vpc])["Vpcs"]
    (block,) = v["Ipv6CidrBlockAssociationSet"]
    return block


def test_vpc_blocks(server) -> None:
    ec2 = server.ec2()
    vpc = ec2.create_vpc(CidrBlock="10.60.0.0/16")["Vpc"]["VpcId"]
    custom = ec2.create_network_acl(VpcId=vpc)["NetworkAcl"]["NetworkAclId"]
    other = ec2.create_vpc(CidrBlock="10.60.0.0/16", AmazonProvidedIpv6CidrBlock=True)["Vpc"]
    try:
        assert ec2.describe_vpcs(VpcIds=[vpc])["Vpcs"][0]["Ipv6CidrBlockAssociationSet"] == []
        out = ec2.associate_vpc_cidr_block(VpcId=vpc, AmazonProvidedIpv6CidrBlock=True)
        assoc = out["Ipv6CidrBlockAssociation"]
        assert out["VpcId"] == vpc and assoc["AssociationId"].startswith("vpc-cidr-assoc-")
        net = ipaddress.IPv6Network(assoc["Ipv6CidrBlock"])
        assert net.prefixlen == 56 and net.subnet_of(ipaddress.IPv6Network("fd00::/8"))
        assert assoc["Ipv6CidrBlockState"] == {"State": "associated"}
        assert assoc["NetworkBorderGroup"] == "us-east-1" and assoc["Ipv6Pool"] == "Amazon"
        assert _vpc_block(ec2, vpc) == assoc
        # CreateVpc with AmazonProvidedIpv6CidrBlock: a block of its own, not the same /56
        assert _vpc_block(ec2, other["VpcId"])["Ipv6CidrBlock"] != assoc["Ipv6CidrBlock"]
        # filters
        for name, value in [("ipv6-cidr-block-association.ipv6-cidr-block", str(net)),
                            ("ipv6-cidr-block-association.association-id",
                             assoc["AssociationId"]),
                            ("ipv6-cidr-block-association.ipv6-pool", "Amazon")]:
            found = {v["VpcId"] for v in ec2.describe_vpcs(Filters=[
                {"Name": name, "Values": [value]}])["Vpcs"]}
            assert vpc in found, name
        # AWS adds ::/0 egress to the default group and IPv6 entries to the default ACL
        (default,) = ec2.describe_security_groups(Filters=[
            {"Name": "vpc-id", "Values": [vpc]}, {"Name": "group-name", "Values": ["default"]}])[
            "SecurityGroups"]
        assert any(r.get("Ipv6Ranges") == [{"CidrIpv6": "::/0"}]
                   for r in default["IpPermissionsEgress"])
        (acl,) = ec2.describe_network_acls(Filters=[{"Name": "vpc-id", "Values": [vpc]},
                                                    {"Name": "default", "Values": ["true"]}])[
            "NetworkAcls"]
        v6 = sorted((e["RuleNumber"], e["Egress"], e["RuleAction"]) for e in acl["Entries"]
                    if e.get("Ipv6CidrBlock") == "::/0")
        assert v6 == [(101, False, "allow"), (101, True, "allow"), (32768, False, "deny"),
                      (32768, True, "deny")]
        (acl,) = ec2.describe_network_acls(NetworkAclIds=[custom])["NetworkAcls"]
        assert sorted((e["RuleNumber"], e["Egress"]) for e in acl["Entries"]
                      if e.get("Ipv6CidrBlock") == "::/0") == [(32768, False), (32768, True)]
        # errors
        assert _code(ec2.associate_vpc_cidr_block, VpcId=vpc, AmazonProvidedIpv6CidrBlock=True,
                     Ipv6CidrBlockNetworkBorderGroup="us-west-2") == "InvalidParameterValue"
        assert _code(ec2.associate_vpc_cidr_block, VpcId="vpc-12345678",
                     AmazonProvidedIpv6CidrBlock=True) == "InvalidVpcID.NotFound"
        assert _code(ec2.create_vpc, CidrBlock="10.61.0.0/16",
                     Ipv6CidrBlock="2001:db8::/56", Ipv6Pool="ipv6pool-ec2-1") == \
            "InvalidParameterValue"
        # a block with a subnet in it stays; without, it goes
        subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.60.1.0/24",
                                   Ipv6CidrBlock=str(next(net.subnets(new_prefix=64))))
        assert _code(ec2.disassociate_vpc_cidr_block, AssociationId=assoc["AssociationId"]) == \
            "InvalidCidrBlock.InUse"
        ec2.delete_subnet(SubnetId=subnet["Subnet"]["SubnetId"])
        out = ec2.disassociate_vpc_cidr_block(AssociationId=assoc["AssociationId"])
        assert out["Ipv6CidrBlockAssociation"]["Ipv6CidrBlockState"]["State"] == \
            "disassociating"
        assert ec2.describe_vpcs(VpcIds=[vpc])["Vpcs"][0]["Ipv6CidrBlockAssociationSet"] == []
    finally:
        ec2.delete_network_acl(NetworkAclId=custom)
        ec2.delete_vpc(VpcId=vpc)
        ec2.delete_vpc(VpcId=other["VpcId"])


def test_subnet_blocks_and_addresses(server) -> None:
    ec2 = server.ec2()
    vpc = ec2.create_vpc(CidrBlock="10.62.0.0/16", AmazonProvidedIpv6CidrBlock=True)["Vpc"][
        "VpcId"]
    net = ipaddress.IPv6Network(_vpc_block(ec2, vpc)["Ipv6CidrBlock"])
    first, second, *_ = net.subnets(new_prefix=64)
    subnets = []
    try:
        # CreateSubnet with a /64, and its errors (nothing is made on an error)
        assert _code(ec2.create_subnet, VpcId=vpc, CidrBlock="10.62.1.0/24",
                     Ipv6CidrBlock="fd00:1::/64") == "InvalidSubnet.Range"
        assert _code(ec2.create_subnet, VpcId=vpc, CidrBlock="10.62.1.0/24",
                     Ipv6CidrBlock=str(net)) == "InvalidParameterValue"
        assert _code(ec2.create_subnet, VpcId=vpc, CidrBlock="10.62.1.0/24",
                     Ipv6CidrBlock="not-a-cidr") == "InvalidParameterValue"
        assert ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc]}])[
            "Subnets"] == []
        a = ec2.create_subnet(VpcId=vpc, CidrBlock="10.62.1.0/24",
                              Ipv6CidrBlock=str(first))["Subnet"]
        subnets.append(a["SubnetId"])
        (block,) = a["Ipv6CidrBlockAssociationSet"]
        assert block["Ipv6CidrBlock"] == str(first)
        assert block["Ipv6CidrBlockState"] == {"State": "associated"}
        assert block["AssociationId"].startswith("subnet-cidr-assoc-")
        assert _code(ec2.create_subnet, VpcId=vpc, CidrBlock="10.62.2.0/24",
                     Ipv6CidrBlock=str(first)) == "InvalidSubnet.Conflict"
        # AssociateSubnetCidrBlock / DisassociateSubnetCidrBlock
        b = ec2.create_subnet(VpcId=vpc, CidrBlock="10.62.2.0/24")["Subnet"]["SubnetId"]
        subnets.append(b)
        assert _code(ec2.modify_subnet_attribute, SubnetId=b,
                     AssignIpv6AddressOnCreation={"Value": True}) == "InvalidParameterValue"
        out = ec2.associate_subnet_cidr_block(SubnetId=b, Ipv6CidrBlock=str(second))
        assert out["SubnetId"] == b
        assert out["Ipv6CidrBlockAssociation"]["Ipv6CidrBlock"] == str(second)
        assert _code(ec2.associate_subnet_cidr_block, SubnetId=b,
                     Ipv6CidrBlock=str(second)) == "InvalidParameterValue"
        found = ec2.describe_subnets(Filters=[
            {"Name": "ipv6-cidr-block-association.ipv6-cidr-block", "Values": [str(second)]}])
        assert [s["SubnetId"] for s in found["Subnets"]] == [b]

        # interfaces: a count, given addresses, the subnet's AssignIpv6AddressOnCreation
        eni = ec2.create_network_interface(SubnetId=b, Ipv6AddressCount=2)["NetworkInterface"]
        addresses = [x["Ipv6Address"] for x in eni["Ipv6Addresses"]]
        assert len(addresses) == 2 and all(ipaddress.IPv6Address(x) in second
                                           for x in addresses)
        wanted = str(second.network_address + 0x99)
        out = ec2.assign_ipv6_addresses(NetworkInterfaceId=eni["NetworkInterfaceId"],
                                        Ipv6Addresses=[wanted])
        assert out["AssignedIpv6Addresses"] == [wanted]
        assert _code(ec2.assign_ipv6_addresses, NetworkInterfaceId=eni["NetworkInterfaceId"],
                     Ipv6Addresses=[wanted]) == "InvalidIPAddress.InUse"
        assert _code(ec2.assign_ipv6_addresses, NetworkInterfaceId=eni["NetworkInterfaceId"],
                     Ipv6Addresses=[str(first.network_address + 9)]) == "InvalidParameterValue"
        assert _code(ec2.assign_ipv6_addresses, NetworkInterfaceId=eni["NetworkInterfaceId"],
                     Ipv6AddressCount=100) == "PrivateIpAddressLimitExceeded"
        more = ec2.assign_ipv6_addresses(NetworkInterfaceId=eni["NetworkInterfaceId"],
                                         Ipv6AddressCount=1)["AssignedIpv6Addresses"]
        (e,) = ec2.describe_network_interfaces(Filters=[
            {"Name": "ipv6-addresses.ipv6-address", "Values": [wanted]}])["NetworkInterfaces"]
        assert sorted(x["Ipv6Address"] for x in e["Ipv6Addresses"]) == \
            sorted(addresses + [wanted] + more)
        out = ec2.unassign_ipv6_addresses(NetworkInterfaceId=eni["NetworkInterfaceId"],
                                          Ipv6Addresses=[wanted])
        assert out["UnassignedIpv6Addresses"] == [wanted]
        assert _code(ec2.unassign_ipv6_addresses, NetworkInterfaceId=eni["NetworkInterfaceId"],
                     Ipv6Addresses=[wanted]) == "UnassignIpv6Addresses.NotFound"
        # a block with addresses in use stays
        assoc = out_assoc = ec2.describe_subnets(SubnetIds=[b])["Subnets"][0][
            "Ipv6CidrBlockAssociationSet"][0]["AssociationId"]
        assert _code(ec2.disassociate_subnet_cidr_block, AssociationId=assoc) == \
            "InvalidCidrBlock.InUse"
        ec2.delete_network_interface(NetworkInterfaceId=eni["NetworkInterfaceId"])
        out = ec2.disassociate_subnet_cidr_block(AssociationId=out_assoc)
        assert out["Ipv6CidrBlockAssociation"]["Ipv6CidrBlockState"]["State"] == \
            "disassociating"
        assert ec2.describe_subnets(SubnetIds=[b])["Subnets"][0][
            "Ipv6CidrBlockAssociationSet"] == []
        assert _code(ec2.create_network_interface, SubnetId=b, Ipv6AddressCount=1) == \
            "InvalidParameterValue"
        assert _code(ec2.disassociate_subnet_cidr_block,
                     AssociationId="subnet-cidr-assoc-12345678") == \
            "InvalidSubnetCidrBlockAssociationID.NotFound"

        ec2.modify_subnet_attribute(SubnetId=a["SubnetId"],
                                    AssignIpv6AddressOnCreation={"Value": True})
        eni = ec2.create_network_interface(SubnetId=a["SubnetId"])["NetworkInterface"]
        assert len(eni["Ipv6Addresses"]) == 1
        ec2.delete_network_interface(NetworkInterfaceId=eni["NetworkInterfaceId"])
        # IPv6-only subnets refuse an IPv4 block (tests/e2e/test_ipv6_only.py for the rest)
        assert _code(ec2.create_subnet, VpcId=vpc, Ipv6Native=True, CidrBlock="10.62.9.0/24",
                     Ipv6CidrBlock=str(second)) == "InvalidParameterCombination"
    finally:
        for s in subnets:
            ec2.delete_subnet(SubnetId=s)
        ec2.delete_vpc(VpcId=vpc)


def test_ipv6_rules_and_acl_entries(server) -> None:
    ec2 = server.ec2()
    vpc = ec2.create_vpc(CidrBlock="10.63.0.0/16", AmazonProvidedIpv6CidrBlock=True)["Vpc"][
        "VpcId"]
    group = ec2.create_security_group(GroupName="v6", Description="d", VpcId=vpc)["GroupId"]
    acl = ec2.create_network_acl(VpcId=vpc)["NetworkAcl"]["NetworkAclId"]
    try:
        (g,) = ec2.describe_security_groups(GroupIds=[group])["SecurityGroups"]
        assert [p["Ipv6Ranges"] for p in g["IpPermissionsEgress"]] == [[{"CidrIpv6": "::/0"}]] \
            or {"CidrIpv6": "::/0"} in g["IpPermissionsEgress"][0]["Ipv6Ranges"]
        out = ec2.authorize_security_group_ingress(GroupId=group, IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80,
             "Ipv6Ranges": [{"CidrIpv6": "fd00::/8", "Description": "ula"}],
             "IpRanges": [{"CidrIp": "10.0.0.0/8"}]}])
        by_family = {("CidrIpv6" in r): r for r in out["SecurityGroupRules"]}
        assert by_family[True]["CidrIpv6"] == "fd00::/8" and \
            by_family[True]["Description"] == "ula"
        assert by_family[False]["CidrIpv4"] == "10.0.0.0/8"
        (g,) = ec2.describe_security_groups(GroupIds=[group])["SecurityGroups"]
        (perm,) = g["IpPermissions"]
        assert perm["Ipv6Ranges"] == [{"CidrIpv6": "fd00::/8", "Description": "ula"}]
        assert perm["IpRanges"] == [{"CidrIp": "10.0.0.0/8"}]
        assert [x["GroupId"] for x in ec2.describe_security_groups(Filters=[
            {"Name": "ip-permission.ipv6-cidr", "Values": ["fd00::/8"]}])["SecurityGroups"]] == \
            [group]
        assert _code(ec2.authorize_security_group_ingress, GroupId=group, IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80,
             "Ipv6Ranges": [{"CidrIpv6": "fd00::/8"}]}]) == "InvalidPermission.Duplicate"
        assert _code(ec2.authorize_security_group_ingress, GroupId=group, IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80,
             "Ipv6Ranges": [{"CidrIpv6": "10.0.0.0/8"}]}]) == "InvalidParameterValue"
        ec2.revoke_security_group_ingress(GroupId=group, IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80,
             "Ipv6Ranges": [{"CidrIpv6": "fd00::/8"}]}])
        # network ACL entries with Ipv6CidrBlock; a custom ACL has the IPv6 `*` entries too
        ec2.create_network_acl_entry(NetworkAclId=acl, RuleNumber=10, Egress=False,
                                     RuleAction="allow", Protocol="58",
                                     Ipv6CidrBlock="fd00::/8",
                                     IcmpTypeCode={"Type": -1, "Code": -1})
        (a,) = ec2.describe_network_acls(NetworkAclIds=[acl])["NetworkAcls"]
        rows = {(e["RuleNumber"], e["Egress"]): e for e in a["Entries"]}
        assert rows[(10, False)]["Ipv6CidrBlock"] == "fd00::/8"
        assert "CidrBlock" not in rows[(10, False)]
        assert rows[(32768, True)]["Ipv6CidrBlock"] == "::/0"
        assert [x["NetworkAclId"] for x in ec2.describe_network_acls(Filters=[
            {"Name": "entry.ipv6-cidr", "Values": ["fd00::/8"]}])["NetworkAcls"]] == [acl]
        assert _code(ec2.create_network_acl_entry, NetworkAclId=acl, RuleNumber=11,
                     Egress=False, RuleAction="allow", Protocol="-1",
                     Ipv6CidrBlock="::/0", CidrBlock="0.0.0.0/0") == \
            "InvalidParameterCombination"
    finally:
        ec2.delete_network_acl(NetworkAclId=acl)
        ec2.delete_security_group(GroupId=group)
        ec2.delete_vpc(VpcId=vpc)


def test_ipv6_blocks_are_local_routes(server) -> None:
    ec2 = server.ec2()
    vpc = ec2.create_vpc(CidrBlock="10.65.0.0/16", AmazonProvidedIpv6CidrBlock=True)["Vpc"][
        "VpcId"]
    try:
        block = _vpc_block(ec2, vpc)["Ipv6CidrBlock"]
        (table,) = ec2.describe_route_tables(Filters=[
            {"Name": "route.destination-ipv6-cidr-block", "Values": [block]}])["RouteTables"]
        assert table["VpcId"] == vpc
        assert {"DestinationIpv6CidrBlock": block, "GatewayId": "local",
                "Origin": "CreateRouteTable", "State": "active"} in table["Routes"]
    finally:
        ec2.delete_vpc(VpcId=vpc)
