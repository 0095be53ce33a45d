"""What a function's configuration may be, as AWS checks it (runtime, memory, timeout,
ephemeral storage, environment variables), and how CreateFunction / UpdateFunctionCode /
UpdateFunctionConfiguration parameters land on a `FunctionRecord` (code, options, revision).
Pure: no store, no state."""
from __future__ import annotations

import glob
import json
import os
import re
import uuid
from typing import Any

from ..errors import AwsError, InvalidParameterValue
from ..model.vpc_config import VpcConfig
from ..store.code import StoredCode
from ..store.functions import FunctionRecord, aws_timestamp
from . import runtime_names

MAX_MEMORY_MB, MAX_TIMEOUT_S = 10_240, 900
ENV_LIMIT_BYTES = 4096
RESERVED_ENV = frozenset({
    "_HANDLER", "_X_AMZN_TRACE_ID", "AWS_DEFAULT_REGION", "AWS_REGION", "AWS_EXECUTION_ENV",
    "AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_FUNCTION_VERSION", "AWS_LAMBDA_INITIALIZATION_TYPE",
    "AWS_LAMBDA_LOG_GROUP_NAME", "AWS_LAMBDA_LOG_STREAM_NAME", "AWS_ACCESS_KEY",
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_LAMBDA_RUNTIME_API",
    "LAMBDA_TASK_ROOT", "LAMBDA_RUNTIME_DIR"})


def supported_runtimes() -> set[str]:
    """The execution side decides; until its module exists, what this machine can run."""
    try:
        from ..sandbox.zygote import supported_runtimes as from_sandbox
    except ImportError:
        found = {os.path.basename(p) for p in glob.glob("/usr/bin/python3.*")
                 if re.fullmatch(r"python3\.\d+", os.path.basename(p))}
        return found | {"provided.al2023", "provided.al2"}
    return set(from_sandbox())


def check_config(record: FunctionRecord) -> None:
    """Raise what AWS answers a configuration outside its limits."""
    refused = runtime_names.refusal(record.runtime)
    if refused is not None:
        raise AwsError(refused[0], refused[1], 400)
    if not 128 <= record.memory_size <= MAX_MEMORY_MB:
        raise InvalidParameterValue(
            "'MemorySize' value failed to satisfy constraint: Member must have value "
            + ("greater than or equal to 128" if record.memory_size < 128
               else f"less than or equal to {MAX_MEMORY_MB}"))
    if not 1 <= record.timeout <= MAX_TIMEOUT_S:
        raise InvalidParameterValue(
            "'Timeout' value failed to satisfy constraint: Member must have value "
            + ("greater than or equal to 1" if record.timeout < 1
               else f"less than or equal to {MAX_TIMEOUT_S}"))
    if not 512 <= record.ephemeral_storage_mb <= 10_240:
        raise InvalidParameterValue(
            "'EphemeralStorage.Size' value failed to satisfy constraint: Member must have "
            "value between 512 and 10240")
    reserved = sorted(k for k in record.environment if k in RESERVED_ENV)
    if reserved:
        raise InvalidParameterValue(
            "Lambda was unable to configure your environment variables because the "
            "environment variables you have provided contains reserved keys that are "
            f"currently not supported for modification. Reserved keys used in this "
            f"request: {', '.join(reserved)}")
    measured = json.dumps(record.environment, separators=(",", ":"))
    if len(measured.encode()) > ENV_LIMIT_BYTES:
        raise InvalidParameterValue(
            "Lambda was unable to configure your environment variables because the "
            "environment variables you have provided exceeded the 4KB limit. "
            f"String measured: {measured[:200]}...")


def zip_from(code: dict[str, Any]) -> bytes:
    if code.get("ImageUri"):
        raise InvalidParameterValue(
            "Container images are not supported: lambdaplane runs zip deployment packages.")
    if code.get("S3Bucket") or code.get("S3Key"):
        raise InvalidParameterValue(
            "Code from S3 is not supported: upload the zip with Code.ZipFile.")
    data: bytes | None = code.get("ZipFile")
    if not data:
        raise InvalidParameterValue("Please provide a source for function code: Code.ZipFile "
                                    "must hold the deployment package (a zip file).")
    return data


def apply_options(record: FunctionRecord, params: dict[str, Any]) -> None:
    """The optional settings CreateFunction and UpdateFunctionConfiguration share."""
    if "Architectures" in params:
        record.architectures = list(params["Architectures"])
    if "EphemeralStorage" in params:
        record.ephemeral_storage_mb = params["EphemeralStorage"]["Size"]
    if "TracingConfig" in params:
        record.tracing_mode = params["TracingConfig"].get("Mode", "PassThrough")
    if "LoggingConfig" in params:
        record.logging_config = dict(params["LoggingConfig"])
    if "DeadLetterConfig" in params:
        record.dead_letter_target = params["DeadLetterConfig"].get("TargetArn") or None
    if "KMSKeyArn" in params:
        record.kms_key_arn = params["KMSKeyArn"] or None
    if "VpcConfig" in params:
        record.vpc_config = VpcConfig.from_request(params["VpcConfig"])


def set_code(record: FunctionRecord, stored: StoredCode) -> None:
    record.code_hex, record.code_sha256, record.code_size = (
        stored.hex, stored.sha256_b64, stored.size)


def touch(record: FunctionRecord) -> None:
    record.revision_id = str(uuid.uuid4())
    record.last_modified = aws_timestamp()
