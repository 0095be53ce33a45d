"""Placement of invokes on agents (service/placement.py) over a real hosts table (SQLite; the
table itself is tested on both backends in test_hosts_store.py): a warm host first, else the
least loaded (its lease row's load plus what this server has in flight there), never an expired
or a just-failed host, `pin:NAME`, and TooManyRequestsException when no agent is live. And the
internal endpoint's JSON (service/agent_wire.py) keeps every field of a spec, invocation,
result and error."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from lambdaplane.errors import AwsError
from lambdaplane.sandbox.types import FunctionSpec, Invocation, InvocationResult, VpcAttachment
from lambdaplane.service import agent_wire as wire
from lambdaplane.service.placement import Placement, parse_placement
from lambdaplane.store.db import Database
from lambdaplane.store.hosts import HostStore

KEY = ("us-east-1", "f")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def hosts(tmp_path: Path) -> Iterator[HostStore]:
    db = Database.open(tmp_path)
    try:
        store = HostStore(db, lease_s=5.0)
        for name in ("a", "b", "c"):
            store.register(f"lp{name}", f"host-{name}", f"unix:/{name}.sock", name, now=100.0)
        yield store
    finally:
        db.close()


def test_warm_first_else_least_loaded(hosts: HostStore) -> None:
    clock = Clock()
    hosts.renew("lpa", 100.0, load=5, warm=set())
    hosts.renew("lpb", 100.0, load=1, warm=set())
    hosts.renew("lpc", 100.0, load=2, warm={KEY})
    placement = Placement(hosts, clock=clock)
    placement.refresh()
    assert placement.choose(KEY).name == "host-c"  # warm, though not the least loaded
    assert placement.choose(("us-east-1", "g")).name == "host-b"
    placement.forwarded["lpb"] += 3  # this server's own invokes in flight count too
    assert placement.choose(("us-east-1", "g")).name == "host-c"
    assert placement.choose(KEY, exclude={"lpc"}).name == "host-b"  # lpc just failed: 1+3 < 5
    placement.ran(("us-east-1", "g"), hosts.live(100.0)[0])
    assert placement.choose(("us-east-1", "g")).name == "host-a"


def test_expired_and_failed_hosts_are_not_chosen(hosts: HostStore) -> None:
    clock = Clock()
    hosts.renew("lpa", 103.0, load=9, warm=set())
    placement = Placement(hosts, clock=clock)
    placement.refresh()
    clock.now = 106.0  # b and c (renewed at 100) ran out at 105
    assert placement.choose(KEY).name == "host-a"
    placement.failed(hosts.live(103.0)[0])
    with pytest.raises(AwsError) as e:
        placement.choose(KEY)
    assert (e.value.code, e.value.status, e.value.extra["Reason"]) == (
        "TooManyRequestsException", 429, "ConcurrentInvocationLimitExceeded")
    assert e.value.headers["Retry-After"] == "1"


def test_pin(hosts: HostStore) -> None:
    hosts.renew("lpa", 100.0, load=0, warm={KEY})
    placement = Placement(hosts, pin=parse_placement("pin:host-b"), clock=Clock())
    placement.refresh()
    assert placement.choose(KEY).name == "host-b"
    placement.pin = "host-z"
    with pytest.raises(AwsError):
        placement.choose(KEY)
    assert parse_placement("") == ""
    for bad in ("pin:", "host-a", "least"):
        with pytest.raises(ValueError):
            parse_placement(bad)


def test_no_host_at_all_reads_the_table_once_more(tmp_path: Path) -> None:
    db = Database.open(tmp_path)
    try:
        store = HostStore(db)
        placement = Placement(store, clock=Clock())
        placement.refresh()
        store.register("lpa", "host-a", "unix:/a.sock", "a", now=100.0)  # came up since
        assert placement.choose(KEY).name == "host-a"
    finally:
        db.close()


def test_wire_round_trips() -> None:
    spec = FunctionSpec("us-east-1", "f", "arn:aws:lambda:us-east-1:0:function:f", "3",
                        "python3.11", "app.handler", 256, 9, {"A": "1"}, "ab" * 32,
                        Path("/srv/code/x"), "rev-1", reserved_concurrency=2,
                        custom_log_group="/custom", logging_config={"LogFormat": "JSON"})
    back = wire.spec_from_json(wire.spec_to_json(spec), Path("/agent/code/ab"))
    assert back == FunctionSpec(**{**spec.__dict__, "code_dir": Path("/agent/code/ab")})
    assert "vpc" not in wire.spec_to_json(spec)  # a non-VPC spec's id did not change
    vpc_spec = FunctionSpec(**{**spec.__dict__, "vpc": VpcAttachment(
        "vpc-1", ("subnet-1", "subnet-2"), ("sg-1",), ipv6=True)})
    back = wire.spec_from_json(wire.spec_to_json(vpc_spec), spec.code_dir)
    assert back == vpc_spec and back.vpc is not None and back.vpc.ipv6
    # layers travel as their digests in order; the merged /opt is the agent's own
    layered = FunctionSpec(**{**spec.__dict__, "opt_dir": Path("/srv/code/opt-1"),
                              "layer_hexes": ("cd" * 32, "ef" * 32)})
    back = wire.spec_from_json(wire.spec_to_json(layered), spec.code_dir)
    assert back.layer_hexes == layered.layer_hexes and back.opt_dir is None
    assert "layers" not in wire.spec_to_json(spec)
    inv = Invocation("req-1", b'{"x": "\\u00e9"}\x00\xff', "Y3R4", None, "Root=1", "arn:q")
    assert wire.invocation_from_json(wire.invocation_to_json(inv)) == inv
    result = InvocationResult(b"\x00out", "Unhandled", "Runtime.ExitError", "START …", 1.5,
                              30.25, True, {"fork_ms": 2.0})
    assert wire.result_from_json(wire.result_to_json(result)) == result
    error = AwsError("TooManyRequestsException", "Rate Exceeded.", 429, "User",
                     headers={"Retry-After": "1"}, extra={"Reason": "X"})
    assert wire.error_from_json(wire.error_to_json(error)) == error
    assert wire.unix_socket_of("unix:/d/agent.sock") == "/d/agent.sock"
    assert wire.unix_socket_of("http://10.0.0.2:4748") is None
    assert wire.base_url("http://10.0.0.2:4748/") == "http://10.0.0.2:4748"


def test_framed_invoke_and_result_bodies_carry_raw_payloads() -> None:
    """The invoke and its result travel as a JSON line and the payload's own bytes (newlines,
    NULs and non-UTF-8 included): no base64; the spec only when asked for, under its id."""
    spec_doc = {"name": "f", "code_sha256": "ab" * 32}
    sid = wire.spec_id(spec_doc)
    assert sid == wire.spec_id(dict(reversed(list(spec_doc.items()))))  # order-free
    inv = Invocation("req-1", b'\n{"x": 1}\n\x00\xff', "Y3R4", '{"id": 1}', "Root=1", "arn:q")
    assert wire.read_invoke_body(wire.invoke_body(sid, spec_doc, inv)) == (sid, spec_doc, inv)
    assert wire.read_invoke_body(wire.invoke_body(sid, None, inv)) == (sid, None, inv)
    result = InvocationResult(b"\x00out\n\n", "Unhandled", "Runtime.ExitError", "START …\n",
                              1.5, 30.25, True, {"fork_ms": 2.0})
    assert wire.read_result_body(wire.result_body(result)) == result
    assert wire.read_result_body(wire.result_body(InvocationResult(b""))) == \
        InvocationResult(b"")
    with pytest.raises(ValueError):
        wire.read_invoke_body(b'{"spec_id": "x"}')  # no newline: not a framed body
