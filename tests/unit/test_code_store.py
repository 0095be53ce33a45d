"""store/code.py: zips kept by sha256, extracted once, read-only, exec bits kept, dangerous
zips refused."""
from __future__ import annotations

import base64
import hashlib
import io
import os
import stat
import zipfile

import pytest

from lambdaplane.errors import AwsError
from lambdaplane.store import code as code_module
from lambdaplane.store.code import BAD_ZIP, CodeStore
from tests.harness import make_zip


def test_extracts_once_read_only_with_exec_bit(tmp_path):
    store = CodeStore(tmp_path)
    data = make_zip({"bootstrap": "#!/bin/sh\n", "lib/mod.py": "X = 1\n"},
                    modes={"bootstrap": 0o755})
    stored = store.put(data)
    digest = hashlib.sha256(data)
    assert stored.hex == digest.hexdigest()
    assert stored.sha256_b64 == base64.b64encode(digest.digest()).decode()
    assert stored.size == len(data)
    assert stored.directory == tmp_path / "code" / stored.hex
    boot = stored.directory / "bootstrap"
    mod = stored.directory / "lib" / "mod.py"
    assert stat.S_IMODE(boot.stat().st_mode) == 0o555
    assert stat.S_IMODE(mod.stat().st_mode) == 0o444
    assert stat.S_IMODE((stored.directory / "lib").stat().st_mode) == 0o555
    assert stat.S_IMODE(stored.directory.stat().st_mode) == 0o555
    assert mod.read_text() == "X = 1\n"
    inode = stored.directory.stat().st_ino
    again = store.put(data)
    assert again == stored
    assert stored.directory.stat().st_ino == inode  # not extracted a second time
    assert store.read_zip(stored.hex) == data
    assert [p.name for p in (tmp_path / "code").iterdir()] == [stored.hex]  # no temp left


def _zip_with(name: str, mode: int = 0o100644, content: bytes = b"x") -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        info = zipfile.ZipInfo(name)
        info.external_attr = mode << 16
        zf.writestr(info, content)
    return buf.getvalue()


@pytest.mark.parametrize("data,fragment", [
    (_zip_with("../evil.py"), "points outside the deployment package"),
    (_zip_with("a/../../evil.py"), "points outside the deployment package"),
    (_zip_with("/etc/evil"), "absolute path"),
    (_zip_with("link", 0o120777, b"/etc/passwd"), "symbolic link"),
    (b"this is not a zip", BAD_ZIP),
])
def test_refuses_dangerous_or_broken_zips(tmp_path, data, fragment):
    store = CodeStore(tmp_path)
    with pytest.raises(AwsError) as err:
        store.put(data)
    assert err.value.code == "InvalidParameterValueException"
    assert fragment in err.value.message
    assert list((tmp_path / "code").iterdir()) == []


def test_refuses_too_large_unzipped(tmp_path, monkeypatch):
    monkeypatch.setattr(code_module, "UNZIPPED_LIMIT", 1000)
    store = CodeStore(tmp_path)
    with pytest.raises(AwsError) as err:
        store.put(make_zip({"big.bin": b"\0" * 5000}))
    assert err.value.message == "Unzipped size must be smaller than 1000 bytes"
    assert list((tmp_path / "code").iterdir()) == []


def test_remove_deletes_read_only_tree(tmp_path):
    store = CodeStore(tmp_path)
    stored = store.put(make_zip({"a/b/c.py": "pass\n"}))
    store.remove(stored.hex)
    assert not stored.directory.exists()
    assert store.read_zip(stored.hex) is None
    assert os.listdir(tmp_path / "code") == []
