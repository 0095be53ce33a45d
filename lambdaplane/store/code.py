"""Function code on disk, by sha256: the uploaded zip at `data_dir/code-zips/<hex>.zip` and its
extraction at `data_dir/code/<hex>/` — made ONCE per distinct zip (atomic rename of a finished
temp dir), read-only, world-readable, executables (like `bootstrap`) keeping their exec bit.
Refuses zips that could escape or blow up the extraction. Blocking: call from a thread."""
from __future__ import annotations

import base64
import hashlib
import io
import os
import secrets
import shutil
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..errors import AwsError, InvalidParameterValue

UNZIPPED_LIMIT = 262_144_000  # AWS: 250 MB unzipped, code and layers
ZIPPED_LIMIT = 52_428_800  # AWS: 50 MB zipped, direct upload
BAD_ZIP = "Could not unzip uploaded file. Please check your file, then try to upload again."


@dataclass(frozen=True)
class StoredCode:
    hex: str  # sha256 of the zip, hex: names files and directories
    sha256_b64: str  # what AWS reports as CodeSha256
    size: int  # zipped bytes (CodeSize)
    directory: Path  # extracted, read-only


class CodeStore:
    def __init__(self, data_dir: Path) -> None:
        self.zips = data_dir / "code-zips"
        self.root = data_dir / "code"
        self.zips.mkdir(parents=True, exist_ok=True)
        self.root.mkdir(parents=True, exist_ok=True)
        # The sandbox user must reach /var/task's source through these when bind-mounting.
        os.chmod(self.root, 0o755)

    def zip_path(self, hex_digest: str) -> Path:
        return self.zips / f"{hex_digest}.zip"

    def directory(self, hex_digest: str) -> Path:
        return self.root / hex_digest

    def put(self, data: bytes) -> StoredCode:
        """Validate, keep and extract a zip (no-op for content already stored)."""
        digest = hashlib.sha256(data)
        hex_digest = digest.hexdigest()
        stored = StoredCode(hex_digest, base64.b64encode(digest.digest()).decode(), len(data),
                            self.directory(hex_digest))
        if stored.directory.is_dir() and self.zip_path(hex_digest).exists():
            return stored
        entries = _checked_entries(data)
        self._extract(data, entries, stored.directory)
        self._keep_zip(data, hex_digest)
        return stored

    def read_zip(self, hex_digest: str) -> bytes | None:
        path = self.zip_path(hex_digest)
        return path.read_bytes() if path.exists() else None

    def _keep_zip(self, data: bytes, hex_digest: str) -> None:
        path = self.zip_path(hex_digest)
        if path.exists():
            return
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_bytes(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)

    def _extract(self, data: bytes, entries: list[zipfile.ZipInfo], target: Path) -> None:
        if target.is_dir():
            return
        tmp = self.root / f".tmp-{target.name}-{secrets.token_hex(6)}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(mode=0o755)
        try:
            written = 0
            with zipfile.ZipFile(io.BytesIO(data)) as zf:
                for info in entries:
                    dest = tmp.joinpath(*PurePosixPath(info.filename).parts)
                    if info.is_dir():
                        dest.mkdir(parents=True, exist_ok=True)
                        continue
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    with zf.open(info) as src, open(dest, "wb") as out:
                        # Headers can lie about sizes: count what really comes out.
                        while chunk := src.read(1 << 20):
                            written += len(chunk)
                            if written > UNZIPPED_LIMIT:
                                raise _too_big()
                            out.write(chunk)
                    executable = (info.external_attr >> 16) & 0o111
                    os.chmod(dest, 0o555 if executable else 0o444)
            publish_tree(tmp, target)
        except AwsError:
            remove_tree(tmp)
            raise
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, NotImplementedError,
                IsADirectoryError, FileExistsError, NotADirectoryError):
            # corrupt data, an unknown compression, or entries that clash (file vs directory)
            remove_tree(tmp)
            raise InvalidParameterValue(BAD_ZIP) from None
        except BaseException:
            remove_tree(tmp)
            raise

    def remove(self, hex_digest: str) -> None:
        """Drop code no function uses any more."""
        remove_tree(self.directory(hex_digest))
        self.zip_path(hex_digest).unlink(missing_ok=True)


def _too_big() -> AwsError:
    return InvalidParameterValue(f"Unzipped size must be smaller than {UNZIPPED_LIMIT} bytes")


def _checked_entries(data: bytes) -> list[zipfile.ZipInfo]:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            entries = zf.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError):
        raise InvalidParameterValue(BAD_ZIP) from None
    total = 0
    for info in entries:
        name = info.filename
        path = PurePosixPath(name)
        if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
            raise InvalidParameterValue(
                f"Could not unzip uploaded file: the entry '{name}' has an absolute path.")
        if ".." in path.parts or "\\" in name:
            raise InvalidParameterValue(
                f"Could not unzip uploaded file: the entry '{name}' points outside the "
                f"deployment package.")
        if stat.S_ISLNK(info.external_attr >> 16):
            raise InvalidParameterValue(
                f"Could not unzip uploaded file: the entry '{name}' is a symbolic link, "
                f"which is not supported.")
        total += info.file_size
        if total > UNZIPPED_LIMIT:
            raise _too_big()
    return entries


def publish_tree(tmp: Path, target: Path) -> None:
    """Seal the finished tree `tmp` read-only and rename it to `target`; when a concurrent
    writer of the same content got there first, `tmp` is removed and theirs stays."""
    for dirpath, _dirs, _files in os.walk(tmp):
        os.chmod(dirpath, 0o555)
    try:
        os.rename(tmp, target)
    except OSError:
        if not target.is_dir():
            raise
        remove_tree(tmp)


def remove_tree(path: Path) -> None:
    """Remove a tree whose directories may be read-only."""

    if not path.exists():
        return
    for dirpath, _dirs, _files in os.walk(path):
        os.chmod(dirpath, 0o755)  # read-only dirs cannot be emptied otherwise (by non-root)
    shutil.rmtree(path, ignore_errors=True)
