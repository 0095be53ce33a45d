"""A dual-stack function's IPv6 flows (NAT66 to its Hyperplane ENI's IPv6 address) count among
the ENI's tracked flows, as its IPv4 flows do: the sampler reads conntrack of both families and
`lambdaplane_eni_active_connections` shows them."""
from __future__ import annotations

import pytest

from tests.e2e.test_lambda_ipv6 import (
    PORT6,
    _function,
    _invoke,
    _lambda_eni,
    dual_stack_vpc,
    ipv6_peer,
)
from tests.e2e.test_metrics import scrape, value
from tests.e2e.vpc_support import wait_until
from tests.harness import LiveServer

pytestmark = pytest.mark.root


def test_ipv6_flows_count_as_the_enis_tracked_flows(server: LiveServer) -> None:
    ec2, lam = server.ec2(), server.lambda_()
    net = dual_stack_vpc(ec2, 75)
    apps, fn, vpc = net.apps, net.fn, net.vpc
    try:
        with ipv6_peer(server, net) as (_svc, svc6):
            _function(server, "v6-flows", apps, fn, True)
            eni = _lambda_eni(ec2, apps)
            (eni6,) = [a["Ipv6Address"] for a in eni["Ipv6Addresses"]]
            labels = {"eni": eni["NetworkInterfaceId"], "subnet": apps, "vpc": vpc}
            # IPv6 only: the function connects to an IPv6 literal, no name is looked up
            for _ in range(3):
                assert _invoke(lam, "v6-flows", {"host": svc6, "port": PORT6}) == \
                    f"peer {eni6}"
            # three connections (closed, still tracked in TIME_WAIT) through the NAT66
            assert wait_until(lambda: value(scrape(server), "lambdaplane_eni_active_connections",
                                            **labels) >= 3, timeout_s=15)
    finally:
        try:
            lam.delete_function(FunctionName="v6-flows")
        except lam.exceptions.ResourceNotFoundException:
            pass
