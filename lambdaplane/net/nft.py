"""The only libnftables user. Every change is one transaction (a script of nft text applied
atomically) in one network namespace; reads come back as JSON. (The cold-start path's steering
element skips libnftables: net/nft_elements.py.)"""
from __future__ import annotations

import json
from typing import Any

import nftables

from . import ns


class NftError(RuntimeError):
    pass


def _ctx(json_output: bool = False) -> nftables.Nftables:
    ctx = nftables.Nftables()
    ctx.set_json_output(json_output)
    ctx.set_handle_output(True)
    return ctx


def apply(script: str, netns: str | None = None) -> None:
    """Apply `script` as one atomic transaction in `netns` (None: the current one)."""
    with ns.entered(netns):
        rc, _out, err = _ctx().cmd(script)
    if rc != 0:
        raise NftError(f"nft failed in {netns or 'current netns'}: {err.strip()}\n"
                       f"--- script ---\n{script}")


def list_json(what: str = "ruleset", netns: str | None = None) -> list[dict[str, Any]]:
    with ns.entered(netns):
        rc, out, err = _ctx(json_output=True).cmd(f"list {what}")
    if rc != 0:
        raise NftError(err.strip())
    return [item for item in json.loads(out or '{"nftables": []}')["nftables"]
            if "metainfo" not in item]


def list_text(what: str, netns: str | None = None) -> str | None:
    """`nft list <what>` as text (None when it does not exist), e.g. to read a table comment."""
    with ns.entered(netns):
        rc, out, _err = _ctx().cmd(f"list {what}")
    return out if rc == 0 else None


def tables(prefix: str = "", netns: str | None = None) -> list[tuple[str, str]]:
    """(family, name) of the tables whose name starts with `prefix`."""
    out = []
    for item in list_json("tables", netns):
        table = item.get("table")
        if table and table["name"].startswith(prefix):
            out.append((table["family"], table["name"]))
    return out


def delete_table(family: str, name: str, netns: str | None = None) -> None:
    if (family, name) in tables(name, netns):
        apply(f"delete table {family} {name}", netns)
