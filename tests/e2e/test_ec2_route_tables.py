"""Route tables through boto3, as Terraform's aws_route_table / aws_route /
aws_route_table_association / aws_main_route_table_association use them: the main table each
VPC gets with its `local` route, Create/Delete/DescribeRouteTables with AWS's filters,
Create/Replace/DeleteRoute with targets checked (only network interfaces exist to route to
until gateways come), associations of subnets and of the main table, and every error code."""
from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

pytestmark = pytest.mark.root


def _code(fn, **kwargs) -> str:
    with pytest.raises(ClientError) as err:
        fn(**kwargs)
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    return err.value.response["Error"]["Code"]


def _tables(ec2, *filters: tuple[str, str]) -> list[str]:
    flt = [{"Name": n, "Values": [v]} for n, v in filters]
    return [t["RouteTableId"] for t in ec2.describe_route_tables(Filters=flt)["RouteTables"]]


def test_main_route_table_of_every_vpc(server) -> None:
    ec2 = server.ec2()
    default = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]
    (main,) = ec2.describe_route_tables(Filters=[
        {"Name": "vpc-id", "Values": [default["VpcId"]]},
        {"Name": "association.main", "Values": ["true"]}])["RouteTables"]
    # as on AWS: the default VPC's main table also sends 0.0.0.0/0 to its internet gateway
    (igw,) = ec2.describe_internet_gateways(Filters=[
        {"Name": "attachment.vpc-id", "Values": [default["VpcId"]]}])["InternetGateways"]
    assert main["Routes"] == [{"DestinationCidrBlock": "172.31.0.0/16", "GatewayId": "local",
                               "Origin": "CreateRouteTable", "State": "active"},
                              {"DestinationCidrBlock": "0.0.0.0/0",
                               "GatewayId": igw["InternetGatewayId"], "Origin": "CreateRoute",
                               "State": "active"}]
    (assoc,) = main["Associations"]
    assert assoc["Main"] is True and "SubnetId" not in assoc
    assert assoc["AssociationState"] == {"State": "associated"}
    assert assoc["RouteTableAssociationId"].startswith("rtbassoc-")
    vpc = ec2.create_vpc(CidrBlock="10.70.0.0/16")["Vpc"]["VpcId"]
    try:
        (table,) = ec2.describe_route_tables(Filters=[{"Name": "vpc-id", "Values": [vpc]}])[
            "RouteTables"]
        assert table["Routes"][0]["DestinationCidrBlock"] == "10.70.0.0/16"
        assert table["Associations"][0]["Main"] is True and table["OwnerId"]
        # the main table cannot be deleted; it goes with the VPC
        assert _code(ec2.delete_route_table, RouteTableId=table["RouteTableId"]) == \
            "DependencyViolation"
    finally:
        ec2.delete_vpc(VpcId=vpc)
    assert _code(ec2.describe_route_tables, RouteTableIds=[table["RouteTableId"]]) == \
        "InvalidRouteTableID.NotFound"


def test_routes_associations_and_filters(server) -> None:
    ec2 = server.ec2()
    vpc = ec2.create_vpc(CidrBlock="10.71.0.0/16")["Vpc"]["VpcId"]
    other = ec2.create_vpc(CidrBlock="10.72.0.0/16")["Vpc"]["VpcId"]
    s1 = ec2.create_subnet(VpcId=vpc, CidrBlock="10.71.1.0/24")["Subnet"]["SubnetId"]
    s2 = ec2.create_subnet(VpcId=vpc, CidrBlock="10.71.2.0/24")["Subnet"]["SubnetId"]
    far = ec2.create_subnet(VpcId=other, CidrBlock="10.72.1.0/24")["Subnet"]["SubnetId"]
    eni = ec2.create_network_interface(SubnetId=s1)["NetworkInterface"]["NetworkInterfaceId"]
    far_eni = ec2.create_network_interface(SubnetId=far)["NetworkInterface"][
        "NetworkInterfaceId"]
    main = _tables(ec2, ("vpc-id", vpc), ("association.main", "true"))[0]
    made = ec2.create_route_table(VpcId=vpc, TagSpecifications=[
        {"ResourceType": "route-table", "Tags": [{"Key": "Name", "Value": "private"}]}])[
        "RouteTable"]
    rtb = made["RouteTableId"]
    try:
        assert made["Associations"] == [] and made["Tags"] == [{"Key": "Name",
                                                                  "Value": "private"}]
        assert made["Routes"][0]["GatewayId"] == "local"
        assert _tables(ec2, ("tag:Name", "private")) == [rtb]
        ec2.create_tags(Resources=[rtb], Tags=[{"Key": "tier", "Value": "app"}])
        assert ec2.describe_tags(Filters=[{"Name": "resource-type", "Values": ["route-table"]}])[
            "Tags"][0]["ResourceId"] == rtb

        # routes
        assert ec2.create_route(RouteTableId=rtb, DestinationCidrBlock="192.168.0.0/16",
                                NetworkInterfaceId=eni)["Return"] is True
        assert _tables(ec2, ("route.destination-cidr-block", "192.168.0.0/16")) == [rtb]
        assert _code(ec2.create_route, RouteTableId=rtb, DestinationCidrBlock="192.168.0.0/16",
                     NetworkInterfaceId=eni) == "RouteAlreadyExists"
        for target, code in [({"GatewayId": "igw-0123456789abcdef0"}, "InvalidGatewayID.NotFound"),
                             ({"NatGatewayId": "nat-0123456789abcdef0"},
                              "InvalidNatGatewayID.NotFound"),
                             ({"VpcPeeringConnectionId": "pcx-0123456789abcdef0"},
                              "InvalidVpcPeeringConnectionID.NotFound"),
                             ({"TransitGatewayId": "tgw-0123456789abcdef0"},
                              "InvalidTransitGatewayID.NotFound"),
                             ({"InstanceId": "i-0123456789abcdef0"}, "InvalidInstanceID.NotFound"),
                             ({"NetworkInterfaceId": "eni-0123456789abcdef0"},
                              "InvalidNetworkInterfaceID.NotFound"),
                             ({"NetworkInterfaceId": far_eni}, "InvalidParameterValue"),
                             ({}, "MissingParameter"),
                             ({"NetworkInterfaceId": eni, "GatewayId": "igw-0123456789abcdef0"},
                              "InvalidParameterCombination")]:
            assert _code(ec2.create_route, RouteTableId=rtb, DestinationCidrBlock="0.0.0.0/0",
                         **target) == code, target
        assert _code(ec2.create_route, RouteTableId=rtb, DestinationCidrBlock="10.0.0.0/33",
                     NetworkInterfaceId=eni) == "InvalidParameterValue"
        assert _code(ec2.create_route, RouteTableId=rtb,
                     NetworkInterfaceId=eni) == "MissingParameter"
        assert _code(ec2.create_route, RouteTableId="rtb-0123456789abcdef0",
                     DestinationCidrBlock="0.0.0.0/0", NetworkInterfaceId=eni) == \
            "InvalidRouteTableID.NotFound"
        assert _code(ec2.create_route, RouteTableId="table-1", DestinationCidrBlock="0.0.0.0/0",
                     NetworkInterfaceId=eni) == "InvalidRouteTableId.Malformed"
        # replace: a route must exist; the local route can lead to an ENI (middlebox) and back
        second = ec2.create_network_interface(SubnetId=s2)["NetworkInterface"][
            "NetworkInterfaceId"]
        ec2.replace_route(RouteTableId=rtb, DestinationCidrBlock="192.168.0.0/16",
                          NetworkInterfaceId=second)
        assert _route(ec2, rtb, "192.168.0.0/16")["NetworkInterfaceId"] == second
        assert _code(ec2.replace_route, RouteTableId=rtb, DestinationCidrBlock="172.16.0.0/12",
                     NetworkInterfaceId=eni) == "InvalidParameterValue"
        ec2.replace_route(RouteTableId=rtb, DestinationCidrBlock="10.71.0.0/16",
                          NetworkInterfaceId=eni)
        assert _route(ec2, rtb, "10.71.0.0/16")["NetworkInterfaceId"] == eni
        ec2.replace_route(RouteTableId=rtb, DestinationCidrBlock="10.71.0.0/16", LocalTarget=True)
        assert _route(ec2, rtb, "10.71.0.0/16")["GatewayId"] == "local"
        # a route whose interface is deleted shows blackhole
        ec2.delete_network_interface(NetworkInterfaceId=second)
        assert _route(ec2, rtb, "192.168.0.0/16")["State"] == "blackhole"
        assert _tables(ec2, ("route.state", "blackhole")) == [rtb]
        assert _code(ec2.delete_route, RouteTableId=rtb,
                     DestinationCidrBlock="10.71.0.0/16") == "InvalidParameterValue"
        assert _code(ec2.delete_route, RouteTableId=rtb,
                     DestinationCidrBlock="10.9.0.0/16") == "InvalidRoute.NotFound"
        ec2.delete_route(RouteTableId=rtb, DestinationCidrBlock="192.168.0.0/16")
        assert [r["DestinationCidrBlock"] for r in ec2.describe_route_tables(
            RouteTableIds=[rtb])["RouteTables"][0]["Routes"]] == ["10.71.0.0/16"]

        # associations
        assoc = ec2.associate_route_table(RouteTableId=rtb, SubnetId=s1)
        assert assoc["AssociationState"] == {"State": "associated"}
        assert _tables(ec2, ("association.subnet-id", s1)) == [rtb]
        assert _tables(ec2, ("association.route-table-association-id",
                             assoc["AssociationId"])) == [rtb]
        assert _code(ec2.associate_route_table, RouteTableId=rtb, SubnetId=s1) == \
            "Resource.AlreadyAssociated"
        assert _code(ec2.associate_route_table, RouteTableId=rtb, SubnetId=far) == \
            "InvalidParameterValue"
        assert _code(ec2.associate_route_table, RouteTableId=rtb,
                     GatewayId="igw-0123456789abcdef0") == "InvalidGatewayID.NotFound"
        assert _code(ec2.delete_route_table, RouteTableId=rtb) == "DependencyViolation"
        assert _code(ec2.delete_vpc, VpcId=vpc) == "DependencyViolation"
        # move s1 back to the main table, by replacing its association
        moved = ec2.replace_route_table_association(AssociationId=assoc["AssociationId"],
                                                    RouteTableId=main)
        assert moved["NewAssociationId"] != assoc["AssociationId"]
        assert _tables(ec2, ("association.subnet-id", s1)) == [main]
        assert _code(ec2.disassociate_route_table, AssociationId=assoc["AssociationId"]) == \
            "InvalidAssociationID.NotFound"
        ec2.disassociate_route_table(AssociationId=moved["NewAssociationId"])
        assert _tables(ec2, ("association.subnet-id", s1)) == []
        # the main association moves to another table, and back
        (main_assoc,) = [a for a in ec2.describe_route_tables(RouteTableIds=[main])[
            "RouteTables"][0]["Associations"] if a["Main"]]
        assert _code(ec2.disassociate_route_table,
                     AssociationId=main_assoc["RouteTableAssociationId"]) == \
            "InvalidParameterValue"
        new_main = ec2.replace_route_table_association(
            AssociationId=main_assoc["RouteTableAssociationId"], RouteTableId=rtb)
        assert _tables(ec2, ("vpc-id", vpc), ("association.main", "true")) == [rtb]
        ec2.delete_route_table(RouteTableId=main)  # no longer main, no associations: it can go
        other_main = _tables(ec2, ("vpc-id", other), ("association.main", "true"))[0]
        assert _code(ec2.replace_route_table_association,
                     AssociationId=new_main["NewAssociationId"], RouteTableId=other_main) == \
            "InvalidParameterValue"
        # a subnet's association goes with the subnet
        ec2.associate_route_table(RouteTableId=rtb, SubnetId=s2)
        ec2.delete_subnet(SubnetId=s2)
        s2 = None
        assert all("SubnetId" not in a for a in ec2.describe_route_tables(
            RouteTableIds=[rtb])["RouteTables"][0]["Associations"])
        # pagination
        page = ec2.describe_route_tables(MaxResults=5)
        assert len(page["RouteTables"]) <= 5
        assert _code(ec2.describe_route_tables, Filters=[{"Name": "route.colour",
                                                          "Values": ["x"]}]) == \
            "InvalidParameterValue"
    finally:
        ec2.delete_network_interface(NetworkInterfaceId=eni)
        ec2.delete_network_interface(NetworkInterfaceId=far_eni)
        for sid in (s1, s2, far):
            if sid:
                ec2.delete_subnet(SubnetId=sid)
        ec2.delete_vpc(VpcId=vpc)
        ec2.delete_vpc(VpcId=other)
    assert ec2.describe_route_tables(Filters=[{"Name": "vpc-id", "Values": [vpc]}])[
        "RouteTables"] == []


def _route(ec2, rtb: str, destination: str) -> dict:
    table = ec2.describe_route_tables(RouteTableIds=[rtb])["RouteTables"][0]
    return next(r for r in table["Routes"] if r["DestinationCidrBlock"] == destination)


def test_vpcs_stored_before_route_tables_get_their_main_table(fresh_server) -> None:
    """A store from before route tables existed: at start each VPC gets its main table."""
    import sqlite3

    ec2 = fresh_server.ec2()
    vpc = ec2.create_vpc(CidrBlock="10.73.0.0/16")["Vpc"]["VpcId"]
    fresh_server.stop()
    db = sqlite3.connect(fresh_server.data_dir / "lambdaplane.sqlite3")
    with db:
        db.execute("DELETE FROM ec2_route_table_associations")
        db.execute("DELETE FROM ec2_routes")
        db.execute("DELETE FROM ec2_route_tables")
    db.close()
    fresh_server.start()
    ec2 = fresh_server.ec2()
    mains = ec2.describe_route_tables(Filters=[{"Name": "association.main",
                                                "Values": ["true"]}])["RouteTables"]
    assert {t["VpcId"] for t in mains} == {v["VpcId"] for v in ec2.describe_vpcs()["Vpcs"]}
    (table,) = [t for t in mains if t["VpcId"] == vpc]
    assert table["Routes"][0]["DestinationCidrBlock"] == "10.73.0.0/16"
    fresh_server.restart()  # nothing more is made the next time
    assert len(fresh_server.ec2().describe_route_tables()["RouteTables"]) == len(mains)
