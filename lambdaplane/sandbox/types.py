"""The contract between the control plane (service/) and execution (sandbox/): what to run,
one invocation, and its result. Plain data, no behaviour."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class VpcAttachment:
    """Where a VPC function's sandboxes are steered (filled in by the Hyperplane work)."""
    vpc_id: str
    subnet_ids: tuple[str, ...]
    security_group_ids: tuple[str, ...]
    ipv6: bool = False  # Ipv6AllowedForDualStack: sandboxes get an IPv6 path too


@dataclass(frozen=True)
class FunctionSpec:
    """Everything an execution environment needs to run one function version."""
    region: str
    name: str
    arn: str
    version: str  # "$LATEST" or a number
    runtime: str  # python3.11 | provided.al2023 | provided.al2 | python3.x
    handler: str
    memory_mb: int
    timeout_s: int
    environment: dict[str, str]
    code_sha256: str
    code_dir: Path  # extracted, read-only; mounted at /var/task
    revision_id: str  # changes with code or configuration; warm environments match it
    reserved_concurrency: int | None = None
    vpc: VpcAttachment | None = None
    opt_dir: Path | None = None  # the function's layers merged, read-only; mounted at /opt
    layer_hexes: tuple[str, ...] = ()  # those layers' code-store digests, in order
    custom_log_group: str | None = None  # LoggingConfig.LogGroup, when the function has one
    logging_config: dict[str, str] = field(default_factory=dict)  # LogFormat, log levels
    # files of the sandbox's /etc of its own, by path under the root ("etc/resolv.conf": a
    # VPC function's resolver, "etc/ssl/lambdaplane-ca.pem": the VPC endpoints' CA)
    etc_files: dict[str, str] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str]:
        """Identifies the function version (not the revision) across regions: $LATEST is
        (region, name), a published version (region, "name:N"); each has its own
        environments."""
        if self.version == "$LATEST":
            return (self.region, self.name)
        return (self.region, f"{self.name}:{self.version}")

    @property
    def log_group(self) -> str:
        return self.custom_log_group or f"/aws/lambda/{self.name}"


@dataclass(frozen=True)
class Invocation:
    request_id: str
    payload: bytes
    client_context: str | None = None  # base64 JSON, as sent in X-Amz-Client-Context
    cognito_identity: str | None = None
    trace_id: str = ""
    function_arn: str = ""  # the ARN it was invoked by (alias/version-qualified); spec.arn if ""


@dataclass
class InvocationResult:
    payload: bytes
    function_error: str | None = None  # "Unhandled" when the function failed
    error_type: str | None = None  # e.g. Runtime.OutOfMemory, Sandbox.Timedout
    log_text: str = ""  # this invocation's log (START … REPORT), for LogType=Tail
    duration_ms: float = 0.0
    init_duration_ms: float | None = None  # set on a cold start
    cold_start: bool = False
    extra: dict[str, float] = field(default_factory=dict)  # phase timings for metrics/bench
