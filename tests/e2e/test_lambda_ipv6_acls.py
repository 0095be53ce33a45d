"""Network ACLs and a dual-stack function's IPv6 flows: an `Ipv6CidrBlock` entry naming the
Hyperplane ENI's IPv6 address decides them at the resource's subnet boundary, both ways (the
NAT66 to that address comes after the ACLs, as the SNAT to the IPv4 address does), while an
entry naming another address does not."""
from __future__ import annotations

import ipaddress

import pytest

from tests.e2e.test_lambda_ipv6 import (
    PORT6,
    _function,
    _invoke,
    _lambda_eni,
    dual_stack_vpc,
    ipv6_peer,
)
from tests.harness import LiveServer

pytestmark = pytest.mark.root


def _allow_all(ec2, acl: str) -> None:
    for egress in (False, True):
        ec2.create_network_acl_entry(NetworkAclId=acl, RuleNumber=100, Egress=egress,
                                     RuleAction="allow", Protocol="-1", CidrBlock="0.0.0.0/0")
        ec2.create_network_acl_entry(NetworkAclId=acl, RuleNumber=101, Egress=egress,
                                     RuleAction="allow", Protocol="-1", Ipv6CidrBlock="::/0")


def test_acl_entries_name_the_enis_ipv6_address(server: LiveServer) -> None:
    ec2, lam = server.ec2(), server.lambda_()
    net = dual_stack_vpc(ec2, 74)
    vpc, apps, data, fn = net.vpc, net.apps, net.data, net.fn
    acl = ec2.create_network_acl(VpcId=vpc)["NetworkAcl"]["NetworkAclId"]
    _allow_all(ec2, acl)
    (default,) = ec2.describe_network_acls(Filters=[
        {"Name": "association.subnet-id", "Values": [data]}])["NetworkAcls"]
    assoc = next(a["NetworkAclAssociationId"] for a in default["Associations"]
                 if a["SubnetId"] == data)
    try:
        with ipv6_peer(server, net) as (_svc, svc6):
            _function(server, "v6-acl", apps, fn, True)
            (eni6,) = [a["Ipv6Address"] for a in _lambda_eni(ec2, apps)["Ipv6Addresses"]]
            event = {"host": svc6, "port": PORT6}
            assoc = ec2.replace_network_acl_association(AssociationId=assoc,
                                                        NetworkAclId=acl)["NewAssociationId"]
            assert _invoke(lam, "v6-acl", event) == f"peer {eni6}"
            # inbound at the resource's subnet: a deny naming another address lets it through
            other = str(ipaddress.IPv6Address(eni6) + 1)
            ec2.create_network_acl_entry(NetworkAclId=acl, RuleNumber=50, Egress=False,
                                         RuleAction="deny", Protocol="6",
                                         Ipv6CidrBlock=f"{other}/128",
                                         PortRange={"From": PORT6, "To": PORT6})
            assert _invoke(lam, "v6-acl", event) == f"peer {eni6}"
            # ... one naming the ENI's IPv6 address drops what the groups allowed
            ec2.replace_network_acl_entry(NetworkAclId=acl, RuleNumber=50, Egress=False,
                                          RuleAction="deny", Protocol="6",
                                          Ipv6CidrBlock=f"{eni6}/128",
                                          PortRange={"From": PORT6, "To": PORT6})
            assert _invoke(lam, "v6-acl", event).startswith("error")
            ec2.delete_network_acl_entry(NetworkAclId=acl, RuleNumber=50, Egress=False)
            assert _invoke(lam, "v6-acl", event) == f"peer {eni6}"
            # outbound: the replies to the ENI's address on their ephemeral ports (stateless)
            ec2.create_network_acl_entry(NetworkAclId=acl, RuleNumber=50, Egress=True,
                                         RuleAction="deny", Protocol="6",
                                         Ipv6CidrBlock=f"{eni6}/128",
                                         PortRange={"From": 1024, "To": 65535})
            assert _invoke(lam, "v6-acl", event).startswith("error")
            ec2.delete_network_acl_entry(NetworkAclId=acl, RuleNumber=50, Egress=True)
            assert _invoke(lam, "v6-acl", event) == f"peer {eni6}"
    finally:
        ec2.replace_network_acl_association(AssociationId=assoc,
                                            NetworkAclId=default["NetworkAclId"])
        try:
            lam.delete_function(FunctionName="v6-acl")
        except lam.exceptions.ResourceNotFoundException:
            pass
