"""nft_elements on a real namespace: map elements added, moved and deleted through nfnetlink
read back the same through libnftables, and the kernel's refusals arrive as OSErrors."""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from lambdaplane.cleanup import clean_instance, fresh_instance
from lambdaplane.net import nft, ns
from lambdaplane.net.names import Names
from lambdaplane.net.nft_elements import MapElements

pytestmark = pytest.mark.root


@pytest.fixture
def steer_map() -> Iterator[tuple[str, MapElements]]:
    names = Names(fresh_instance("t"))
    netns, table = names.worker_netns, names.nft_table + "-steer"
    elements = None
    try:
        ns.create(netns)
        nft.apply(f"table ip {table} {{\n    map steer {{ type ipv4_addr : mark; }}\n}}\n", netns)
        elements = MapElements(netns, table, "steer")
        yield table, elements
    finally:
        if elements is not None:
            elements.close()
        clean_instance(names.instance)


def _listed(netns: str | None, table: str) -> dict[str, int]:
    items = nft.list_json(f"map ip {table} steer", netns)
    return {addr: mark for addr, mark in items[0]["map"].get("elem", [])}


def test_add_replace_delete_read_back(steer_map: tuple[str, MapElements]) -> None:
    table, elements = steer_map
    elements.add("100.64.0.5", 7)
    elements.add("100.64.1.9", 70_000)
    elements.add("100.64.0.5", 7)  # the same again changes nothing
    assert _listed(elements.netns, table) == {"100.64.0.5": 7, "100.64.1.9": 70_000}
    with pytest.raises(FileExistsError):  # another mark for a present address
        elements.add("100.64.0.5", 8)
    elements.replace("100.64.0.5", 8)
    assert _listed(elements.netns, table) == {"100.64.0.5": 8, "100.64.1.9": 70_000}
    elements.delete("100.64.0.5")
    with pytest.raises(FileNotFoundError):
        elements.delete("100.64.0.5")
    assert _listed(elements.netns, table) == {"100.64.1.9": 70_000}


def test_a_missing_map_is_an_error(steer_map: tuple[str, MapElements]) -> None:
    _table, elements = steer_map
    other = MapElements(elements.netns, "lp-no-such-table", "steer")
    try:
        with pytest.raises(FileNotFoundError):
            other.add("100.64.0.5", 1)
    finally:
        other.close()
