"""Property: the EC2 Query endpoint answers anything — any action of the model (implemented or
not), parameters of wrong types, huge or unicode, missing, flattened wrongly, bodies that are
not form encoding at all (JSON, XML, multipart, broken percent-escapes, invalid UTF-8) — with
EC2's XML error shape (`<Response><Errors><Error><Code>`, read by botocore's own EC2 parser),
never a 5xx; successful answers are well-formed `<ActionResponse>` documents."""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import botocore.parsers
import pytest
from botocore.model import ListShape, OperationModel, Shape, StructureShape
from hypothesis import given
from hypothesis import strategies as st

from lambdaplane.api.ec2_api import ACTIONS
from lambdaplane.api.query_xml import API_VERSION, ec2_model, input_name
from tests.conftest import live_server
from tests.harness import LiveServer

from .support import (Reply, Tally, any_json, fuzz_settings, http_level_refusal, json_body,
                      send, text_value, typed_value)

pytestmark = pytest.mark.root

MODEL = ec2_model()
IMPLEMENTED = sorted(ACTIONS)
OTHERS = sorted(set(MODEL.operation_names) - set(ACTIONS))
TALLY = Tally()
FORM = "application/x-www-form-urlencoded; charset=utf-8"
# Values that reach deeper than random text: real-looking ids and CIDRs
SEEDS = {"CidrBlock": ["10.0.0.0/16", "10.0.1.0/24", "10.0.0.0/8", "10.0.0.0/29",
                       "10.0.0.0/33", "1.2.3.4/16", "::/0", "10.0.0.0"],
         "CidrIp": ["0.0.0.0/0", "10.0.0.0/8", "10.0.0.1/32", "bad"],
         "IpProtocol": ["tcp", "udp", "icmp", "-1", "all", "6", "999", "TCP"],
         "FromPort": ["0", "65535", "-1", "65536", "x"], "ToPort": ["0", "65535", "-1", "99999"]}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    for s in live_server(tmp_path_factory.mktemp("lpfuzz-ec2")):
        ec2 = s.ec2()
        vpc = ec2.create_vpc(CidrBlock="10.77.0.0/16")["Vpc"]["VpcId"]
        subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.77.1.0/24")["Subnet"]["SubnetId"]
        group = ec2.create_security_group(GroupName="fz", Description="fz", VpcId=vpc)["GroupId"]
        SEEDS.update({"VpcId": [vpc, "vpc-0", vpc.upper()], "SubnetId": [subnet, "subnet-x"],
                      "GroupId": [group, "sg-0"], "SecurityGroupId": [group]})
        yield s
    print("\n" + TALLY.summary("ec2 fuzz"))




@st.composite
def flattened(draw: st.DrawFn, shape: Shape, prefix: str, depth: int = 0) -> list[tuple[str, str]]:
    """Form parameters for one member, flattened the EC2 way (Name.1.Sub=…) — or not quite."""
    if depth > 3:
        return []
    if isinstance(shape, StructureShape):
        out: list[tuple[str, str]] = []
        for name, member in shape.members.items():
            if draw(st.integers(0, 9)) < (7 if name in shape.required_members else 3):
                out += draw(flattened(member, f"{prefix}.{input_name(member, name)}"
                                      if prefix else input_name(member, name), depth + 1))
        return out
    if isinstance(shape, ListShape):
        out = []
        indexes = draw(st.lists(st.sampled_from([1, 2, 3, 0, -1, 100, 10**20]), max_size=3))
        for i in indexes or [1]:
            out += draw(flattened(shape.member, f"{prefix}.{i}", depth + 1))
        return out
    leaf = prefix.rsplit(".", 1)[-1]
    choices = [text_value(), typed_value(shape).map(_scalar)]
    if leaf in SEEDS:
        choices += [st.sampled_from(SEEDS[leaf])] * 3
    return [(prefix, draw(st.one_of(*choices)))]


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else str(value)


def encode(pairs: list[tuple[str, str]]) -> bytes:
    return "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in pairs).encode()


@st.composite
def ec2_request(draw: st.DrawFn) -> tuple[str, bytes, dict[str, str], str | None]:
    kind = draw(st.sampled_from(["implemented"] * 6 + ["other", "unknown", "raw"]))
    if kind == "raw":
        body = draw(st.one_of(
            st.binary(max_size=200), any_json().map(json_body),
            st.just(b"Action=DescribeVpcs&Version=2016-11-15&VpcId.1=%ZZ%"),
            st.just(b"Action=Describe\xff\xfeVpcs&Version=2016-11-15"),
            st.just(b"<Action>DescribeVpcs</Action>"),
            st.just(b"--x\r\nContent-Disposition: form-data; name=\"Action\"\r\n\r\n"
                    b"DescribeVpcs\r\n--x--\r\n"),
            st.just(b"--x\r\nContent-Disposition: form-data\r\n\r\nv\r\n--x--\r\n")))
        ctype = draw(st.sampled_from([FORM, "application/json", "text/xml",
                                      "multipart/form-data; boundary=x", "", "a/b"]))
        return "POST", body, {"Content-Type": ctype}, None
    action = {"implemented": lambda: draw(st.sampled_from(IMPLEMENTED)),
              "other": lambda: draw(st.sampled_from(OTHERS)),
              "unknown": lambda: draw(text_value())}[kind]()
    pairs: list[tuple[str, str]] = []
    if draw(st.integers(0, 9)):
        pairs.append(("Action", action))
    if draw(st.integers(0, 9)):
        pairs.append(("Version", draw(st.sampled_from([API_VERSION, API_VERSION, "2014-01-01",
                                                       "x"]))))
    op: OperationModel | None = None
    if kind != "unknown":
        op = MODEL.operation_model(action)
        if op.input_shape is not None:
            pairs += draw(flattened(op.input_shape, ""))
    if draw(st.integers(0, 9)) == 0:
        pairs.append((draw(text_value()), draw(text_value())))
    method = "POST" if draw(st.integers(0, 5)) else "GET"
    if method == "GET":
        return "GET", b"", {}, "/?" + encode(pairs)[:6000].decode()
    return "POST", encode(pairs), {"Content-Type": FORM}, None


def check_ec2_reply(reply: Reply) -> str | None:
    if http_level_refusal(reply):
        return "HTTP-400"
    assert reply.status < 500, f"internal fault on bad input: {reply}"
    if reply.headers.get("x-amzn-errortype") == "UnknownServiceException":
        # no Action/Version of EC2's, or another service's Version: api/dispatch.py's JSON
        assert reply.status == 404 and "does not serve" in json.loads(reply.body)["message"]
        return "UnknownServiceException"
    root = ET.fromstring(reply.body)  # always well-formed XML
    if reply.status < 300:
        assert root.tag.endswith("Response") and root.find("{*}requestId") is not None, reply
        return None
    parsed = botocore.parsers.EC2QueryParser().parse(
        {"status_code": reply.status, "headers": reply.headers, "body": reply.body}, None)
    code = parsed["Error"]["Code"]
    assert code and parsed["Error"]["Message"], reply
    return code


@fuzz_settings(reduced=160, full=3000)
@given(request=ec2_request())
def test_ec2_api_answers_bad_input_with_ec2_errors(server: LiveServer, request) -> None:
    method, body, headers, path = request
    reply = send(server.port, method, path or "/", body, headers)
    TALLY.add(reply.status, check_ec2_reply(reply))


def test_ec2_still_works_after_fuzzing(server: LiveServer) -> None:
    ec2 = server.ec2()
    vpc = ec2.create_vpc(CidrBlock="10.78.0.0/16")["Vpc"]["VpcId"]
    assert ec2.describe_vpcs(VpcIds=[vpc])["Vpcs"][0]["CidrBlock"] == "10.78.0.0/16"


@pytest.mark.parametrize("method, path, body, ctype, code", [
    # fuzz finds: GET with a query string was not routed to EC2 (AWS accepts it) …
    ("GET", "/?Action=DescribeVpcs&Version=2016-11-15", b"", "", None),
    # … invalid UTF-8 and a multipart part without a name were 500s …
    ("POST", "/", b"Action=Describe\xff\xfeVpcs&Version=2016-11-15", FORM, "MalformedQueryString"),
    ("POST", "/", b"--x\r\nContent-Disposition: form-data\r\n\r\nv\r\n--x--\r\n",
     "multipart/form-data; boundary=x", "MalformedQueryString"),
    # … and a control character echoed into a message broke the XML
    ("POST", "/", b"Action=CreateVpc&Version=2016-11-15&CidrBlock=%08", FORM, None),
])
def test_found_by_fuzzing(server: LiveServer, method: str, path: str, body: bytes, ctype: str,
                          code: str | None) -> None:
    reply = send(server.port, method, path, body, {"Content-Type": ctype} if ctype else {})
    got = check_ec2_reply(reply)
    if code is not None:
        assert got == code


def test_found_by_fuzzing_multipart_line_past_512kb(server: LiveServer) -> None:
    reply = send(server.port, "POST", "/", b'["' + b"a" * 1_100_000 + b'"]',
                 {"Content-Type": "multipart/form-data; boundary=x"})
    assert check_ec2_reply(reply) == "MalformedQueryString"
