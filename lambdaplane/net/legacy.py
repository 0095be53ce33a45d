"""The pre-2019 VPC model, kept for comparison (`vpc_mode = "legacy"`): every execution
environment gets an ENI of its own, made during its cold start and removed with it, each taking
one subnet address.

Owns nothing of its own in the kernel: it drives the same mechanism as the Hyperplane data path
(net/hyperplane/: policy routes, SNAT, filter, one steering element) for a single
sandbox, so the two modes differ only in *when* the ENI is built and how many there are. From
the VPC's side this is what AWS did then: one address per environment, seen as the source of its
flows. The VPC port whose peer is the ENI's transit is made by the VPC reconcile, the address
by the service's IPAM. All
functions run on the NetThread."""
from __future__ import annotations

import time
from dataclasses import dataclass

from .hyperplane.eni import ensure_eni, remove_eni
from .hyperplane.model import HyperplaneEni
from .hyperplane.plane import ensure_vpc_plane
from .hyperplane.steering import Steering
from .names import Names


@dataclass(frozen=True)
class DedicatedEni:
    """One environment's own ENI and what its cold start spent building it."""
    eni: HyperplaneEni
    sandbox_addr: str
    build_ms: float


def attach_dedicated(names: Names, steering: Steering, eni: HyperplaneEni,
                     sandbox_addr: str) -> DedicatedEni:
    """At cold start: build ENI `eni` for this one sandbox and steer the sandbox into it.
    On failure everything built so far is removed again."""
    t0 = time.perf_counter()
    try:
        ensure_vpc_plane(names, eni.vpc_id)
        ensure_eni(names, eni)
        steering.attach(sandbox_addr, eni.n)
    except BaseException:
        remove_eni(names, eni.vpc_id, eni.n)
        raise
    return DedicatedEni(eni, sandbox_addr, (time.perf_counter() - t0) * 1e3)


def release_dedicated(names: Names, steering: Steering, dedicated: DedicatedEni) -> None:
    """With the environment: unsteer it and take its ENI down (idempotent); the VPC reconcile
    removes its VPC port."""
    steering.detach(dedicated.sandbox_addr)
    remove_eni(names, dedicated.eni.vpc_id, dedicated.eni.n)
