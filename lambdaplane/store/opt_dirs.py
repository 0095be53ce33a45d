"""The /opt a function sees: its layers' extracted contents (directories of the code store)
merged in order into one read-only directory of the code store, `code/opt-<sha256 of the
ordered layer digests>` — made ONCE per distinct layer list (hard links, atomic rename of a
finished temp dir), so a cold start only bind-mounts it. Later layers override earlier ones,
file by file, as AWS extracts them in order. Blocking: call from a thread."""
from __future__ import annotations

import hashlib
import os
import secrets
from pathlib import Path

from .code import CodeStore, publish_tree, remove_tree

OPT_PREFIX = "opt-"


def opt_dir_name(layer_hexes: list[str]) -> str:
    return OPT_PREFIX + hashlib.sha256("\n".join(layer_hexes).encode()).hexdigest()


def opt_dir(code: CodeStore, layer_hexes: list[str]) -> Path:
    """Where the merged /opt of this ordered layer list lives (made if missing)."""
    target = code.root / opt_dir_name(layer_hexes)
    if not target.is_dir():
        _merge(code, layer_hexes, target)
    return target


def tree_size(path: Path) -> int:
    """Bytes of the regular files under `path` (what unzipped content weighs)."""
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            total += os.lstat(os.path.join(dirpath, name)).st_size
    return total


def _merge(code: CodeStore, layer_hexes: list[str], target: Path) -> None:
    tmp = code.root / f".tmp-{target.name}-{secrets.token_hex(6)}"
    tmp.mkdir(mode=0o755)
    try:
        for layer_hex in layer_hexes:
            source = code.directory(layer_hex)
            if not source.is_dir():
                raise FileNotFoundError(f"layer content {layer_hex} is not in the code store")
            _overlay(source, tmp)
        publish_tree(tmp, target)  # a concurrent merge of the same list may have won
    except BaseException:
        remove_tree(tmp)
        raise


def _overlay(source: Path, dest: Path) -> None:
    """Put `source`'s tree over `dest`'s: a later file (or directory) replaces what is there."""
    for dirpath, dirs, files in os.walk(source):
        rel = os.path.relpath(dirpath, source)
        into = dest if rel == "." else dest / rel
        for name in dirs:
            path = into / name
            if path.exists() and not path.is_dir():
                path.unlink()
            path.mkdir(mode=0o755, exist_ok=True)
        for name in files:
            path = into / name
            if path.is_dir():
                remove_tree(path)
            elif path.exists():
                path.unlink()
            # the store's files are read-only and content-addressed: share them, don't copy
            os.link(os.path.join(dirpath, name), path)
