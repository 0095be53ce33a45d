"""Subnet CIDR reservations through boto3 (Create/DeleteSubnetCidrReservation,
GetSubnetCidrReservations with its filters, tags and errors): addresses in a reservation are
never given to a new interface automatically, and can still be asked for."""
from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

pytestmark = pytest.mark.root


def _code(fn, **kwargs) -> str:
    with pytest.raises(ClientError) as err:
        fn(**kwargs)
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    return err.value.response["Error"]["Code"]


def test_reservations(server) -> None:
    ec2 = server.ec2()
    vpc = ec2.create_vpc(CidrBlock="10.98.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.98.1.0/24")["Subnet"]["SubnetId"]
    enis: list[str] = []
    try:
        made = ec2.create_subnet_cidr_reservation(
            SubnetId=subnet, Cidr="10.98.1.0/27", ReservationType="explicit",
            Description="appliances", TagSpecifications=[
                {"ResourceType": "subnet-cidr-reservation",
                 "Tags": [{"Key": "Name", "Value": "low"}]}])["SubnetCidrReservation"]
        rid = made["SubnetCidrReservationId"]
        assert rid.startswith("scr-") and made["Cidr"] == "10.98.1.0/27"
        assert made["ReservationType"] == "explicit" and made["Description"] == "appliances"
        assert made["Tags"] == [{"Key": "Name", "Value": "low"}] and made["OwnerId"]
        prefix = ec2.create_subnet_cidr_reservation(
            SubnetId=subnet, Cidr="10.98.1.64/28", ReservationType="prefix")[
            "SubnetCidrReservation"]["SubnetCidrReservationId"]
        got = ec2.get_subnet_cidr_reservations(SubnetId=subnet)
        assert [r["SubnetCidrReservationId"] for r in got["SubnetIpv4CidrReservations"]] == \
            [rid, prefix]
        assert got["SubnetIpv6CidrReservations"] == []
        assert [r["SubnetCidrReservationId"] for r in ec2.get_subnet_cidr_reservations(
            SubnetId=subnet, Filters=[{"Name": "reservationType", "Values": ["prefix"]}])[
            "SubnetIpv4CidrReservations"]] == [prefix]
        assert [r["SubnetCidrReservationId"] for r in ec2.get_subnet_cidr_reservations(
            SubnetId=subnet, Filters=[{"Name": "tag:Name", "Values": ["low"]}])[
            "SubnetIpv4CidrReservations"]] == [rid]
        assert ec2.describe_tags(Filters=[{"Name": "resource-type", "Values": [
            "subnet-cidr-reservation"]}])["Tags"][0]["ResourceId"] == rid

        # automatic addresses skip the reservations; an explicit one may come from them
        auto = ec2.create_network_interface(SubnetId=subnet)["NetworkInterface"]
        enis.append(auto["NetworkInterfaceId"])
        assert auto["PrivateIpAddress"] == "10.98.1.32"
        asked = ec2.create_network_interface(SubnetId=subnet, PrivateIpAddress="10.98.1.10")[
            "NetworkInterface"]
        enis.append(asked["NetworkInterfaceId"])
        assert asked["PrivateIpAddress"] == "10.98.1.10"

        # errors
        for kwargs, code in [
                (dict(Cidr="10.98.2.0/28", ReservationType="explicit"), "InvalidParameterValue"),
                (dict(Cidr="10.98.1.16/28", ReservationType="explicit"), "InvalidParameterValue"),
                (dict(Cidr="10.98.1.128/28", ReservationType="both"), "InvalidParameterValue"),
                (dict(Cidr="10.98.1.128/33", ReservationType="prefix"), "InvalidParameterValue")]:
            assert _code(ec2.create_subnet_cidr_reservation, SubnetId=subnet, **kwargs) == code
        assert _code(ec2.create_subnet_cidr_reservation, SubnetId="subnet-0123456789abcdef0",
                     Cidr="10.98.1.128/28", ReservationType="prefix") == \
            "InvalidSubnetID.NotFound"
        assert _code(ec2.delete_subnet_cidr_reservation,
                     SubnetCidrReservationId="scr-0123456789abcdef0") == \
            "InvalidSubnetCidrReservationID.NotFound"
        assert _code(ec2.get_subnet_cidr_reservations, SubnetId=subnet, Filters=[
            {"Name": "colour", "Values": ["x"]}]) == "InvalidParameterValue"

        gone = ec2.delete_subnet_cidr_reservation(SubnetCidrReservationId=rid)
        assert gone["DeletedSubnetCidrReservation"]["SubnetCidrReservationId"] == rid
        assert [r["SubnetCidrReservationId"] for r in ec2.get_subnet_cidr_reservations(
            SubnetId=subnet)["SubnetIpv4CidrReservations"]] == [prefix]
        again = ec2.create_network_interface(SubnetId=subnet)["NetworkInterface"]
        enis.append(again["NetworkInterfaceId"])
        assert again["PrivateIpAddress"] == "10.98.1.4"  # the range is free again
    finally:
        for eni in enis:
            ec2.delete_network_interface(NetworkInterfaceId=eni)
        ec2.delete_subnet(SubnetId=subnet)  # its reservations go with it
        ec2.delete_vpc(VpcId=vpc)
    assert ec2.describe_tags(Filters=[{"Name": "resource-type", "Values": [
        "subnet-cidr-reservation"]}])["Tags"] == []
