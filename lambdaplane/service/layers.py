"""The layer rules: PublishLayerVersion, Get/List/Delete of layer versions, their resource
policies (layer version permissions), and what a function's `Layers` may be (≤ 5 live
versions, one version per layer, code plus layers ≤ 250 MB unzipped) and where its merged
/opt is. Layer content lives in the code store, extracted once; a deleted version's content
stays there, so the functions that use it keep running, as on AWS. No HTTP, no kernel calls."""
from __future__ import annotations

import asyncio
import base64
import io
import json
import re
import uuid
import zipfile
from pathlib import Path
from typing import Any

from ..config import Settings
from ..errors import AwsError, InvalidParameterValue, ResourceConflict, ResourceNotFound
from ..store.code import UNZIPPED_LIMIT, ZIPPED_LIMIT, CodeStore
from ..store.db import Database
from ..store.functions import aws_timestamp
from ..store.layers import LayerStore, LayerVersionRecord
from ..store.opt_dirs import opt_dir, opt_dir_name, tree_size
from .s3_code import S3CodeSource, code_from_s3

MAX_FUNCTION_LAYERS = 5
DEFAULT_PAGE = 50
MAX_VERSION = 2**63 - 1  # SQLite's integers
LAYER_ARN = re.compile(r"arn:aws[a-zA-Z-]*:lambda:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):"
                       r"layer:(?P<name>[a-zA-Z0-9_-]+)")
NOT_FOUND = "The resource you requested does not exist."


class LayerService:
    def __init__(self, settings: Settings, db: Database, code: CodeStore) -> None:
        self.settings = settings
        self.store = LayerStore(db)
        self.code = code
        self.s3_code: S3CodeSource | None = None  # set by `serve --s3-endpoint`

    # -- names ----------------------------------------------------------------------------------
    def layer_arn(self, region: str, name: str) -> str:
        return f"arn:aws:lambda:{region}:{self.settings.account_id}:layer:{name}"

    def layer_name(self, region: str, ref: str) -> str | None:
        """The name from a LayerName (a name or a layer ARN); None when the ARN is another
        region's or account's (nothing of ours)."""
        m = LAYER_ARN.fullmatch(ref)
        if m is None:
            return ref
        if m.group("region") != region or m.group("account") != self.settings.account_id:
            return None
        return m.group("name")

    def _version_from_arn(self, region: str, arn: str) -> LayerVersionRecord | None:
        ref, _, version = arn.rpartition(":")
        name = self.layer_name(region, ref) if LAYER_ARN.fullmatch(ref) else None
        if name is None or not version.isdigit() or not 0 < int(version) <= MAX_VERSION:
            return None
        return self.store.get(region, name, int(version))

    # -- layer versions -------------------------------------------------------------------------
    async def publish(self, region: str, params: dict[str, Any]) -> LayerVersionRecord:
        name = self.layer_name(region, params["LayerName"])
        if name is None:
            raise AwsError("AccessDeniedException", "User is not authorized to publish a layer "
                           "in another region or account.", 403)
        data = await self._content_zip(region, params.get("Content") or {})
        stored = await asyncio.to_thread(self.code.put, data)
        record = LayerVersionRecord(
            region=region, name=name, version=0, layer_arn=self.layer_arn(region, name),
            version_arn="", created_date=aws_timestamp(), code_hex=stored.hex,
            code_sha256=stored.sha256_b64, code_size=stored.size,
            unzipped_size=_unzipped_size(data), description=params.get("Description", ""),
            compatible_runtimes=list(params.get("CompatibleRuntimes") or []),
            compatible_architectures=list(params.get("CompatibleArchitectures") or []),
            license_info=params.get("LicenseInfo"))
        return self.store.publish(record)

    async def _content_zip(self, region: str, content: dict[str, Any]) -> bytes:
        """The layer archive: Content.ZipFile (≤ 50 MB, a direct upload's limit, as on AWS), or
        the object Content.S3Bucket/S3Key/S3ObjectVersion names (read as function code from S3
        is). Either is then checked by the code store (a zip, ≤ 250 MB unzipped)."""
        if content.get("S3Bucket") or content.get("S3Key") or content.get("S3ObjectVersion"):
            return await code_from_s3(self.s3_code, region, content, what="layer content",
                                      field="Content", shape="LayerVersionContentInput")
        data: bytes | None = content.get("ZipFile")
        if not data:
            raise InvalidParameterValue("Please provide a source for layer content: "
                                        "Content.ZipFile must hold the layer archive.")
        if len(data) > ZIPPED_LIMIT:
            raise InvalidParameterValue(f"Zipped size must be smaller than {ZIPPED_LIMIT} bytes")
        return data

    def get(self, region: str, ref: str, version: int) -> LayerVersionRecord:
        name = self.layer_name(region, ref)
        record = (self.store.get(region, name, version)
                  if name is not None and 0 < version <= MAX_VERSION else None)
        if record is None:
            raise ResourceNotFound(NOT_FOUND)
        return record

    def get_by_arn(self, region: str, arn: str) -> LayerVersionRecord:
        record = self._version_from_arn(region, arn)
        if record is None:
            raise ResourceNotFound(NOT_FOUND)
        return record

    def delete(self, region: str, ref: str, version: int) -> None:
        """Idempotent, as AWS's. The content stays in the code store for the functions that
        were created with it."""
        name = self.layer_name(region, ref)
        if name is not None and 0 < version <= MAX_VERSION:
            self.store.delete(region, name, version)

    def list_versions(self, region: str, ref: str, runtime: str | None, architecture: str | None,
                      marker: str | None, max_items: int | None
                      ) -> tuple[list[LayerVersionRecord], str | None]:
        name = self.layer_name(region, ref)
        versions = [v for v in (self.store.versions(region, name) if name else [])
                    if _matches(v, runtime, architecture)]
        start = _decode_marker(marker)
        if start:
            if not start.isdigit():
                raise InvalidParameterValue(f"Invalid marker: {marker}")
            versions = [v for v in versions if v.version < int(start)]
        limit = max_items or DEFAULT_PAGE
        if len(versions) > limit:
            versions = versions[:limit]
            return versions, _encode_marker(str(versions[-1].version))
        return versions, None

    def list_layers(self, region: str, runtime: str | None, architecture: str | None,
                    marker: str | None, max_items: int | None
                    ) -> tuple[list[LayerVersionRecord], str | None]:
        """The latest matching version of each layer, by layer name."""
        latest: list[LayerVersionRecord] = []
        limit = max_items or DEFAULT_PAGE
        for name in self.store.names(region, _decode_marker(marker)):
            match = next((v for v in self.store.versions(region, name)
                          if _matches(v, runtime, architecture)), None)
            if match is None:
                continue
            if len(latest) == limit:
                return latest, _encode_marker(latest[-1].name)
            latest.append(match)
        return latest, None

    # -- layer version permissions --------------------------------------------------------------
    def add_permission(self, region: str, ref: str, version: int,
                       params: dict[str, Any]) -> tuple[dict[str, object], str]:
        record = self.get(region, ref, version)
        _check_revision(record, params.get("RevisionId"))
        sid = params["StatementId"]
        if any(s.get("Sid") == sid for s in record.policy):
            raise ResourceConflict(f"The statement id ({sid}) provided already exists. Please "
                                   "provide a new statement id, or remove the existing "
                                   "statement.")
        principal, org = params["Principal"], params.get("OrganizationId")
        if org and principal != "*":
            raise InvalidParameterValue("OrganizationId can only be specified with the "
                                        "principal '*'.")
        if principal != "*" and not principal.startswith("arn:"):
            principal = f"arn:aws:iam::{principal}:root"  # an account id, as AWS renders it
        statement: dict[str, object] = {
            "Sid": sid, "Effect": "Allow",
            "Principal": principal if principal == "*" else {"AWS": principal},
            "Action": params["Action"], "Resource": record.version_arn}
        if org:
            statement["Condition"] = {"StringEquals": {"aws:PrincipalOrgID": org}}
        record.policy.append(statement)
        record.policy_revision = str(uuid.uuid4())
        self.store.save(record)
        return statement, record.policy_revision

    def remove_permission(self, region: str, ref: str, version: int, sid: str,
                          revision_id: str | None) -> None:
        record = self.get(region, ref, version)
        _check_revision(record, revision_id)
        kept = [s for s in record.policy if s.get("Sid") != sid]
        if len(kept) == len(record.policy):
            raise ResourceNotFound(f"Statement {sid} is not found in resource policy.")
        record.policy = kept
        record.policy_revision = str(uuid.uuid4())
        self.store.save(record)

    def policy(self, region: str, ref: str, version: int) -> tuple[str, str]:
        record = self.get(region, ref, version)
        if not record.policy:
            raise ResourceNotFound("No policy is associated with the given resource.")
        return json.dumps({"Version": "2012-10-17", "Id": "default",
                           "Statement": record.policy}), record.policy_revision

    # -- a function's layers --------------------------------------------------------------------
    def resolve_for_function(self, region: str, arns: list[str]) -> list[dict[str, Any]]:
        """What a function stores for its `Layers`: Arn, CodeSize, and where the content is."""
        if len(arns) > MAX_FUNCTION_LAYERS:
            raise InvalidParameterValue(
                f"Cannot reference more than {MAX_FUNCTION_LAYERS} layers.")
        entries, seen = [], set()
        for arn in arns:
            record = self._version_from_arn(region, arn)
            if record is None:
                raise InvalidParameterValue(f"Layer version {arn} does not exist.")
            if record.layer_arn in seen:
                raise InvalidParameterValue(
                    "Two different versions of the same layer are not allowed to be "
                    f"referenced in the same function. {record.layer_arn} is referenced more "
                    "than once.")
            seen.add(record.layer_arn)
            entries.append({"Arn": record.version_arn, "CodeSize": record.code_size,
                            "CodeHex": record.code_hex, "UnzippedSize": record.unzipped_size})
        return entries

    async def prepare(self, code_dir: Path, layers: list[dict[str, Any]]) -> None:
        """Check the 250 MB over code and layers, and have the merged /opt ready (so no cold
        start has to make it)."""
        if not layers:
            return
        total = await asyncio.to_thread(tree_size, code_dir)
        total += sum(int(entry["UnzippedSize"]) for entry in layers)
        if total > UNZIPPED_LIMIT:
            raise InvalidParameterValue(
                "Function code combined with layers exceeds the maximum allowed size of "
                f"{UNZIPPED_LIMIT} bytes. The actual size is {total} bytes.")
        await asyncio.to_thread(opt_dir, self.code, [e["CodeHex"] for e in layers])

    def opt_dir(self, layers: list[dict[str, Any]]) -> Path | None:
        """The merged /opt of a function's layers (made if it went missing), or None."""
        if not layers:
            return None
        hexes = [e["CodeHex"] for e in layers]
        path = self.code.root / opt_dir_name(hexes)
        return path if path.is_dir() else opt_dir(self.code, hexes)


def _unzipped_size(data: bytes) -> int:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:  # checked by the code store already
        return sum(info.file_size for info in zf.infolist())


def _matches(record: LayerVersionRecord, runtime: str | None, architecture: str | None) -> bool:
    return ((runtime is None or runtime in record.compatible_runtimes)
            and (architecture is None or architecture in record.compatible_architectures))


def _check_revision(record: LayerVersionRecord, revision_id: str | None) -> None:
    if revision_id and revision_id != record.policy_revision:
        raise AwsError("PreconditionFailedException",
                       "The Revision Id provided does not match the latest Revision Id. "
                       "Call the GetLayerVersionPolicy API to retrieve the latest Revision Id",
                       412)


def _encode_marker(value: str) -> str:
    return base64.urlsafe_b64encode(value.encode()).decode()


def _decode_marker(marker: str | None) -> str:
    if not marker:
        return ""
    try:
        value = base64.urlsafe_b64decode(marker.encode()).decode()
    except (ValueError, UnicodeDecodeError):
        raise InvalidParameterValue(f"Invalid marker: {marker}") from None
    return value
