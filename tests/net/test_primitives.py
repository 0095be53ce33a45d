"""The kernel primitives and `clean_instance`, on real namespaces: what clean removes is
exactly one instance's objects."""
from __future__ import annotations

import os

import pytest

from lambdaplane.cleanup import fresh_instance, clean_instance, leftovers
from lambdaplane.net import nft, ns
from lambdaplane.net.names import Names
from lambdaplane.net.netlink import Netlink

pytestmark = pytest.mark.root


def _names() -> Names:
    return Names(fresh_instance("t"))


def test_netns_veth_nft_and_clean_removes_only_own_instance() -> None:
    mine, other = _names(), _names()
    while other.instance == mine.instance:
        other = _names()
    try:
        for names in (mine, other):
            ns.create(names.worker_netns)
            ns.create(names.sandbox_netns(1))
            with Netlink(names.worker_netns) as nl:
                nl.add_veth(names.sandbox_veth(1), "eth0", peer_netns=names.sandbox_netns(1))
                nl.add_address(names.sandbox_veth(1), "169.254.1.1", 32)
                nl.set_up(names.sandbox_veth(1))
            nft.apply(f"add table inet {names.nft_table}")
        ns.create(mine.worker_netns)  # idempotent
        with Netlink(mine.sandbox_netns(1)) as nl:
            assert [link.name for link in nl.links("eth0")] == ["eth0"]
        assert ("inet", mine.nft_table) in nft.tables(mine.nft_table)
        assert len(leftovers(mine.instance)) == 3  # two netns, one nft table

        removed = clean_instance(mine.instance)
        assert len(removed) == 3
        assert leftovers(mine.instance) == []
        assert len(leftovers(other.instance)) == 3, "clean touched another instance"
    finally:
        clean_instance(mine.instance)
        clean_instance(other.instance)
    assert leftovers(other.instance) == []


def test_entered_restores_thread_namespace() -> None:
    names = _names()
    root_ino = os.stat("/proc/thread-self/ns/net").st_ino
    try:
        ns.create(names.worker_netns)
        with ns.entered(names.worker_netns):
            assert os.stat("/proc/thread-self/ns/net").st_ino != root_ino
        assert os.stat("/proc/thread-self/ns/net").st_ino == root_ino
    finally:
        ns.delete(names.worker_netns)
    assert not ns.exists(names.worker_netns)


def test_ip_netns_after_ours_does_not_cover_our_names() -> None:
    """`ip netns add` binds /run/netns over itself unless it is a mount point already; over
    names we had mounted, that made them undeletable (EBUSY) until the next reboot."""
    import subprocess

    names = _names()
    theirs = f"{names.worker_netns}-ip"
    try:
        ns.create(names.worker_netns)
        with open("/proc/self/mountinfo") as f:
            assert any(line.split()[4] == str(ns.NETNS_DIR) for line in f)
        subprocess.run(["ip", "netns", "add", theirs], check=True)
        ns.delete(names.worker_netns)
        assert not ns.exists(names.worker_netns)
    finally:
        ns.delete(names.worker_netns)
        subprocess.run(["ip", "netns", "del", theirs], check=False, capture_output=True)
    assert not ns.exists(theirs)
