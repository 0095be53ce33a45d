"""service/vpc_config.py against a real EC2 store (SQLite, no kernel): Lambda's checks on a
VpcConfig and the exact errors, including EC2's wrapped in Lambda's words."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from lambdaplane.config import Settings
from lambdaplane.errors import AwsError
from lambdaplane.net.names import Names
from lambdaplane.service.ec2_ids import new_id
from lambdaplane.service.vpc import VpcService
from lambdaplane.model.vpc_config import VpcConfig
from lambdaplane.service.vpc_config import ValidatedVpcConfig, validate_vpc_config
from lambdaplane.store.db import Database
from lambdaplane.store.ec2 import SecurityGroup, Subnet, Vpc

REGION = "us-east-1"


class World:
    def __init__(self, svc: VpcService) -> None:
        self.svc = svc
        self.vpc, self.subnets, self.groups = self._vpc("10.1.0.0/16")
        self.other_vpc, self.other_subnets, self.other_groups = self._vpc("10.2.0.0/16")

    def _vpc(self, cidr: str) -> tuple[str, list[str], list[str]]:
        vpc = Vpc(new_id("vpc"), REGION, cidr, False)
        self.svc.store.add_vpc(vpc)
        prefix = cidr.split(".0.0/")[0]
        subnets = [Subnet(new_id("subnet"), REGION, vpc.id, f"{prefix}.{i}.0/24", "us-east-1a",
                          False) for i in range(1, 4)]
        groups = [SecurityGroup(new_id("sg"), REGION, vpc.id, f"g{i}", "g") for i in range(6)]
        for s in subnets:
            self.svc.store.add_subnet(s)
        for g in groups:
            self.svc.store.add_group(g)
        return vpc.id, [s.id for s in subnets], [g.id for g in groups]


@pytest.fixture
def world(tmp_path: Path, database_url: str | None) -> Iterator[World]:
    db = Database.open(tmp_path, database_url)
    svc = VpcService(Settings(data_dir=tmp_path), Names("u00"), db, None)  # type: ignore[arg-type]
    svc.ensure_region(REGION)
    yield World(svc)
    db.close()


def _typed(config: dict | None) -> VpcConfig | None:
    """The request's VpcConfig as the function record keeps it."""
    return None if config is None else VpcConfig.from_request(config)


def _fails(world: World, config: dict) -> AwsError:
    with pytest.raises(AwsError) as err:
        validate_vpc_config(world.svc, REGION, _typed(config))
    return err.value


def test_valid_config_is_normalised(world: World) -> None:
    config = {"SubnetIds": [world.subnets[1], world.subnets[0], world.subnets[1]],
              "SecurityGroupIds": [world.groups[2], world.groups[0]]}
    got = validate_vpc_config(world.svc, REGION, _typed(config))
    assert got == ValidatedVpcConfig(world.vpc, tuple(sorted(world.subnets[:2])),
                                     tuple(sorted([world.groups[0], world.groups[2]])))
    assert got.attached


@pytest.mark.parametrize("config", [{}, None, {"SubnetIds": [], "SecurityGroupIds": []}])
def test_empty_lists_detach(world: World, config: dict | None) -> None:
    got = validate_vpc_config(world.svc, REGION, _typed(config))
    assert got == ValidatedVpcConfig("", (), ()) and not got.attached


def test_both_lists_or_neither(world: World) -> None:
    for config in ({"SubnetIds": [world.subnets[0]]}, {"SecurityGroupIds": [world.groups[0]]}):
        err = _fails(world, config)
        assert (err.code, err.status) == ("InvalidParameterValueException", 400)
        assert err.message == "SubnetIds and SecurityIds must coexist or be both empty list."


def test_missing_and_malformed_ids_carry_ec2_s_error(world: World) -> None:
    err = _fails(world, {"SubnetIds": ["subnet-0123456789abcdef0"],
                         "SecurityGroupIds": [world.groups[0]]})
    assert err.code == "InvalidParameterValueException"
    assert err.message == ("Error occurred while DescribeSubnets. EC2 Error Code: "
                           "InvalidSubnetID.NotFound. EC2 Error Message: The subnet ID "
                           "'subnet-0123456789abcdef0' does not exist")
    assert err.extra["ReasonCode"] == "InvalidSubnet"
    err = _fails(world, {"SubnetIds": [world.subnets[0]],
                         "SecurityGroupIds": ["sg-0123456789abcdef0"]})
    assert err.message == ("Error occurred while DescribeSecurityGroups. EC2 Error Code: "
                           "InvalidGroup.NotFound. EC2 Error Message: The security group "
                           "'sg-0123456789abcdef0' does not exist")
    assert err.extra["ReasonCode"] == "InvalidSecurityGroup"
    err = _fails(world, {"SubnetIds": [world.subnets[0]], "SecurityGroupIds": ["subnet-1234abcd"]})
    assert err.message == ("Error occurred while DescribeSecurityGroups. EC2 Error Code: "
                           "InvalidGroupId.Malformed. EC2 Error Message: Invalid id: "
                           '"subnet-1234abcd" (expecting "sg-...")')


def test_one_vpc_only(world: World) -> None:
    err = _fails(world, {"SubnetIds": [world.subnets[0], world.other_subnets[0]],
                         "SecurityGroupIds": [world.groups[0]]})
    assert err.code == "InvalidParameterValueException" and "same VPC" in err.message
    err = _fails(world, {"SubnetIds": [world.subnets[0]],
                         "SecurityGroupIds": [world.groups[0], world.other_groups[0]]})
    assert err.message == "Security Groups are required to be in the same VPC."


def test_at_most_16_subnets_and_5_groups(world: World) -> None:
    subnets = [f"subnet-{i:017x}" for i in range(17)]
    err = _fails(world, {"SubnetIds": subnets, "SecurityGroupIds": [world.groups[0]]})
    assert (err.code, err.status) == ("ValidationException", 400)
    assert err.message == (
        f"1 validation error detected: Value '[{', '.join(subnets)}]' at 'vpcConfig.subnetIds' "
        "failed to satisfy constraint: Member must have length less than or equal to 16")
    err = _fails(world, {"SubnetIds": [world.subnets[0]], "SecurityGroupIds": world.groups})
    assert err.code == "ValidationException"
    assert "at 'vpcConfig.securityGroupIds'" in err.message
    assert err.message.endswith("less than or equal to 5")
