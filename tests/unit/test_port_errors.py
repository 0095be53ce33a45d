"""The Hyperplane service's port rule without a kernel: how a plane's port-allocation errors are
attributed to its ENIs, and which ENI a new environment gets while one is exhausted (the live
version, with real ENIs and a function, is tests/e2e/test_port_exhaustion.py)."""
from __future__ import annotations

from pathlib import Path

from lambdaplane.config import Settings
from lambdaplane.net import hyperplane as hp
from lambdaplane.net.names import Names
from lambdaplane.service import hyperplane as service
from lambdaplane.service.hyperplane_sampler import PORT_QUIET_S
from lambdaplane.store.db import Database
from lambdaplane.store.hyperplane import EniKey, HyperplaneEniRow

KEY = EniKey("us-east-1", "subnet-1", "sg-1")
A, B = "10.0.2.10", "10.0.2.11"
FULL = hp.port_range_size(hp.SNAT_PORTS)


def _service(tmp_path: Path) -> service.HyperplaneService:
    # no kernel, VPC or function service: the port rule reads only the service's own state
    svc = service.HyperplaneService(Settings(data_dir=tmp_path), Names("zzz"),
                                    Database.open(tmp_path),
                                    None, None, None)  # type: ignore[arg-type]
    svc._rows = {n: HyperplaneEniRow(n, KEY, "vpc-1", f"eni-{n}", "f") for n in (1, 2)}
    return svc


def _sample(svc: service.HyperplaneService, insert_failed: int, busiest: dict[str, int],
            ranges: dict[int, int], refused: dict[int, int] | None = None,
            addresses: dict[int, str] | None = None) -> None:
    addresses = addresses or {1: A, 2: B}
    ports = hp.PlanePorts({}, refused or {}, insert_failed)
    destinations = hp.PlanePorts({}, refused or {}, insert_failed, busiest, ranges) \
        if len(addresses) > 1 else None
    svc.sampler.count_port_errors("vpc-1", ports, addresses, destinations)


def test_one_eni_in_the_plane_gets_the_planes_errors(tmp_path: Path) -> None:
    svc = _service(tmp_path)
    _sample(svc, 3, {A: 5}, {1: FULL}, addresses={1: A})
    assert svc.port_errors() == {1: 3}
    _sample(svc, 3, {A: 5}, {1: FULL}, addresses={1: A})  # no increase: nothing new
    assert svc.port_errors() == {1: 3}


def test_the_fullest_eni_gets_conntracks_errors_and_guard_refusals_are_exact(
        tmp_path: Path) -> None:
    svc = _service(tmp_path)
    # ENI 1 uses both of its 2 ports towards one destination, ENI 2 a sliver of its range
    _sample(svc, 4, {A: 2, B: 900}, {1: 2, 2: FULL})
    assert svc.port_errors() == {1: 4}
    _sample(svc, 4, {A: 2, B: 900}, {1: 2, 2: FULL}, refused={2: 7})
    assert svc.port_errors() == {1: 4, 2: 7}
    _sample(svc, 5, {A: 2, B: 2}, {1: 2, 2: 2}, refused={2: 7})  # equally full: both
    assert svc.port_errors() == {1: 5, 2: 8}


def test_an_exhausted_eni_takes_no_new_environments_until_quiet(tmp_path: Path) -> None:
    svc = _service(tmp_path)
    assert svc._pick(KEY) == 1
    _sample(svc, 0, {}, {1: 2, 2: 2}, refused={1: 1})
    assert svc._pick(KEY) == 2  # the next ENI of the same key
    _sample(svc, 0, {}, {1: 2, 2: 2}, refused={1: 1, 2: 1})
    assert svc._pick(KEY) is None  # all exhausted: attach makes a further ENI
    svc.sampler.errors[1].last_at -= PORT_QUIET_S  # ENI 1 quiet for PORT_QUIET_S
    assert svc._pick(KEY) == 1
    svc.sampler.counts[1] = svc.settings.eni_flow_limit  # ... but only under the flow limit
    assert svc._pick(KEY) is None
