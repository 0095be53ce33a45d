"""What the Hyperplane service repairs in the store when it starts, before any reconcile:
interfaces stored in an older layout of the plane (`upgrade_far_ends`, also used by the legacy
service) and a crash between an ENI's EC2 interface and its Hyperplane row (`drop_orphans`).
The kernel side of both is left to the reconcile that follows (service/hyperplane.py)."""
from __future__ import annotations

import logging

from ..net.executor import NetThread
from ..net.hyperplane import migration as hp_migration
from ..net.names import LEGACY_ENI_FIRST, Names
from ..store.ec2 import FarEnd
from ..store.hyperplane import HyperplaneEniRow, HyperplaneStore
from .vpc import VpcService

log = logging.getLogger("lambdaplane.hyperplane")

MAX_N = LEGACY_ENI_FIRST - 1  # legacy mode's per-environment ENIs use n above this


async def upgrade_far_ends(vpc: VpcService, net: NetThread, names: Names) -> None:
    """Interfaces stored before the plane moved into the VPC namespace (2026-12-06) lead to
    `e<n>` in a namespace of their own: point them at their transit instead, and remove those
    namespaces (reconcile then makes the ports anew)."""
    moved = []
    for eni in vpc.store.enis():
        far = eni.far_end
        n = hp_migration.old_layout_number(names, far.netns, far.ifname) if far else None
        if n is not None:
            moved.append((eni.id, FarEnd(names.worker_netns, names.transit_veth(n), False)))
    if moved:
        with vpc.db.transaction():
            for eni_id, far in moved:
                vpc.store.set_eni_far_end(eni_id, far)
        log.info("moved %d interfaces to the plane in the VPC namespace", len(moved))
    await net.run(hp_migration.remove_old_planes, names)


async def drop_orphans(vpc: VpcService, store: HyperplaneStore, names: Names,
                       rows: dict[int, HyperplaneEniRow]) -> None:
    """Repair a crash between the EC2 interface and our row (either way round); `rows` (the
    service's, by ENI n) loses the rows whose interface is gone."""
    for n, row in list(rows.items()):
        if vpc.store.eni(row.eni_id) is None:
            store.delete(n)
            del rows[n]
    ours = {r.eni_id for r in rows.values()}
    for eni in vpc.store.enis():
        far = eni.far_end
        number = names.eni_of_far_end(far.netns, far.ifname) if far else None
        if (eni.interface_type == "lambda" and number is not None and eni.id not in ours
                and number <= MAX_N):
            log.info("removing %s: a Hyperplane ENI the store lost", eni.id)
            await vpc.delete_interface(eni.region, eni.id, by_user=False)
