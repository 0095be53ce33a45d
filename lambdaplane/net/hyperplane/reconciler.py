"""Reconcile of the Hyperplane data path: make the kernel hold exactly the desired planes,
ENIs and attachments (in that order: steering table, stale planes and ENIs out, planes, ENIs,
attachments, fast path), reading back what is there and changing only what differs; and the
removal of all of it. Owns nothing of its own: it drives steering.py, plane.py and eni.py."""
from __future__ import annotations

from collections.abc import Iterable, Mapping

from .. import ns
from ..names import Names, out_table
from ..netlink import Netlink
from .eni import eni_state, ensure_eni, remove_eni
from .model import FLOW_IDLE_TIMEOUT_S, SNAT_PORTS, HyperplaneEni
from .plane import ensure_vpc_plane, list_vpc_planes, remove_vpc_plane, vpc_plane_enis
from .steering import (
    attach,
    detach,
    ensure_steering,
    list_attachments,
    reconcile_fast_path,
    remove_steering,
)


def list_enis(names: Names) -> dict[int, str | None]:
    """ENI id → the VPC whose plane dispatches it (None: worker rules of an ENI whose plane
    is gone). eni_state() tells whether each is complete."""
    out: dict[int, str | None] = {}
    for vpc_id in list_vpc_planes(names):
        for n in vpc_plane_enis(names, vpc_id):
            out[n] = vpc_id
    if ns.exists(names.worker_netns):
        with Netlink(names.worker_netns) as wl:
            for rule in wl.rules():
                mark = rule.fwmark
                if mark and rule.table == out_table(mark) and mark not in out:
                    out[mark] = None
    return out


def reconcile(names: Names, enis: Iterable[HyperplaneEni],
              attachments: Mapping[str, int] | None, vpc_ids: Iterable[str] = (),
              idle_timeout_s: int = FLOW_IDLE_TIMEOUT_S,
              ports: Mapping[int, str] | None = None) -> list[str]:
    """Make the kernel hold exactly these planes, ENIs and attachments; returns what it did
    (empty when nothing differed). `ports`: ENI n → its SNAT range where it is not the whole
    range (an agent's port block, service/agent_hyperplane.py). ENIs whose link the VPC code
    has not made yet are skipped (listed as waiting) and picked up by the next run.
    `attachments` None: leave steering elements and fast-path entries alone (they are live
    state of the thread that steers)."""
    done: list[str] = []
    desired = {e.n: e for e in enis}
    planes = set(vpc_ids) | {e.vpc_id for e in desired.values()}
    if ensure_steering(names):
        done.append("steering table")
    for vpc_id in sorted(set(list_vpc_planes(names)) - planes):
        remove_vpc_plane(names, vpc_id)
        done.append(f"removed plane {vpc_id}")
    for n, where in sorted(list_enis(names).items()):
        want = desired.get(n)
        if want is None or where != want.vpc_id:
            remove_eni(names, where or "", n)
            done.append(f"removed eni {n}")
    for vpc_id in sorted(planes):
        if ensure_vpc_plane(names, vpc_id, idle_timeout_s):
            done.append(f"plane {vpc_id}")
    for n, want in sorted(desired.items()):
        if eni_state(names, want.vpc_id, n) == want:
            continue
        with Netlink(names.worker_netns) as wl:
            if wl.index(names.transit_veth(n)) is None:
                done.append(f"waiting for the port of eni {n}")
                continue
        ensure_eni(names, want, (ports or {}).get(n, SNAT_PORTS))
        done.append(f"eni {n}")
    if attachments is None:
        return done
    actual = list_attachments(names)
    for addr, n in sorted(actual.items()):
        if attachments.get(addr) != n:
            detach(names, addr)
            done.append(f"detached {addr}")
    for addr, n in sorted(attachments.items()):
        if actual.get(addr) != n:
            attach(names, addr, n)
            done.append(f"attached {addr} to {n}")
    return done + reconcile_fast_path(names, attachments)


def remove_all(names: Names) -> None:
    """Every plane, ENI and the steering table of this instance (shutdown, tests)."""
    for vpc_id in list_vpc_planes(names):
        remove_vpc_plane(names, vpc_id)
    for n, where in list_enis(names).items():
        remove_eni(names, where or "", n)
    remove_steering(names)
