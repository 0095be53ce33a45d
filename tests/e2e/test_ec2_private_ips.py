"""Several private IPv4 addresses per interface through boto3: SecondaryPrivateIpAddressCount
and PrivateIpAddresses on CreateNetworkInterface, AssignPrivateIpAddresses (count, addresses,
AllowReassignment) and UnassignPrivateIpAddresses with AWS's shapes and errors; every filter
AWS documents for DescribeNetworkInterfaces; and in the kernel, a `lambdaplane run`
resource's secondary address reachable like its primary, until it is unassigned."""
from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from tests.e2e.vpc_support import reconcile_now, resource

pytestmark = pytest.mark.root


def _code(fn, **kwargs) -> str:
    with pytest.raises(ClientError) as err:
        fn(**kwargs)
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    return err.value.response["Error"]["Code"]


def _addresses(ec2, eni_id: str) -> list[tuple[str, bool]]:
    (eni,) = ec2.describe_network_interfaces(NetworkInterfaceIds=[eni_id])["NetworkInterfaces"]
    return [(a["PrivateIpAddress"], a["Primary"]) for a in eni["PrivateIpAddresses"]]


@pytest.fixture(scope="module")
def net(server):
    ec2 = server.ec2()
    vpc = ec2.create_vpc(CidrBlock="10.64.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.64.1.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName="open", Description="o", VpcId=vpc)["GroupId"]
    ec2.authorize_security_group_ingress(GroupId=group, IpPermissions=[
        {"IpProtocol": "-1", "IpRanges": [{"CidrIp": "10.64.0.0/16"}]}])
    try:
        yield {"vpc": vpc, "subnet": subnet, "group": group}
    finally:
        ec2.delete_security_group(GroupId=group)
        ec2.delete_subnet(SubnetId=subnet)
        ec2.delete_vpc(VpcId=vpc)


def test_secondary_addresses_api(server, net) -> None:
    ec2 = server.ec2()
    subnet = net["subnet"]
    free = ec2.describe_subnets(SubnetIds=[subnet])["Subnets"][0]["AvailableIpAddressCount"]
    eni = ec2.create_network_interface(SubnetId=subnet, SecondaryPrivateIpAddressCount=2)[
        "NetworkInterface"]
    other = ec2.create_network_interface(SubnetId=subnet, PrivateIpAddresses=[
        {"PrivateIpAddress": "10.64.1.50", "Primary": True},
        {"PrivateIpAddress": "10.64.1.51", "Primary": False}])["NetworkInterface"]
    try:
        eni_id, other_id = eni["NetworkInterfaceId"], other["NetworkInterfaceId"]
        shown = [(a["PrivateIpAddress"], a["Primary"]) for a in eni["PrivateIpAddresses"]]
        assert [p for _a, p in shown] == [True, False, False]
        assert len({a for a, _p in shown}) == 3
        assert _addresses(ec2, other_id) == [("10.64.1.50", True), ("10.64.1.51", False)]
        assert other["PrivateIpAddress"] == "10.64.1.50"
        assert other["PrivateIpAddresses"][0]["PrivateDnsName"] == "ip-10-64-1-50.ec2.internal"
        # secondary addresses use up the subnet's free addresses
        assert ec2.describe_subnets(SubnetIds=[subnet])["Subnets"][0][
            "AvailableIpAddressCount"] == free - 5

        out = ec2.assign_private_ip_addresses(NetworkInterfaceId=eni_id,
                                              PrivateIpAddresses=["10.64.1.60"])
        assert out["NetworkInterfaceId"] == eni_id
        assert out["AssignedPrivateIpAddresses"] == [{"PrivateIpAddress": "10.64.1.60"}]
        counted = ec2.assign_private_ip_addresses(NetworkInterfaceId=eni_id,
                                                  SecondaryPrivateIpAddressCount=1)
        assert len(counted["AssignedPrivateIpAddresses"]) == 1
        assert ("10.64.1.60", False) in _addresses(ec2, eni_id)
        # errors
        assert _code(ec2.assign_private_ip_addresses, NetworkInterfaceId=eni_id,
                     PrivateIpAddresses=["10.64.1.51"]) == "InvalidIPAddress.InUse"
        assert _code(ec2.assign_private_ip_addresses, NetworkInterfaceId=eni_id,
                     PrivateIpAddresses=["10.64.1.50"],
                     AllowReassignment=True) == "InvalidIPAddress.InUse"  # a primary stays
        assert _code(ec2.assign_private_ip_addresses, NetworkInterfaceId=eni_id,
                     PrivateIpAddresses=["10.64.2.9"]) == "InvalidParameterValue"
        assert _code(ec2.assign_private_ip_addresses, NetworkInterfaceId=eni_id,
                     PrivateIpAddresses=["10.64.1.70"], SecondaryPrivateIpAddressCount=1) == \
            "InvalidParameterCombination"
        assert _code(ec2.assign_private_ip_addresses, NetworkInterfaceId=eni_id,
                     SecondaryPrivateIpAddressCount=60) == "PrivateIpAddressLimitExceeded"
        assert _code(ec2.assign_private_ip_addresses, NetworkInterfaceId="eni-12345678",
                     SecondaryPrivateIpAddressCount=1) == "InvalidNetworkInterfaceID.NotFound"
        # AllowReassignment moves a secondary address between interfaces
        ec2.assign_private_ip_addresses(NetworkInterfaceId=eni_id,
                                        PrivateIpAddresses=["10.64.1.51"],
                                        AllowReassignment=True)
        assert _addresses(ec2, other_id) == [("10.64.1.50", True)]
        assert ("10.64.1.51", False) in _addresses(ec2, eni_id)

        # DescribeNetworkInterfaces filters
        def ids(name: str, *values: str) -> set[str]:
            return {e["NetworkInterfaceId"] for e in ec2.describe_network_interfaces(Filters=[
                {"Name": name, "Values": list(values)},
                {"Name": "vpc-id", "Values": [net["vpc"]]}])["NetworkInterfaces"]}
        assert ids("addresses.private-ip-address", "10.64.1.60") == {eni_id}
        assert ids("private-ip-address", "10.64.1.51") == {eni_id}
        assert ids("addresses.primary", "false") == {eni_id}
        assert ids("private-dns-name", "ip-10-64-1-50.ec2.internal") == {other_id}
        assert ids("availability-zone-id", "use1-az1") == {eni_id, other_id}
        assert ids("source-dest-check", "true") == {eni_id, other_id}
        assert ids("attachment.status", "attached") == set()
        assert ids("requester-id", "x") == set()
        assert ids("operator.managed", "false") == {eni_id, other_id}
        assert _code(ec2.describe_network_interfaces,
                     Filters=[{"Name": "no-such-filter", "Values": ["x"]}]) == \
            "InvalidParameterValue"

        ec2.unassign_private_ip_addresses(NetworkInterfaceId=eni_id,
                                          PrivateIpAddresses=["10.64.1.60"])
        assert ("10.64.1.60", False) not in _addresses(ec2, eni_id)
        assert _code(ec2.unassign_private_ip_addresses, NetworkInterfaceId=eni_id,
                     PrivateIpAddresses=["10.64.1.60"]) == "InvalidParameterValue"
        assert _code(ec2.unassign_private_ip_addresses, NetworkInterfaceId=eni_id,
                     PrivateIpAddresses=[eni["PrivateIpAddress"]]) == "InvalidParameterValue"
    finally:
        ec2.delete_network_interface(NetworkInterfaceId=eni["NetworkInterfaceId"])
        ec2.delete_network_interface(NetworkInterfaceId=other["NetworkInterfaceId"])
    # the addresses went with their interfaces
    assert ec2.describe_subnets(SubnetIds=[subnet])["Subnets"][0][
        "AvailableIpAddressCount"] == free


def test_secondary_address_reachable_in_the_kernel(server, net) -> None:
    ec2 = server.ec2()
    with resource(server, net["subnet"], [net["group"]], ports=(80,), ip="10.64.1.10") as srv, \
            resource(server, net["subnet"], [net["group"]], ports=(80,),
                     ip="10.64.1.20") as client:
        assert client.probe("10.64.1.11", 80) != "hello from 10.64.1.11"
        ec2.assign_private_ip_addresses(NetworkInterfaceId=srv.eni_id,
                                        PrivateIpAddresses=["10.64.1.11"])
        assert client.probe("10.64.1.11", 80) == "hello from 10.64.1.11"
        assert client.probe(srv.ip, 80) == "hello from 10.64.1.10"
        assert reconcile_now(server) == []  # the secondary address is read back exactly
        ec2.unassign_private_ip_addresses(NetworkInterfaceId=srv.eni_id,
                                          PrivateIpAddresses=["10.64.1.11"])
        assert client.probe("10.64.1.11", 80) != "hello from 10.64.1.11"
        assert client.probe(srv.ip, 80) == "hello from 10.64.1.10"
