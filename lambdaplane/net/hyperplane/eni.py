"""Hyperplane ENIs: what makes ENI n carry traffic once its port and transit exist.

Owns per ENI the routes and rules on both sides of its transit (worker: mark n → table
1000+n towards the subnet gateway; VPC: mark n → table 100000+n back to the worker), the
transit's address and fast-path program, its chains/counters/dispatch in the plane table, and
its entry in the worker's egress set. Not owned: the port and transit links (net/reconcile.py),
the plane table itself (net/hyperplane/plane.py), steering (net/hyperplane/steering.py)."""
from __future__ import annotations

import contextlib

from .. import fastpath, nft, ns
from ..names import Names, back_table, eni_mark, out_table
from ..netlink import Netlink
from ..worker import SANDBOX_NET
from .model import (
    RULE_PRIORITY,
    SNAT_PORTS,
    TRANSIT_WORKER_ADDR,
    HyperplaneEni,
    HyperplaneError,
    replace_table,
)
from .rules import dispatch, dispatch_removal, eni_removal, eni_script, plane_objects
from .steering import list_attachments, runs_fast_path


def ensure_eni(names: Names, eni: HyperplaneEni, ports: str = SNAT_PORTS) -> None:
    """Make ENI `eni` carry traffic: routes and rules on both sides of its transit, SNAT,
    filter. The plane must exist and the ENI's port with its transit must already be there
    (net/reconcile.py). `ports`: the SNAT source-port range "lo-hi" (narrowed only by tests
    and benchmarks)."""
    n, vpc, transit = eni.n, names.vpc_netns(eni.vpc_id), names.transit_veth(eni.n)
    if not ns.exists(vpc):
        raise HyperplaneError(f"no namespace for {eni.vpc_id}")
    with Netlink(vpc) as vl, Netlink(names.worker_netns) as wl:
        if vl.index(eni.port) is None or wl.index(transit) is None:
            raise HyperplaneError(f"ENI {n}: port {eni.port} or transit {transit} missing")
        # worker side: the gateway answers ARP on the port (the VPC holds it on lo)
        with ns.entered(names.worker_netns):
            ns.set_sysctl(f"net.ipv4.conf.{transit}.rp_filter", "0")
        wl.add_address(transit, TRANSIT_WORKER_ADDR, 32)
        wl.set_up(transit)
        replace_table(wl, out_table(n), [(f"{eni.gateway}/32", transit, None),
                                         ("0.0.0.0/0", transit, eni.gateway)])
        wl.add_rule(eni_mark(n), out_table(n), RULE_PRIORITY)
        fast = fastpath.shared(names)
        if fast is not None:  # replies into sandboxes (net/fastpath.py)
            fast.attach(wl, transit)
        # VPC side
        with ns.entered(vpc):
            ns.set_sysctl(f"net.ipv4.conf.{eni.port}.rp_filter", "0")
        replace_table(vl, back_table(n), [(f"{TRANSIT_WORKER_ADDR}/32", eni.port, None),
                                          (str(SANDBOX_NET), eni.port, TRANSIT_WORKER_ADDR)])
        vl.add_rule(eni_mark(n), back_table(n), RULE_PRIORITY)
    # dispatch under another port name goes (adding an element whose key is mapped to another
    # chain fails); chains and counters stay, rewritten in place
    stale = dispatch_removal(names, n, plane_objects(names, vpc))
    nft.apply("\n".join(stale + [eni_script(names, eni, ports)]), vpc)
    _allow_worker_egress(names, transit)


def remove_eni(names: Names, vpc_id: str, n: int) -> None:
    """Take ENI n out of service (idempotent): sandboxes steered to it lose their path, its
    routes, rules, SNAT and counters go. The port and transit (net/reconcile.py's) stay:
    without dispatch, routes or rules they carry nothing."""
    vpc, transit = names.vpc_netns(vpc_id), names.transit_veth(n)
    if ns.exists(names.worker_netns):
        steered = [a for a, m in list_attachments(names).items() if m == eni_mark(n)]
        script = [f"delete element ip {names.steer_table} steer {{ {', '.join(steered)} }}"] \
            if steered else []
        if _worker_egress_has(names, transit):
            script.append(f'delete element inet {names.nft_table} egress_ifnames '
                          f'{{ "{transit}" }}')
        if script:
            nft.apply("\n".join(script), names.worker_netns)
        with Netlink(names.worker_netns) as wl:
            fast, index = fastpath.loaded(names), wl.index(transit)
            if fast is not None:
                for addr, (_sandbox, to) in fast.entries().items():
                    if addr in steered or to == index:
                        fast.delete(addr)
            wl.detach_ingress_bpf(transit)
            wl.delete_rule(eni_mark(n), out_table(n), RULE_PRIORITY)
            replace_table(wl, out_table(n), [])
    if ns.exists(vpc):
        removal = eni_removal(names, n, plane_objects(names, vpc))
        if removal:
            nft.apply(removal, vpc)
        with Netlink(vpc) as vl:
            vl.delete_rule(eni_mark(n), back_table(n), RULE_PRIORITY)
            replace_table(vl, back_table(n), [])


def eni_state(names: Names, vpc_id: str, n: int) -> HyperplaneEni | None:
    """Read ENI n of `vpc_id` back from the kernel; None unless every piece is in place."""
    vpc, transit = names.vpc_netns(vpc_id), names.transit_veth(n)
    if not ns.exists(vpc) or not ns.exists(names.worker_netns):
        return None
    found = dispatch(plane_objects(names, vpc), n)
    if found is None:
        return None
    port, address = found
    with Netlink(vpc) as vl, Netlink(names.worker_netns) as wl:
        if None in (vl.index(port), wl.index(transit)):
            return None
        gateways = [r.gateway for r in wl.table_routes(out_table(n)) if r.dst_len == 0]
        back = {(r.dst, r.dst_len, r.gateway) for r in vl.table_routes(back_table(n))}
        if (len(gateways) != 1
                or (eni_mark(n), out_table(n)) not in {(r.fwmark, r.table) for r in wl.rules()}
                or (eni_mark(n), back_table(n)) not in {(r.fwmark, r.table) for r in vl.rules()}
                or (TRANSIT_WORKER_ADDR, 32) not in wl.addresses(transit)
                or not runs_fast_path(names, wl, transit)
                or (str(SANDBOX_NET.network_address), SANDBOX_NET.prefixlen,
                    TRANSIT_WORKER_ADDR) not in back):
            return None
    if _worker_egress_has(names, transit) is False:
        return None
    gateway = gateways[0]
    return HyperplaneEni(n, vpc_id, address, gateway, port) if gateway else None


def _worker_egress_has(names: Names, ifname: str) -> bool | None:
    """Whether the worker table (net/worker.py) lets sandboxes forward out of `ifname`;
    None when there is no worker table (stand-alone use)."""
    netns = names.worker_netns
    if not ns.exists(netns):
        return None
    with contextlib.suppress(nft.NftError):
        for item in nft.list_json(f"set inet {names.nft_table} egress_ifnames", netns):
            return ifname in (item.get("set", {}).get("elem") or [])
    return None


def _allow_worker_egress(names: Names, ifname: str) -> None:
    if _worker_egress_has(names, ifname) is False:
        nft.apply(f'add element inet {names.nft_table} egress_ifnames {{ "{ifname}" }}',
                  names.worker_netns)
