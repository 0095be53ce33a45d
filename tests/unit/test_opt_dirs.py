"""The merged /opt of a layer list (store/opt_dirs.py): later layers override earlier ones
file by file (a file replacing a directory and the reverse too), the result is read-only and
made once per distinct ordered list."""
from __future__ import annotations

import os
from pathlib import Path

from lambdaplane.store.code import CodeStore
from lambdaplane.store.opt_dirs import opt_dir, tree_size
from tests.harness import make_zip


def test_layers_merge_in_order_read_only_and_once(tmp_path: Path) -> None:
    code = CodeStore(tmp_path)
    first = code.put(make_zip({"python/shared.py": "a", "python/only_a.py": "a",
                               "lib/x/inner.so": "dir in a", "bin/tool": "file in a"}))
    second = code.put(make_zip({"python/shared.py": "b", "lib/x": "file in b",
                                "bin/tool/sub": "dir in b"}))
    merged = opt_dir(code, [first.hex, second.hex])
    assert (merged / "python/shared.py").read_text() == "b"
    assert (merged / "python/only_a.py").read_text() == "a"
    assert (merged / "lib/x").read_text() == "file in b"
    assert (merged / "bin/tool/sub").read_text() == "dir in b"
    assert oct(os.stat(merged).st_mode & 0o777) == "0o555"
    assert oct(os.stat(merged / "python").st_mode & 0o777) == "0o555"
    # the layers' own extractions are untouched
    assert (first.directory / "lib/x/inner.so").read_text() == "dir in a"
    assert tree_size(merged) == len("b") + len("a") + len("file in b") + len("dir in b")
    # the same list again: the same directory, not remade; the other order: another one
    inode = os.stat(merged).st_ino
    assert opt_dir(code, [first.hex, second.hex]) == merged
    assert os.stat(merged).st_ino == inode
    reverse = opt_dir(code, [second.hex, first.hex])
    assert reverse != merged and (reverse / "python/shared.py").read_text() == "a"
    assert (reverse / "bin/tool").read_text() == "file in a"
    assert not [p for p in code.root.iterdir() if p.name.startswith(".tmp")]
