"""Hostile deployment packages through CreateFunction/UpdateFunctionCode (boto3, live server):
entries with `../` or absolute paths, symlinks out of the tree, and zip bombs — declared past
AWS's 250 MB unzipped limit, or lying about their sizes — are refused with a clear
InvalidParameterValueException, nothing is written outside the code store, and no half-made
extraction is left behind."""
from __future__ import annotations

import io
import stat
import struct
import zipfile
from collections.abc import Callable

import pytest
from botocore.exceptions import ClientError

from tests.harness import LiveServer, create_python_function, make_zip

pytestmark = pytest.mark.root

ROLE = "arn:aws:iam::000000000000:role/lambda"
UNZIPPED_LIMIT = 262_144_000
APP = "def handler(event, context):\n    return 'ok'\n"


def _zip(add: Callable[[zipfile.ZipFile], None]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("app.py", APP)
        add(zf)
    return buf.getvalue()


def _entry(name: str, data: bytes = b"x", mode: int = 0o100644) -> Callable[[zipfile.ZipFile], None]:
    def add(zf: zipfile.ZipFile) -> None:
        info = zipfile.ZipInfo(name)
        info.external_attr = mode << 16
        zf.writestr(info, data)
    return add


def _zeros(name: str, size: int) -> Callable[[zipfile.ZipFile], None]:
    """`size` bytes of zeros, streamed (deflate makes ~1 KB of each MB)."""
    def add(zf: zipfile.ZipFile) -> None:
        info = zipfile.ZipInfo(name)
        info.compress_type = zipfile.ZIP_DEFLATED
        chunk = bytes(1 << 20)
        with zf.open(info, "w", force_zip64=True) as out:
            left = size
            while left > 0:
                out.write(chunk[:min(left, len(chunk))])
                left -= len(chunk)
    return add


def _lie_about_sizes(data: bytes, entry_name: bytes, declared: int) -> bytes:
    """Rewrite one entry's uncompressed size in both headers: the zip claims `declared`
    bytes but inflates to far more."""
    out = bytearray(data)
    pos = out.find(b"PK\x03\x04")  # local headers
    while pos != -1:
        name_len = struct.unpack_from("<H", out, pos + 26)[0]
        if out[pos + 30:pos + 30 + name_len] == entry_name:
            struct.pack_into("<I", out, pos + 22, declared)
        pos = out.find(b"PK\x03\x04", pos + 4)
    pos = out.find(b"PK\x01\x02")  # central directory
    while pos != -1:
        name_len = struct.unpack_from("<H", out, pos + 28)[0]
        if out[pos + 46:pos + 46 + name_len] == entry_name:
            struct.pack_into("<I", out, pos + 24, declared)
        pos = out.find(b"PK\x01\x02", pos + 4)
    return bytes(out)


def _refused(server: LiveServer, name: str, code: bytes) -> str:
    with pytest.raises(ClientError) as err:
        server.lambda_().create_function(FunctionName=name, Runtime="python3.11",
                                         Handler="app.handler", Role=ROLE,
                                         Code={"ZipFile": code})
    resp = err.value.response
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert resp["Error"]["Code"] == "InvalidParameterValueException", resp["Error"]
    return resp["Error"]["Message"]


def _store_is_clean(server: LiveServer) -> None:
    """No half-extracted temp dir, nothing escaped next to the store."""
    code_root = server.data_dir / "code"
    assert not [p.name for p in code_root.iterdir() if p.name.startswith(".tmp")]
    assert not (server.data_dir / "evil").exists() and not (server.data_dir / "lp-evil").exists()


@pytest.mark.parametrize("entry, words", [
    ("../lp-evil", "points outside the deployment package"),
    ("lib/../../lp-evil", "points outside the deployment package"),
    ("../../../../../../tmp/lp-evil", "points outside the deployment package"),
    ("/tmp/lp-evil", "has an absolute path"),
    ("\\..\\lp-evil", "absolute path"),
    ("C:/lp-evil", "absolute path"),
    ("a\\..\\..\\lp-evil", "points outside the deployment package"),
])
def test_path_traversal_entries_are_refused(server: LiveServer, entry: str, words: str) -> None:
    message = _refused(server, "traversal", _zip(_entry(entry)))
    assert words in message and entry in message, message
    _store_is_clean(server)


@pytest.mark.parametrize("target", ["/etc/shadow", "../../../lambdaplane.db", "app.py"])
def test_symlinks_are_refused(server: LiveServer, target: str) -> None:
    code = _zip(_entry("link", target.encode(), mode=stat.S_IFLNK | 0o777))
    message = _refused(server, "symlink", code)
    assert "is a symbolic link" in message, message
    _store_is_clean(server)


def test_declared_size_past_250mb_is_refused_before_extraction(server: LiveServer) -> None:
    code = _zip(_zeros("bomb.bin", UNZIPPED_LIMIT + (1 << 20)))
    assert len(code) < 2 * 1024 * 1024  # a small upload…
    message = _refused(server, "bomb", code)  # …that would expand past the limit
    assert message == f"Unzipped size must be smaller than {UNZIPPED_LIMIT} bytes"
    _store_is_clean(server)


def test_many_entries_adding_up_past_250mb_are_refused(server: LiveServer) -> None:
    def add(zf: zipfile.ZipFile) -> None:
        for i in range(26):
            _zeros(f"part{i}.bin", 10 * 1024 * 1024 + 1)(zf)
    message = _refused(server, "bomb-parts", _zip(add))
    assert "Unzipped size must be smaller than" in message
    _store_is_clean(server)


def test_lying_headers_are_caught_on_actual_size(server: LiveServer) -> None:
    """Headers claim 1 KB, the data inflates to 300 MB: counting what really comes out stops
    it (or the CRC does), never a 300 MB file on disk."""
    code = _lie_about_sizes(_zip(_zeros("liar.bin", 300 * 1024 * 1024)), b"liar.bin", 1024)
    message = _refused(server, "liar", code)
    assert "Unzipped size must be smaller than" in message or "Could not unzip" in message
    _store_is_clean(server)


def test_update_function_code_is_checked_too(server: LiveServer) -> None:
    lam = server.lambda_()
    create_python_function(lam, "updated", APP)
    with pytest.raises(ClientError) as err:
        lam.update_function_code(FunctionName="updated", ZipFile=_zip(_entry("../lp-evil")))
    assert err.value.response["Error"]["Code"] == "InvalidParameterValueException"
    # the function still runs its old code
    assert lam.invoke(FunctionName="updated")["Payload"].read() == b'"ok"'


def test_not_a_zip_and_truncated_zip(server: LiveServer) -> None:
    good = make_zip({"app.py": APP})
    for code in (b"not a zip at all", good[: len(good) // 2]):
        message = _refused(server, "garbage", code)
        assert message.startswith("Could not unzip uploaded file"), message
    _store_is_clean(server)
