"""The pre-2019 VPC model, kept for comparison (`vpc_mode = "legacy"`): every execution
environment gets an ENI of its own, made during its cold start and removed with it, each taking
one subnet address.

Owns nothing of its own in the kernel: it drives the same mechanism as the Hyperplane data path
(net/hyperplane.py: policy routes, SNAT, filter, one steering element) for a single
sandbox, so the two modes differ only in *when* the ENI is built and how many there are. From
the VPC's side this is what AWS did then: one address per environment, seen as the source of its
flows. The VPC port whose peer is the ENI's transit comes from net/vpc.py through `make_port` /
`drop_port`, the address from the service's IPAM. All functions run on the NetThread."""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from . import hyperplane as hp
from .names import Names


@dataclass(frozen=True)
class DedicatedEni:
    """One environment's own ENI and what its cold start spent building it."""
    eni: hp.HyperplaneEni
    sandbox_addr: str
    build_ms: float


def attach_dedicated(names: Names, steering: hp.Steering, eni: hp.HyperplaneEni,
                     sandbox_addr: str,
                     make_port: Callable[[hp.HyperplaneEni], None]) -> DedicatedEni:
    """At cold start: build ENI `eni` for this one sandbox and steer the sandbox into it.
    On failure everything built so far is removed again."""
    t0 = time.perf_counter()
    try:
        hp.ensure_vpc_plane(names, eni.vpc_id)
        make_port(eni)  # the VPC port; its peer is the transit in the worker
        hp.ensure_eni(names, eni)
        steering.attach(sandbox_addr, eni.n)
    except BaseException:
        hp.remove_eni(names, eni.vpc_id, eni.n)
        raise
    return DedicatedEni(eni, sandbox_addr, (time.perf_counter() - t0) * 1e3)


def release_dedicated(names: Names, steering: hp.Steering, dedicated: DedicatedEni,
                      drop_port: Callable[[hp.HyperplaneEni], None]) -> None:
    """With the environment: unsteer it, take its ENI down, give the VPC port back
    (idempotent)."""
    steering.detach(dedicated.sandbox_addr)
    hp.remove_eni(names, dedicated.eni.vpc_id, dedicated.eni.n)
    drop_port(dedicated.eni)
