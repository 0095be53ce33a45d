"""Deployment packages from S3 (`Code.S3Bucket/S3Key/S3ObjectVersion` of CreateFunction and
UpdateFunctionCode; `Content.S3Bucket/S3Key/S3ObjectVersion` of PublishLayerVersion), fetched
from the S3-compatible endpoint the operator names with `serve --s3-endpoint URL` (MinIO, moto,
Ceph…). lambdaplane is not an object store: it only reads the object once, at create/update/
publish time, and keeps the zip like an uploaded one.

Credentials for that endpoint come from the server's environment (the usual AWS chain); with
none, requests go unsigned. S3's errors become Lambda's, worded as Lambda words them:
"Error occurred while GetObject. S3 Error Code: NoSuchKey. S3 Error Message: …"."""
from __future__ import annotations

import asyncio
from typing import Any

from ..errors import InvalidParameterValue
from ..store.code import UNZIPPED_LIMIT

S3_MESSAGES = {"NoSuchKey": "The specified key does not exist.",
               "NoSuchBucket": "The specified bucket does not exist",
               "NoSuchVersion": "The specified version does not exist.",
               "AccessDenied": "Access Denied"}


def s3_error(code: str, message: str) -> Exception:
    return InvalidParameterValue(f"Error occurred while GetObject. S3 Error Code: {code}. "
                                 f"S3 Error Message: {message}")


class S3CodeSource:
    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self._clients: dict[str, Any] = {}

    def _client(self, region: str) -> Any:
        client = self._clients.get(region)
        if client is None:
            import boto3
            import botocore.config
            from botocore import UNSIGNED

            session = boto3.session.Session()
            config = botocore.config.Config(
                s3={"addressing_style": "path"}, retries={"max_attempts": 2},
                connect_timeout=5, read_timeout=60,
                signature_version=None if session.get_credentials() else UNSIGNED)
            client = session.client("s3", endpoint_url=self.endpoint, region_name=region,
                                    config=config)
            self._clients[region] = client
        return client

    async def fetch(self, region: str, bucket: str, key: str, version: str | None) -> bytes:
        return await asyncio.to_thread(self._get, region, bucket, key, version)

    def _get(self, region: str, bucket: str, key: str, version: str | None) -> bytes:
        import botocore.exceptions

        args = {"Bucket": bucket, "Key": key}
        if version:
            args["VersionId"] = version
        try:
            got = self._client(region).get_object(**args)
            if got.get("ContentLength", 0) > UNZIPPED_LIMIT:
                raise InvalidParameterValue(
                    f"Unzipped size must be smaller than {UNZIPPED_LIMIT} bytes")
            body: bytes = got["Body"].read()
            return body
        except botocore.exceptions.ClientError as e:
            code = e.response.get("Error", {}).get("Code", "") or "Unknown"
            code = {"404": "NoSuchKey", "403": "AccessDenied"}.get(code, code)  # bodiless
            message = S3_MESSAGES.get(code) or e.response.get("Error", {}).get("Message", code)
            raise s3_error(code, message) from None
        except (botocore.exceptions.BotoCoreError, OSError) as e:
            raise s3_error("ServiceUnavailable",
                           f"the S3 endpoint {self.endpoint} could not be read: {e}") from None


async def code_from_s3(source: S3CodeSource | None, region: str, code: dict[str, Any],
                       what: str = "function code", field: str = "Code",
                       shape: str = "FunctionCode") -> bytes:
    """The zip named by S3Bucket/S3Key/S3ObjectVersion; Lambda's errors when incomplete.
    `what`, `field` and `shape` name the parameter in the errors: a function's Code
    (FunctionCode) or a layer's Content (LayerVersionContentInput)."""
    bucket, key = code.get("S3Bucket"), code.get("S3Key")
    if code.get("ZipFile"):
        raise InvalidParameterValue(f"Please do not provide other {shape} parameters when "
                                    "providing a ZipFile.")
    if not bucket or not key:
        raise InvalidParameterValue(f"Please provide a source for {what}: both "
                                    f"S3Bucket and S3Key are required for {what} from S3.")
    if source is None:
        raise InvalidParameterValue(f"{what.capitalize()} from S3 needs an S3 endpoint: start "
                                    "the server with `lambdaplane serve --s3-endpoint URL`, "
                                    f"or upload the zip with {field}.ZipFile.")
    return await source.fetch(region, bucket, key, code.get("S3ObjectVersion"))
