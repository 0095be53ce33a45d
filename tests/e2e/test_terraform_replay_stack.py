"""Terraform's AWS provider, replayed call by call with boto3, for a whole function stack:
aws_vpc (vpc_.go: DescribeVpcAttribute, the main route table, the default network ACL and
default security group), aws_subnet (vpc_subnet.go, with the attribute
modifications it makes after the create), aws_security_group, aws_iam_role,
aws_lambda_layer_version (layer_version.go), aws_lambda_function with vpc_config, publish and
layers (function.go: the Active waiter, GetFunctionCodeSigningConfig, ListVersionsByFunction for
the latest version), aws_lambda_alias (alias.go), aws_lambda_permission (permission.go: the
statement found in GetPolicy by Sid) and aws_lambda_function_url (function_url.go, with the
public-access permissions it adds for AuthType NONE); a refresh with no changes (every read
returns what apply saw); then destroy in Terraform's reverse dependency order, with the
provider's wait for the Lambda ENIs before the group and subnet go. Also: a second apply with new
code (a new version the alias follows), provider start-up with skip_credentials_validation, and
aws_cloudwatch_log_group for the function's group made before the function.
"""
from __future__ import annotations

import json
import time

import pytest
from botocore.exceptions import ClientError

from tests.e2e.test_terraform_replay import TRUST, code_of, delete_lingering_enis, provider_start
from tests.harness import LiveServer, make_zip

pytestmark = pytest.mark.root

TAGS = [{"Key": "managed-by", "Value": "terraform"}]
CORS = {"AllowCredentials": False, "AllowHeaders": ["content-type"], "AllowMethods": ["GET"],
        "AllowOrigins": ["https://example.com"], "ExposeHeaders": ["x-stage"], "MaxAge": 60}


def until(read, done, what: str, patience_s: float = 120.0):
    """The provider's StateChangeConf: poll `read` until `done(result)`."""
    deadline = time.monotonic() + patience_s
    while True:
        result = read()
        if done(result):
            return result
        assert time.monotonic() < deadline, f"{what}: still {result!r}"
        time.sleep(0.2)


def read_vpc(ec2, vpc_id: str) -> dict:
    """resourceVPCRead: the VPC, its three attributes, the default network ACL, the default
    security group and the main route table (each a filtered Describe*)."""
    vpc = ec2.describe_vpcs(VpcIds=[vpc_id])["Vpcs"][0]
    attrs = {name: ec2.describe_vpc_attribute(VpcId=vpc_id, Attribute=name)
             for name in ("enableDnsHostnames", "enableDnsSupport",
                          "enableNetworkAddressUsageMetrics")}
    acls = ec2.describe_network_acls(Filters=[{"Name": "default", "Values": ["true"]},
                                              {"Name": "vpc-id", "Values": [vpc_id]}])
    groups = ec2.describe_security_groups(Filters=[
        {"Name": "group-name", "Values": ["default"]},
        {"Name": "vpc-id", "Values": [vpc_id]}])
    mains = ec2.describe_route_tables(Filters=[
        {"Name": "association.main", "Values": ["true"]},
        {"Name": "vpc-id", "Values": [vpc_id]}])
    assert len(acls["NetworkAcls"]) == 1 and len(groups["SecurityGroups"]) == 1
    assert len(mains["RouteTables"]) == 1
    return {"cidr_block": vpc["CidrBlock"], "instance_tenancy": vpc["InstanceTenancy"],
            "owner_id": vpc["OwnerId"], "is_default": vpc["IsDefault"],
            "dhcp_options_id": vpc.get("DhcpOptionsId"), "tags": vpc.get("Tags", []),
            "enable_dns_hostnames": attrs["enableDnsHostnames"]["EnableDnsHostnames"]["Value"],
            "enable_dns_support": attrs["enableDnsSupport"]["EnableDnsSupport"]["Value"],
            "enable_network_address_usage_metrics": attrs[
                "enableNetworkAddressUsageMetrics"]["EnableNetworkAddressUsageMetrics"]["Value"],
            "default_network_acl_id": acls["NetworkAcls"][0]["NetworkAclId"],
            "default_security_group_id": groups["SecurityGroups"][0]["GroupId"],
            "main_route_table_id": mains["RouteTables"][0]["RouteTableId"]}


def read_subnet(ec2, subnet_id: str) -> dict:
    """resourceSubnetRead: DescribeSubnets by id, every attribute the schema sets."""
    subnet = ec2.describe_subnets(SubnetIds=[subnet_id])["Subnets"][0]
    keys = ("AvailabilityZone", "AvailabilityZoneId", "CidrBlock", "VpcId", "OwnerId",
            "SubnetArn", "MapPublicIpOnLaunch", "AssignIpv6AddressOnCreation", "EnableDns64",
            "Ipv6Native", "PrivateDnsNameOptionsOnLaunch", "State")
    missing = [k for k in keys if k not in subnet]
    assert not missing, f"DescribeSubnets lacks {missing}"
    return {k: subnet[k] for k in keys} | {"Tags": subnet.get("Tags", [])}


SUBNET_CONFIG = {  # aws_subnet's schema defaults, plus one DNS option set in the config
    "assign_ipv6_address_on_creation": False, "enable_dns64": False, "ipv6_cidr_block": "",
    "customer_owned_ipv4_pool": "", "map_customer_owned_ip_on_launch": False,
    "enable_lni_at_device_index": 0, "enable_resource_name_dns_aaaa_record_on_launch": False,
    "enable_resource_name_dns_a_record_on_launch": True,
    "private_dns_hostname_type_on_launch": "", "map_public_ip_on_launch": False}


def modify_subnet_attributes_on_create(ec2, subnet: dict, config: dict) -> list[str]:
    """modifySubnetAttributesOnCreate: each attribute whose config value differs from what
    DescribeSubnets returned after the create is set by its own ModifySubnetAttribute, then
    waited for (DescribeSubnets until it reads back). Returns what it modified; a read that
    disagrees with AWS's defaults makes the provider modify attributes nobody asked for."""
    subnet_id, modified = subnet["SubnetId"], []

    def modify(attribute: str, value, read) -> None:
        ec2.modify_subnet_attribute(SubnetId=subnet_id, **{attribute: (
            {"Value": value} if isinstance(value, bool) else value)})
        until(lambda: read(ec2.describe_subnets(SubnetIds=[subnet_id])["Subnets"][0]),
              lambda v: v == value, attribute)
        modified.append(attribute)

    dns = subnet.get("PrivateDnsNameOptionsOnLaunch")
    checks = [
        ("AssignIpv6AddressOnCreation", "assign_ipv6_address_on_creation", False),
        ("EnableDns64", "enable_dns64", False),
        ("MapCustomerOwnedIpOnLaunch", "map_customer_owned_ip_on_launch", False)]
    for attribute, key, default in checks:
        if config[key] != subnet.get(attribute, default):
            modify(attribute, config[key], lambda s, a=attribute: s.get(a, default))
    assert config["ipv6_cidr_block"] == "" and not subnet.get("Ipv6CidrBlockAssociationSet")
    assert config["customer_owned_ipv4_pool"] == subnet.get("CustomerOwnedIpv4Pool", "")
    assert config["enable_lni_at_device_index"] == subnet.get("EnableLniAtDeviceIndex", 0)
    if dns is not None:
        for attribute, key, field in (
                ("EnableResourceNameDnsAAAARecordOnLaunch",
                 "enable_resource_name_dns_aaaa_record_on_launch",
                 "EnableResourceNameDnsAAAARecord"),
                ("EnableResourceNameDnsARecordOnLaunch",
                 "enable_resource_name_dns_a_record_on_launch", "EnableResourceNameDnsARecord")):
            if config[key] != dns.get(field, False):
                modify(attribute, config[key],
                       lambda s, f=field: s["PrivateDnsNameOptionsOnLaunch"].get(f, False))
        wanted = config["private_dns_hostname_type_on_launch"]
        if wanted and wanted != dns.get("HostnameType", ""):
            modify("PrivateDnsHostnameTypeOnLaunch", wanted,
                   lambda s: s["PrivateDnsNameOptionsOnLaunch"]["HostnameType"])
    if config["map_public_ip_on_launch"] != subnet.get("MapPublicIpOnLaunch", False):
        modify("MapPublicIpOnLaunch", config["map_public_ip_on_launch"],
               lambda s: s["MapPublicIpOnLaunch"])
    return modified


def read_function(lam, name: str) -> dict:
    """resourceFunctionRead: GetFunction, GetFunctionCodeSigningConfig (zip functions), and
    the latest version from ListVersionsByFunction (publish = true)."""
    got = lam.get_function(FunctionName=name)
    config = got["Configuration"]
    signing = lam.get_function_code_signing_config(FunctionName=name)
    assert signing["FunctionName"] == name
    marker: dict = {}
    while True:  # listVersionsByFunctionPages: MaxItems 10000, the last page's last version
        page = lam.list_versions_by_function(FunctionName=name, MaxItems=10000, **marker)
        if "NextMarker" not in page:
            break
        marker = {"Marker": page["NextMarker"]}
    latest = page["Versions"][-1]
    return {"arn": config["FunctionArn"], "role": config["Role"], "runtime": config["Runtime"],
            "handler": config["Handler"], "memory_size": config["MemorySize"],
            "timeout": config["Timeout"], "code_sha256": config["CodeSha256"],
            "layers": [layer["Arn"] for layer in config.get("Layers", [])],
            "vpc_config": {k: sorted(v) if isinstance(v, list) else v
                           for k, v in config["VpcConfig"].items()},
            "tracing": config["TracingConfig"]["Mode"],
            "ephemeral_storage": config["EphemeralStorage"]["Size"],
            "architectures": config["Architectures"], "package_type": config["PackageType"],
            "logging": config.get("LoggingConfig"), "tags": got.get("Tags", {}),
            "description": config.get("Description", ""),
            "environment": config.get("Environment", {}).get("Variables"),
            "code_signing_config_arn": signing.get("CodeSigningConfigArn", ""),
            "version": latest["Version"], "qualified_arn": latest["FunctionArn"]}


def find_statement(lam, name: str, sid: str, qualifier: str | None = None) -> dict | None:
    """findPolicyStatementByTwoPartKey: GetPolicy (ResourceNotFound = no policy), statement by
    Sid."""
    kwargs = {"FunctionName": name} | ({"Qualifier": qualifier} if qualifier else {})
    try:
        policy = json.loads(lam.get_policy(**kwargs)["Policy"])
    except ClientError as err:
        assert err.response["Error"]["Code"] == "ResourceNotFoundException"
        return None
    for statement in policy["Statement"]:
        # the provider's PolicyStatement: Action, Resource, Sid strings; Condition a
        # map[string]map[string]string (a list or a bool there fails json.Unmarshal)
        assert all(isinstance(statement[k], str) for k in ("Action", "Resource", "Sid"))
        assert all(isinstance(value, str) for test in statement.get("Condition", {}).values()
                   for value in test.values()), statement
    return next((s for s in policy["Statement"] if s["Sid"] == sid), None)


def test_function_stack_apply_refresh_destroy(server: LiveServer) -> None:
    account = provider_start(server)
    ec2, lam, iam = server.ec2(), server.lambda_(), server.client("iam")

    # aws_vpc.main (enable_dns_hostnames = true): CreateVpc, waitVPCCreated,
    # modifyVPCAttributesOnCreate (only the attribute that differs from AWS's default, then
    # waitVPCAttributeUpdated), read
    vpc_id = ec2.create_vpc(CidrBlock="10.91.0.0/16", InstanceTenancy="default",
                            TagSpecifications=[{"ResourceType": "vpc", "Tags": TAGS}]
                            )["Vpc"]["VpcId"]
    until(lambda: ec2.describe_vpcs(VpcIds=[vpc_id])["Vpcs"][0]["State"],
          lambda s: s == "available", "vpc")
    ec2.modify_vpc_attribute(VpcId=vpc_id, EnableDnsHostnames={"Value": True})
    until(lambda: ec2.describe_vpc_attribute(VpcId=vpc_id, Attribute="enableDnsHostnames")[
        "EnableDnsHostnames"]["Value"], lambda v: v is True, "enableDnsHostnames")
    vpc = read_vpc(ec2, vpc_id)
    assert (vpc["cidr_block"], vpc["enable_dns_support"], vpc["enable_dns_hostnames"],
            vpc["enable_network_address_usage_metrics"], vpc["instance_tenancy"],
            vpc["owner_id"], vpc["tags"]) == \
        ("10.91.0.0/16", True, True, False, "default", account, TAGS)

    # aws_subnet.private: CreateSubnet, wait available, read
    subnet_id = ec2.create_subnet(VpcId=vpc_id, CidrBlock="10.91.1.0/24", TagSpecifications=[
        {"ResourceType": "subnet", "Tags": TAGS}])["Subnet"]["SubnetId"]
    created_subnet = until(lambda: ec2.describe_subnets(SubnetIds=[subnet_id])["Subnets"][0],
                           lambda s: s["State"] == "available", "subnet")
    assert modify_subnet_attributes_on_create(ec2, created_subnet, SUBNET_CONFIG) == \
        ["EnableResourceNameDnsARecordOnLaunch"]  # only what the config asks for
    subnet = read_subnet(ec2, subnet_id)
    assert (subnet["CidrBlock"], subnet["VpcId"], subnet["Tags"], subnet[
        "PrivateDnsNameOptionsOnLaunch"]) == ("10.91.1.0/24", vpc_id, TAGS, {
            "HostnameType": "ip-name", "EnableResourceNameDnsARecord": True,
            "EnableResourceNameDnsAAAARecord": False})

    # aws_security_group.fn (its default egress rule kept: the function calls out)
    group_id = ec2.create_security_group(GroupName="tf-stack", VpcId=vpc_id,
                                         Description="Managed by Terraform")["GroupId"]

    # aws_iam_role.fn
    role_arn = iam.create_role(RoleName="tf-stack", AssumeRolePolicyDocument=TRUST)["Role"]["Arn"]

    # aws_lambda_layer_version.lib: PublishLayerVersion, read with GetLayerVersion
    layer_zip = make_zip({"python/tflib.py": "GREETING = 'from the layer'\n"})
    layer = lam.publish_layer_version(LayerName="tf-lib", Description="lib",
                                      Content={"ZipFile": layer_zip},
                                      CompatibleRuntimes=["python3.11"],
                                      CompatibleArchitectures=["x86_64"])
    layer_arn = layer["LayerVersionArn"]
    layer_read = lam.get_layer_version(LayerName="tf-lib", VersionNumber=layer["Version"])
    assert (layer_read["LayerVersionArn"], layer_read["Description"],
            layer_read["CompatibleRuntimes"], layer_read["CompatibleArchitectures"],
            layer_read["Content"]["CodeSha256"]) == (
        layer_arn, "lib", ["python3.11"], ["x86_64"], layer["Content"]["CodeSha256"])

    # aws_lambda_function.fn: CreateFunction (publish, layers, vpc_config), waitFunctionCreated
    code = make_zip({"app.py": "import tflib\n\ndef handler(event, context):\n"
                               "    return tflib.GREETING\n"})
    created = lam.create_function(
        FunctionName="tf-stack", Runtime="python3.11", Handler="app.handler", Role=role_arn,
        Code={"ZipFile": code}, Publish=True, Layers=[layer_arn], MemorySize=128, Timeout=3,
        VpcConfig={"SubnetIds": [subnet_id], "SecurityGroupIds": [group_id]},
        Description="stack", Environment={"Variables": {"STAGE": "prod"}},
        EphemeralStorage={"Size": 1024}, TracingConfig={"Mode": "PassThrough"},
        Tags={"managed-by": "terraform"})
    assert created["Version"] == "1"
    until(lambda: lam.get_function(FunctionName="tf-stack")["Configuration"]["State"],
          lambda s: s == "Active", "function")
    function = read_function(lam, "tf-stack")
    assert (function["version"], function["qualified_arn"]) == \
        ("1", f"arn:aws:lambda:us-east-1:{account}:function:tf-stack:1")
    assert function["layers"] == [layer_arn]
    assert function["vpc_config"]["SubnetIds"] == [subnet_id]
    assert function["vpc_config"]["SecurityGroupIds"] == [group_id]
    assert function["vpc_config"]["VpcId"] == vpc_id
    assert function["tags"] == {"managed-by": "terraform"}
    assert (function["description"], function["environment"], function["ephemeral_storage"],
            function["tracing"]) == ("stack", {"STAGE": "prod"}, 1024, "PassThrough")

    # aws_lambda_alias.live → version 1
    alias = lam.create_alias(FunctionName="tf-stack", Name="live", FunctionVersion="1",
                             Description="live")
    alias_read = lam.get_alias(FunctionName="tf-stack", Name="live")
    assert alias_read == {k: v for k, v in alias.items()} | {
        "ResponseMetadata": alias_read["ResponseMetadata"]}

    # aws_lambda_permission.events, on the alias
    lam.add_permission(FunctionName="tf-stack", StatementId="AllowEvents",
                       Action="lambda:InvokeFunction", Principal="events.amazonaws.com",
                       SourceArn=f"arn:aws:events:us-east-1:{account}:rule/tick",
                       SourceAccount=account, Qualifier="live")
    statement = find_statement(lam, "tf-stack", "AllowEvents", "live")
    assert statement is not None
    assert (statement["Action"], statement["Principal"], statement["Resource"],
            statement["Condition"]) == (
        "lambda:InvokeFunction", {"Service": "events.amazonaws.com"}, alias["AliasArn"],
        {"ArnLike": {"AWS:SourceArn": f"arn:aws:events:us-east-1:{account}:rule/tick"},
         "StringEquals": {"AWS:SourceAccount": account}})

    # aws_lambda_function_url.live: CreateFunctionUrlConfig on the alias, and for AuthType
    # NONE the provider's public-access permissions (a conflict means they exist)
    url = lam.create_function_url_config(FunctionName="tf-stack", Qualifier="live",
                                         AuthType="NONE", InvokeMode="BUFFERED", Cors=CORS)
    for sid, action, extra in (
            ("FunctionURLAllowPublicAccess", "lambda:InvokeFunctionUrl",
             {"FunctionUrlAuthType": "NONE"}),
            ("FunctionURLAllowInvokeAction", "lambda:InvokeFunction",
             {"InvokedViaFunctionUrl": True})):
        try:
            lam.add_permission(FunctionName="tf-stack", Qualifier="live", StatementId=sid,
                               Action=action, Principal="*", **extra)
        except ClientError as err:
            assert err.response["Error"]["Code"] == "ResourceConflictException"
    url_read = lam.get_function_url_config(FunctionName="tf-stack", Qualifier="live")
    assert url_read["Cors"] == CORS
    assert (url_read["FunctionUrl"], url_read["FunctionArn"], url_read["AuthType"],
            url_read["InvokeMode"]) == (url["FunctionUrl"], alias["AliasArn"], "NONE",
                                        "BUFFERED")

    assert find_statement(lam, "tf-stack", "FunctionURLAllowPublicAccess", "live")[
        "Condition"] == {"StringEquals": {"lambda:FunctionUrlAuthType": "NONE"}}
    assert find_statement(lam, "tf-stack", "FunctionURLAllowInvokeAction", "live")[
        "Principal"] == "*"

    # the function works: the alias runs version 1 with the layer, in the VPC
    out = lam.invoke(FunctionName="tf-stack", Qualifier="live")
    assert json.loads(out["Payload"].read()) == "from the layer"

    # a second apply with new code (source_code_hash changed): UpdateFunctionCode,
    # waitForFunctionUpdate, PublishVersion (retried while "in progress"), the FunctionUpdated
    # waiter on the new version, the read; then the alias follows the new version
    code2 = make_zip({"app.py": "import tflib\n\ndef handler(event, context):\n"
                                "    return tflib.GREETING + ' v2'\n"})
    lam.update_function_code(FunctionName="tf-stack", ZipFile=code2)
    until(lambda: lam.get_function(FunctionName="tf-stack")["Configuration"][
        "LastUpdateStatus"], lambda s: s == "Successful", "code update")
    published = lam.publish_version(FunctionName="tf-stack")
    assert published["Version"] == "2"
    lam.get_waiter("function_updated").wait(
        FunctionName=published["FunctionArn"], Qualifier=published["Version"],
        WaiterConfig={"Delay": 0.2, "MaxAttempts": 300})
    function = read_function(lam, "tf-stack")
    assert (function["version"], function["qualified_arn"]) == ("2", published["FunctionArn"])
    # the alias follows the new version, with 10% still on version 1 (routing_config)
    routing = {"AdditionalVersionWeights": {"1": 0.1}}
    lam.update_alias(FunctionName="tf-stack", Name="live", FunctionVersion="2",
                     RoutingConfig=routing)
    alias_read = lam.get_alias(FunctionName="tf-stack", Name="live")
    assert (alias_read["FunctionVersion"], alias_read["RoutingConfig"]) == ("2", routing)
    lam.update_alias(FunctionName="tf-stack", Name="live", FunctionVersion="2",
                     RoutingConfig={"AdditionalVersionWeights": {}})  # routing removed
    assert lam.get_alias(FunctionName="tf-stack", Name="live").get(
        "RoutingConfig", {}).get("AdditionalVersionWeights", {}) == {}
    out = lam.invoke(FunctionName="tf-stack", Qualifier="live")
    assert (json.loads(out["Payload"].read()), out["ExecutedVersion"]) == \
        ("from the layer v2", "2")

    # plan: a refresh of every resource reads back exactly what apply saw
    provider_start(server)
    assert read_vpc(ec2, vpc_id) == vpc
    assert read_subnet(ec2, subnet_id) == subnet
    assert read_function(lam, "tf-stack") == function
    assert lam.get_alias(FunctionName="tf-stack", Name="live")["FunctionVersion"] == "2"
    assert find_statement(lam, "tf-stack", "AllowEvents", "live") == statement
    # the unqualified function has no policy: GetPolicy's ResourceNotFoundException
    with pytest.raises(ClientError) as err:
        lam.get_policy(FunctionName="tf-stack")
    assert err.value.response["Error"]["Code"] == "ResourceNotFoundException"
    assert lam.get_function_url_config(FunctionName="tf-stack", Qualifier="live")[
        "FunctionUrl"] == url["FunctionUrl"]
    assert lam.get_layer_version(LayerName="tf-lib", VersionNumber=layer["Version"])[
        "LayerVersionArn"] == layer_arn

    # destroy, in reverse dependency order
    started = time.monotonic()
    lam.delete_function_url_config(FunctionName="tf-stack", Qualifier="live")
    lam.remove_permission(FunctionName="tf-stack", StatementId="AllowEvents", Qualifier="live")
    assert find_statement(lam, "tf-stack", "AllowEvents", "live") is None
    lam.delete_alias(FunctionName="tf-stack", Name="live")
    eni_ids = [e["NetworkInterfaceId"] for e in ec2.describe_network_interfaces(Filters=[
        {"Name": "group-id", "Values": [group_id]}])["NetworkInterfaces"]]
    lam.delete_function(FunctionName="tf-stack")
    lam.delete_layer_version(LayerName="tf-lib", VersionNumber=layer["Version"])
    iam.delete_role(RoleName="tf-stack")
    assert delete_lingering_enis(ec2, "group-id", group_id) == eni_ids
    ec2.delete_security_group(GroupId=group_id)
    delete_lingering_enis(ec2, "subnet-id", subnet_id)
    ec2.delete_subnet(SubnetId=subnet_id)
    assert code_of(ec2.describe_subnets, SubnetIds=[subnet_id]) == "InvalidSubnetID.NotFound"
    ec2.delete_vpc(VpcId=vpc_id)
    assert code_of(ec2.describe_vpcs, VpcIds=[vpc_id]) == "InvalidVpcID.NotFound"
    print(f"terraform destroy of the function stack: {time.monotonic() - started:.1f} s")


def test_provider_start_with_skip_credentials_validation(server: LiveServer) -> None:
    """skip_credentials_validation = true, skip_requesting_account_id = false: aws-sdk-go-base
    asks iam:GetUser first, takes any error as "try the next way" (a 4xx is not retried, so the
    start-up does not stall on it), then sts:GetCallerIdentity gives the account."""
    with pytest.raises(ClientError) as err:
        server.client("iam").get_user()
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert err.value.response["ResponseMetadata"]["RetryAttempts"] == 0
    assert provider_start(server) == "000000000000"


def read_log_group(logs, name: str) -> dict:
    """resourceGroupRead: DescribeLogGroups by prefix (paged), the exact name picked; tags with
    ListTagsForResource on the ARN without its ':*'."""
    found = [g for page in logs.get_paginator("describe_log_groups").paginate(
        logGroupNamePrefix=name) for g in page["logGroups"] if g["logGroupName"] == name]
    assert len(found) == 1
    group = found[0]
    arn = group["arn"].removesuffix(":*")
    tags = logs.list_tags_for_resource(resourceArn=arn)["tags"]
    return {"arn": arn, "retention": group.get("retentionInDays", 0),
            "class": group.get("logGroupClass", "STANDARD"), "tags": tags}


def test_function_log_group_made_by_terraform_first(server: LiveServer) -> None:
    """aws_cloudwatch_log_group "/aws/lambda/<fn>" made before the function (the usual
    depends_on): CreateLogGroup, PutRetentionPolicy, the read; the function's invocations log
    into that group without disturbing what Terraform wrote; destroy deletes it."""
    logs, lam = server.client("logs"), server.lambda_()
    name = "/aws/lambda/tf-logged"
    logs.create_log_group(logGroupName=name, tags={"managed-by": "terraform"})
    logs.put_retention_policy(logGroupName=name, retentionInDays=14)
    state = read_log_group(logs, name)
    assert (state["retention"], state["class"], state["tags"]) == \
        (14, "STANDARD", {"managed-by": "terraform"})

    lam.create_function(FunctionName="tf-logged", Runtime="python3.11", Handler="app.handler",
                        Role="arn:aws:iam::000000000000:role/lambda",
                        Code={"ZipFile": make_zip({"app.py": "def handler(e, c):\n"
                                                             "    print('logged')\n"})})
    until(lambda: lam.get_function(FunctionName="tf-logged")["Configuration"]["State"],
          lambda s: s == "Active", "function")
    lam.invoke(FunctionName="tf-logged")
    events = until(lambda: logs.filter_log_events(logGroupName=name,
                                                  filterPattern="logged")["events"],
                   bool, "the function's log line")
    assert events[0]["message"].strip() == "logged"
    assert read_log_group(logs, name) == state  # refresh: no change

    lam.delete_function(FunctionName="tf-logged")
    logs.delete_log_group(logGroupName=name)
    assert code_of(logs.delete_log_group, logGroupName=name) == "ResourceNotFoundException"
