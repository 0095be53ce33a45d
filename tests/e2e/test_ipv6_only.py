"""IPv6-only subnets (CreateSubnet Ipv6Native) through boto3: AWS's shape and errors, their
settings, interfaces with only IPv6 addresses, `lambdaplane run` resources in them that reach
dual-stack neighbours and each other over IPv6 with security groups and network ACLs deciding
in the kernel (and again after a server restart), and Lambda refusing them."""
from __future__ import annotations

import ipaddress
import subprocess

import pytest
from botocore.exceptions import ClientError

from lambdaplane.net.names import Names
from tests.e2e.test_ipv6 import _ipv6_of, _listener, _probe
from tests.e2e.vpc_support import reconcile_now
from tests.harness import create_python_function

pytestmark = pytest.mark.root


def _error(fn, *args, **kwargs) -> tuple[str, str]:
    with pytest.raises(ClientError) as err:
        fn(*args, **kwargs)
    return err.value.response["Error"]["Code"], err.value.response["Error"]["Message"]


def _code(fn, **kwargs) -> str:
    return _error(fn, **kwargs)[0]


def _blocks(ec2, cidr: str) -> tuple[str, list[ipaddress.IPv6Network]]:
    vpc = ec2.create_vpc(CidrBlock=cidr, AmazonProvidedIpv6CidrBlock=True)["Vpc"]["VpcId"]
    (block,) = ec2.describe_vpcs(VpcIds=[vpc])["Vpcs"][0]["Ipv6CidrBlockAssociationSet"]
    return vpc, list(ipaddress.IPv6Network(block["Ipv6CidrBlock"]).subnets(new_prefix=64))[:4]


def test_ipv6_only_subnet_api(server) -> None:
    ec2 = server.ec2()
    vpc, (first, second, *_) = _blocks(ec2, "10.80.0.0/16")
    plain = ec2.create_vpc(CidrBlock="10.81.0.0/16")["Vpc"]["VpcId"]
    made: list[str] = []
    try:
        out = ec2.create_subnet(VpcId=vpc, Ipv6Native=True, Ipv6CidrBlock=str(first))["Subnet"]
        sid = out["SubnetId"]
        made.append(sid)
        (subnet,) = ec2.describe_subnets(SubnetIds=[sid])["Subnets"]
        assert subnet == out
        assert "CidrBlock" not in subnet and subnet["Ipv6Native"] is True
        assert [a["Ipv6CidrBlock"] for a in subnet["Ipv6CidrBlockAssociationSet"]] == \
            [str(first)]
        assert subnet["AssignIpv6AddressOnCreation"] is True
        assert subnet["MapPublicIpOnLaunch"] is False and subnet["EnableDns64"] is False
        assert subnet["AvailableIpAddressCount"] == 0
        assert subnet["PrivateDnsNameOptionsOnLaunch"] == {
            "HostnameType": "resource-name", "EnableResourceNameDnsARecord": False,
            "EnableResourceNameDnsAAAARecord": False}
        # filters
        for name, value in [("ipv6-native", "true"), ("vpc-id", vpc),
                            ("ipv6-cidr-block-association.ipv6-cidr-block", str(first))]:
            found = [s["SubnetId"] for s in ec2.describe_subnets(Filters=[
                {"Name": name, "Values": [value]}])["Subnets"]]
            assert sid in found, name
        dual = ec2.create_subnet(VpcId=vpc, CidrBlock="10.80.1.0/24",
                                 Ipv6CidrBlock=str(second))["Subnet"]["SubnetId"]
        made.append(dual)
        assert [s["SubnetId"] for s in ec2.describe_subnets(Filters=[
            {"Name": "vpc-id", "Values": [vpc]}, {"Name": "ipv6-native", "Values": ["false"]}])[
            "Subnets"]] == [dual]

        # CreateSubnet's errors
        assert _code(ec2.create_subnet, VpcId=vpc, Ipv6Native=True, CidrBlock="10.80.2.0/24",
                     Ipv6CidrBlock=str(first)) == "InvalidParameterCombination"
        assert _code(ec2.create_subnet, VpcId=vpc, Ipv6Native=True) == "MissingParameter"
        assert _code(ec2.create_subnet, VpcId=vpc) == "MissingParameter"  # neither block
        assert _code(ec2.create_subnet, VpcId=vpc, Ipv6Native=True,
                     Ipv6CidrBlock=str(first)) == "InvalidSubnet.Conflict"
        assert _code(ec2.create_subnet, VpcId=plain, Ipv6Native=True,
                     Ipv6CidrBlock=str(first)) == "InvalidSubnet.Range"  # no IPv6 in the VPC
        assert _code(ec2.create_subnet, VpcId=vpc, Ipv6Native=True,
                     Ipv6CidrBlock=str(ipaddress.IPv6Network(first).supernet(4))) == \
            "InvalidParameterValue"  # not a /64
        assert len(ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc]}])[
            "Subnets"]) == 2  # nothing left behind

        # ModifySubnetAttribute: DNS64 and AAAA records; what needs IPv4 is refused
        ec2.modify_subnet_attribute(SubnetId=sid, EnableDns64={"Value": True})
        ec2.modify_subnet_attribute(SubnetId=sid,
                                    EnableResourceNameDnsAAAARecordOnLaunch={"Value": True})
        (subnet,) = ec2.describe_subnets(SubnetIds=[sid])["Subnets"]
        assert subnet["EnableDns64"] is True
        assert subnet["PrivateDnsNameOptionsOnLaunch"]["EnableResourceNameDnsAAAARecord"] is True
        assert [s["SubnetId"] for s in ec2.describe_subnets(Filters=[
            {"Name": "enable-dns64", "Values": ["true"]}])["Subnets"]] == [sid]
        for kwargs in ({"MapPublicIpOnLaunch": {"Value": True}},
                       {"AssignIpv6AddressOnCreation": {"Value": False}},
                       {"EnableResourceNameDnsARecordOnLaunch": {"Value": True}},
                       {"PrivateDnsHostnameTypeOnLaunch": "ip-name"}):
            assert _code(ec2.modify_subnet_attribute, SubnetId=sid, **kwargs) == \
                "InvalidParameterValue", kwargs
        ec2.modify_subnet_attribute(SubnetId=sid, PrivateDnsHostnameTypeOnLaunch="resource-name")
        ec2.modify_subnet_attribute(SubnetId=sid, EnableDns64={"Value": False})

        # interfaces: IPv6 addresses only
        eni = ec2.create_network_interface(SubnetId=sid)["NetworkInterface"]
        eid = eni["NetworkInterfaceId"]
        assert "PrivateIpAddress" not in eni and eni["PrivateIpAddresses"] == []
        assert eni["Ipv6Native"] is True
        (address,) = [a["Ipv6Address"] for a in eni["Ipv6Addresses"]]
        assert ipaddress.IPv6Address(address) in first
        assert ec2.describe_network_interfaces(NetworkInterfaceIds=[eid])[
            "NetworkInterfaces"][0] == eni
        two = ec2.create_network_interface(SubnetId=sid, Ipv6AddressCount=2)["NetworkInterface"]
        assert len(two["Ipv6Addresses"]) == 2  # two IPv6-only interfaces side by side
        ec2.delete_network_interface(NetworkInterfaceId=two["NetworkInterfaceId"])
        dual_eni = ec2.create_network_interface(SubnetId=dual)["NetworkInterface"]
        assert dual_eni["Ipv6Native"] is False and dual_eni["PrivateIpAddress"]
        ec2.delete_network_interface(NetworkInterfaceId=dual_eni["NetworkInterfaceId"])
        for kwargs in ({"PrivateIpAddress": "10.80.3.10"},
                       {"SecondaryPrivateIpAddressCount": 1},
                       {"PrivateIpAddresses": [{"PrivateIpAddress": "10.80.3.10",
                                                "Primary": True}]}):
            assert _code(ec2.create_network_interface, SubnetId=sid, **kwargs) == \
                "InvalidParameterCombination", kwargs
        assert _code(ec2.assign_private_ip_addresses, NetworkInterfaceId=eid,
                     SecondaryPrivateIpAddressCount=1) == "InvalidParameterValue"
        assert _code(ec2.create_subnet_cidr_reservation, SubnetId=sid, Cidr="10.80.0.0/28",
                     ReservationType="explicit") == "InvalidParameterValue"
        assert _code(ec2.create_nat_gateway, SubnetId=sid,
                     ConnectivityType="private") == "InvalidSubnet"
        assert _code(ec2.create_vpc_endpoint, VpcId=vpc, VpcEndpointType="Interface",
                     ServiceName="com.amazonaws.us-east-1.lambda", SubnetIds=[sid],
                     PrivateDnsEnabled=False) == "InvalidSubnet"
        assert ec2.describe_vpc_endpoints(Filters=[{"Name": "vpc-id", "Values": [vpc]}])[
            "VpcEndpoints"] == []
        # its only IPv6 address stays; a second one may go
        assert _code(ec2.unassign_ipv6_addresses, NetworkInterfaceId=eid,
                     Ipv6Addresses=[address]) == "InvalidParameterValue"
        (more,) = ec2.assign_ipv6_addresses(NetworkInterfaceId=eid, Ipv6AddressCount=1)[
            "AssignedIpv6Addresses"]
        ec2.unassign_ipv6_addresses(NetworkInterfaceId=eid, Ipv6Addresses=[address])
        ec2.assign_ipv6_addresses(NetworkInterfaceId=eid, Ipv6Addresses=[address])
        ec2.unassign_ipv6_addresses(NetworkInterfaceId=eid, Ipv6Addresses=[more])
        # the only block stays while the subnet lives
        assoc = subnet["Ipv6CidrBlockAssociationSet"][0]["AssociationId"]
        assert _code(ec2.disassociate_subnet_cidr_block, AssociationId=assoc) == \
            "InvalidCidrBlock.InUse"
        assert _code(ec2.delete_subnet, SubnetId=sid) == "DependencyViolation"
        ec2.delete_network_interface(NetworkInterfaceId=eid)
        assert ec2.describe_network_interfaces(Filters=[
            {"Name": "subnet-id", "Values": [sid]}])["NetworkInterfaces"] == []
    finally:
        for s in made:
            ec2.delete_subnet(SubnetId=s)
        ec2.delete_vpc(VpcId=vpc)
        ec2.delete_vpc(VpcId=plain)


def _ipv4_addresses(netns: str) -> list[str]:
    out = subprocess.run(["ip", "-n", netns, "-4", "-o", "addr", "show"], capture_output=True,
                         text=True, check=True).stdout
    return [line.split()[3] for line in out.splitlines() if " lo " not in line]


def test_ipv6_only_resources_in_the_kernel(server) -> None:
    """Resources of an IPv6-only subnet have IPv6 addresses only, reach a dual-stack neighbour
    and each other over IPv6, and security groups and network ACLs decide."""
    ec2 = server.ec2()
    vpc, (first, second, *_) = _blocks(ec2, "10.82.0.0/16")
    only = ec2.create_subnet(VpcId=vpc, Ipv6Native=True,
                             Ipv6CidrBlock=str(first))["Subnet"]["SubnetId"]
    dual = ec2.create_subnet(VpcId=vpc, CidrBlock="10.82.1.0/24",
                             Ipv6CidrBlock=str(second))["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName="web6", Description="w", VpcId=vpc)["GroupId"]
    ec2.authorize_security_group_ingress(GroupId=group, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80,
         "Ipv6Ranges": [{"CidrIpv6": "::/0"}]}])
    acl = ec2.create_network_acl(VpcId=vpc)["NetworkAcl"]["NetworkAclId"]
    tables: list[str] = []
    try:
        with _listener(server, only, [group], None) as a, \
                _listener(server, only, [group], None) as b, \
                _listener(server, dual, [group], "10.82.1.10") as d:
            assert a.ip == "" and b.ip == ""  # no IPv4 address at all
            assert _ipv4_addresses(a.netns) == []
            a6, b6, d6 = _ipv6_of(ec2, a), _ipv6_of(ec2, b), _ipv6_of(ec2, d)
            assert ipaddress.IPv6Address(a6) in first and ipaddress.IPv6Address(d6) in second
            # IPv6 across subnets, both ways, and within the IPv6-only subnet
            assert _probe(a, d6, 80) == f"hello from {d6}"
            assert _probe(d, a6, 80) == f"hello from {a6}"
            assert _probe(a, b6, 80) == f"hello from {b6}"
            # the group decides: port 81 is not allowed
            assert _probe(a, d6, 81) == "timeout"
            assert _probe(d, "10.82.1.10", 80) == "hello from 10.82.1.10"  # IPv4 beside it
            assert reconcile_now(server) == []  # the state is read back exactly
            # an IPv4 route to an interface without IPv4 leads nowhere (a blackhole)
            table = ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"]
            tables.append(table)
            ec2.associate_route_table(RouteTableId=table, SubnetId=dual)
            ec2.create_route(RouteTableId=table, DestinationCidrBlock="192.168.0.0/16",
                             NetworkInterfaceId=a.eni_id)
            assert reconcile_now(server) == []
            routes = subprocess.run(
                ["ip", "-n", Names(server.instance).vpc_netns(vpc), "route", "show", "table",
                 "all"], capture_output=True, text=True, check=True).stdout
            assert "blackhole 192.168.0.0/16" in routes
            assert _probe(d, a6, 80) == f"hello from {a6}"
            # a network ACL on the IPv6-only subnet: only the `*` entries, then an allow
            assoc = next(x["NetworkAclAssociationId"] for x in ec2.describe_network_acls(
                Filters=[{"Name": "association.subnet-id", "Values": [only]}])[
                "NetworkAcls"][0]["Associations"] if x["SubnetId"] == only)
            ec2.replace_network_acl_association(AssociationId=assoc, NetworkAclId=acl)
            assert _probe(d, a6, 80) == "timeout"
            assert _probe(a, d6, 80) == "timeout"
            assert _probe(a, b6, 80) == f"hello from {b6}"  # never within a subnet
            for egress in (False, True):
                ec2.create_network_acl_entry(NetworkAclId=acl, RuleNumber=100, Egress=egress,
                                             RuleAction="allow", Protocol="-1",
                                             Ipv6CidrBlock="::/0")
            assert _probe(d, a6, 80) == f"hello from {a6}"
            ec2.create_network_acl_entry(NetworkAclId=acl, RuleNumber=50, Egress=False,
                                         RuleAction="deny", Protocol="6",
                                         Ipv6CidrBlock=str(second),
                                         PortRange={"From": 80, "To": 80})
            assert _probe(d, a6, 80) == "timeout"  # a deny the group allowed
            ec2.delete_network_acl_entry(NetworkAclId=acl, RuleNumber=50, Egress=False)
            assert _probe(d, a6, 80) == f"hello from {a6}"
            # revoking the group's rule closes it again
            ec2.revoke_security_group_ingress(GroupId=group, IpPermissions=[
                {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80,
                 "Ipv6Ranges": [{"CidrIpv6": "::/0"}]}])
            assert _probe(d, a6, 80) == "timeout"
            assert _probe(a, b6, 80) == "timeout"
            default = next(x["NetworkAclId"] for x in ec2.describe_network_acls(Filters=[
                {"Name": "vpc-id", "Values": [vpc]},
                {"Name": "default", "Values": ["true"]}])["NetworkAcls"])
            assoc = next(x["NetworkAclAssociationId"] for x in ec2.describe_network_acls(
                NetworkAclIds=[acl])["NetworkAcls"][0]["Associations"])
            ec2.replace_network_acl_association(AssociationId=assoc, NetworkAclId=default)
    finally:
        for table in tables:
            for assoc in ec2.describe_route_tables(RouteTableIds=[table])["RouteTables"][0][
                    "Associations"]:
                ec2.disassociate_route_table(AssociationId=assoc["RouteTableAssociationId"])
            ec2.delete_route_table(RouteTableId=table)
        ec2.delete_network_acl(NetworkAclId=acl)
        ec2.delete_security_group(GroupId=group)
        for s in (only, dual):
            ec2.delete_subnet(SubnetId=s)
        ec2.delete_vpc(VpcId=vpc)


def test_lambda_refuses_ipv6_only_subnets(server) -> None:
    """AWS: Lambda connects to dual-stack subnets only; an IPv6-only one is refused, with or
    without Ipv6AllowedForDualStack, and nothing is made."""
    ec2, lam = server.ec2(), server.lambda_()
    vpc, (first, second, *_) = _blocks(ec2, "10.83.0.0/16")
    only = ec2.create_subnet(VpcId=vpc, Ipv6Native=True,
                             Ipv6CidrBlock=str(first))["Subnet"]["SubnetId"]
    dual = ec2.create_subnet(VpcId=vpc, CidrBlock="10.83.1.0/24",
                             Ipv6CidrBlock=str(second))["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName="fn", Description="f", VpcId=vpc)["GroupId"]
    try:
        for dual_stack in (True, False):
            config = {"SubnetIds": [dual, only], "SecurityGroupIds": [group],
                      "Ipv6AllowedForDualStack": dual_stack}
            code, message = _error(create_python_function, lam, "v6only", "def handler(e, c):"
                                   " return 1", VpcConfig=config)
            assert code == "InvalidParameterValueException" and only in message
        assert lam.list_functions()["Functions"] == []
        create_python_function(lam, "v6dual", "def handler(e, c): return 1", wait=False)
        lam.get_waiter("function_active_v2").wait(FunctionName="v6dual",
                                                  WaiterConfig={"Delay": 0.2, "MaxAttempts": 150})
        code, _ = _error(lam.update_function_configuration, FunctionName="v6dual",
                         VpcConfig={"SubnetIds": [only], "SecurityGroupIds": [group],
                                    "Ipv6AllowedForDualStack": True})
        assert code == "InvalidParameterValueException"
        assert lam.get_function_configuration(FunctionName="v6dual").get(
            "VpcConfig", {}).get("SubnetIds", []) == []
        lam.delete_function(FunctionName="v6dual")
        assert ec2.describe_network_interfaces(Filters=[
            {"Name": "vpc-id", "Values": [vpc]}])["NetworkInterfaces"] == []
    finally:
        ec2.delete_security_group(GroupId=group)
        for s in (only, dual):
            ec2.delete_subnet(SubnetId=s)
        ec2.delete_vpc(VpcId=vpc)


def test_ipv6_only_resources_survive_a_restart(fresh_server) -> None:
    """The store gives an IPv6-only interface back without an IPv4 address; after a restart
    the running resources are adopted and still reach each other over IPv6."""
    server = fresh_server
    ec2 = server.ec2()
    vpc, (first, *_) = _blocks(ec2, "10.84.0.0/16")
    only = ec2.create_subnet(VpcId=vpc, Ipv6Native=True,
                             Ipv6CidrBlock=str(first))["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName="web6", Description="w", VpcId=vpc)["GroupId"]
    ec2.authorize_security_group_ingress(GroupId=group, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80,
         "Ipv6Ranges": [{"CidrIpv6": "::/0"}]}])
    with _listener(server, only, [group], None) as a, \
            _listener(server, only, [group], None) as b:
        for r in (a, b):  # listening before the first probe (else a refusal, under load)
            assert r.proc.stdout is not None and r.proc.stdout.readline().strip() == "listening"
        b6 = _ipv6_of(ec2, b)
        assert _probe(a, b6, 80) == f"hello from {b6}"
        server.restart()
        ec2 = server.ec2()
        (eni,) = ec2.describe_network_interfaces(NetworkInterfaceIds=[a.eni_id])[
            "NetworkInterfaces"]
        assert "PrivateIpAddress" not in eni and eni["Ipv6Native"] is True
        assert _probe(a, b6, 80) == f"hello from {b6}"
        assert reconcile_now(server) == []
        assert _ipv4_addresses(a.netns) == []
