"""Steering in the worker namespace: which sandbox's packets go to which Hyperplane ENI.

Owns the steering table `lp<i>-steer` (its map `sandbox address → mark n` is the record of
every attachment) and the same pairing in the fast path's BPF map (net/fastpath.py). A cold
start touches one element of each (Steering.attach). Not owned: the worker namespace and its
table (net/worker.py), the transits (net/reconcile.py), ENI routing (net/hyperplane/eni.py)."""
from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping

from .. import bpf, fastpath, nft, ns
from ..names import Names, eni_mark
from ..netlink import Netlink
from ..nft_elements import MapElements
from ..worker import sandbox_slot
from .rules import STEERING_VERSION, steering_ruleset

log = logging.getLogger(__name__)


def ensure_steering(names: Names) -> bool:
    """The worker's steering table. Made once and left alone (its map is live state) unless
    it is of an older STEERING_VERSION: then it is replaced with its elements in one
    transaction. Returns whether anything changed."""
    netns, table = names.worker_netns, names.steer_table
    if ("ip", table) not in nft.tables(table, netns):
        nft.apply(steering_ruleset(names), netns)
        return True
    current = nft.list_text(f"table ip {table}", netns) or ""
    if f'comment "{STEERING_VERSION}"' in current:
        return False
    kept = list_attachments(names)
    elements = ", ".join(f"{addr} : {eni_mark(n)}" for addr, n in sorted(kept.items()))
    nft.apply(f"delete table ip {table}\n" + steering_ruleset(names)
              + (f"add element ip {table} steer {{ {elements} }}\n" if elements else ""), netns)
    return True


def remove_steering(names: Names) -> None:
    """The steering table and the fast path's entries (its program stays on links until they
    go, passing everything once its map is empty)."""
    if ns.exists(names.worker_netns):
        nft.delete_table("ip", names.steer_table, names.worker_netns)
    fast = fastpath.loaded(names)
    if fast is not None:
        for addr in fast.entries():
            fast.delete(addr)
        fastpath.drop(names)


class Steering:
    """attach/detach on sockets kept open in the worker: the cold-start path pays one
    map-element transaction (~0.01 ms, net/nft_elements.py), two link lookups and one BPF map
    update, and no setns. The nft element is the record (reconcile reads it); the fast path
    entry (net/fastpath.py) lets the sandbox's packets skip the worker's routing, and without
    it they take the marked route to the same transit. Used from one thread at a time (the
    service calls it on the event loop); close() before the worker netns goes."""

    def __init__(self, names: Names) -> None:
        self.names = names
        self._elements = MapElements(names.worker_netns, names.steer_table, "steer")
        self._fast = fastpath.shared(names)
        self._links = fastpath.LinkIndexes(names.worker_netns) if self._fast else None

    def attach(self, sandbox_addr: str, n: int) -> None:
        """Steer a sandbox into ENI n: one map element, one transaction."""
        try:
            self._elements.add(sandbox_addr, eni_mark(n))
        except FileExistsError:  # steered to another ENI: move it, in one transaction
            self._elements.replace(sandbox_addr, eni_mark(n))
        if self._fast is None or self._links is None:
            return
        links = fast_path_links(self.names, self._links, sandbox_addr, n)
        try:
            if links is not None:
                self._fast.set(sandbox_addr, *links)
                return
        except OSError:  # e.g. a full map: the routed path serves this sandbox
            log.warning("fast path: no entry for %s", sandbox_addr, exc_info=True)
        self._fast.delete(sandbox_addr)  # an entry for another ENI must not outlive the move

    def detach(self, sandbox_addr: str) -> None:
        """Stop steering a sandbox (idempotent): its next packets find no path to any VPC."""
        if self._fast is not None:
            self._fast.delete(sandbox_addr)
        with contextlib.suppress(FileNotFoundError):
            self._elements.delete(sandbox_addr)

    def close(self) -> None:
        self._elements.close()
        if self._links is not None:
            self._links.close()


def fast_path_links(names: Names, links: fastpath.LinkIndexes, sandbox_addr: str,
                    n: int) -> tuple[int, int] | None:
    """(sandbox veth, transit) ifindexes for a fast-path entry; None if either is missing."""
    slot = sandbox_slot(sandbox_addr)
    sandbox = links.get(names.sandbox_veth(slot)) if slot is not None else None
    transit = links.get(names.transit_veth(n))
    return None if sandbox is None or transit is None else (sandbox, transit)


def runs_fast_path(names: Names, wl: Netlink, link: str) -> bool:
    """Whether `link` runs this process's fast-path program (True when there is none): one
    left by an earlier server would redirect by that server's map."""
    fast = fastpath.shared(names)
    return fast is None or bpf.prog_id(fast.prog_fd) in wl.ingress_bpf_ids(link)


def reconcile_fast_path(names: Names, attachments: Mapping[str, int]) -> list[str]:
    """Make the fast path's map hold exactly the attachments whose links exist."""
    fast = fastpath.shared(names)
    if fast is None or not ns.exists(names.worker_netns):
        return []
    indexes = fastpath.LinkIndexes(names.worker_netns)
    try:
        wanted = {addr: links for addr, n in attachments.items()
                  if (links := fast_path_links(names, indexes, addr, n)) is not None}
    finally:
        indexes.close()
    done: list[str] = []
    actual = fast.entries()
    for addr in sorted(set(actual) - set(wanted)):
        fast.delete(addr)
        done.append(f"fast path: removed {addr}")
    for addr, links in sorted(wanted.items()):
        if actual.get(addr) != links:
            fast.set(addr, *links)
            done.append(f"fast path: {addr}")
    return done


def attach(names: Names, sandbox_addr: str, n: int) -> None:
    """One-shot Steering.attach (reconcile, tools); hot paths keep a Steering."""
    steering = Steering(names)
    try:
        steering.attach(sandbox_addr, n)
    finally:
        steering.close()


def detach(names: Names, sandbox_addr: str) -> None:
    steering = Steering(names)
    try:
        steering.detach(sandbox_addr)
    finally:
        steering.close()


def list_attachments(names: Names) -> dict[str, int]:
    """sandbox address → ENI id, as the kernel has it."""
    if not ns.exists(names.worker_netns):
        return {}
    try:
        items = nft.list_json(f"map ip {names.steer_table} steer", names.worker_netns)
    except nft.NftError:
        return {}
    out: dict[str, int] = {}
    for item in items:
        for addr, mark in item.get("map", {}).get("elem", []):
            out[addr] = int(mark)
    return out
