"""One execution environment: its record (Environment, what the console sees of it), the
variables Lambda sets in it, the size of its /tmp, how its exit is described, and the
VpcAttacher protocol that connects a VPC function's sandbox to its VPC.

Plain data and pure functions: the registry (env_registry.py) keeps the records, the cold start
(cold_start.py) makes them, the invocation run (invocation_run.py) uses them."""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Protocol

from ..net.worker import GATEWAY
from .cgroups import EnvCgroup
from .log_format import LogSettings
from .logs import OutputCapture
from .pool import Sandbox
from .runtime_api import RuntimeChannel
from .types import FunctionSpec
from .zygote import SpawnedEnv

INIT_TIMEOUT_S = 10.0  # AWS gives on-demand init 10 s, outside the function's own timeout
KILL_WAIT_S = 5.0
RUNTIME_DIR = "/var/runtime"
PATH = "/var/lang/bin:/usr/local/bin:/usr/bin/:/bin:/opt/bin"
LD_LIBRARY_PATH = ("/var/lang/lib:/lib64:/usr/lib64:/var/runtime:/var/runtime/lib:/var/task:"
                   "/var/task/lib:/opt/lib")
VPC_CA_FILE = "etc/ssl/lambdaplane-ca.pem"  # a VPC function's: FunctionSpec.etc_files


class VpcAttacher(Protocol):
    """Connects a VPC function's sandbox to its VPC at cold start (Hyperplane: one steering
    element; legacy: a dedicated ENI) and disconnects it when the environment goes. attach may
    raise AwsError (e.g. SubnetIPAddressLimitReachedException in legacy mode)."""

    async def attach(self, spec: FunctionSpec, sandbox: Sandbox) -> object: ...

    def attach_at_once(self, spec: FunctionSpec, sandbox: Sandbox) -> object | None:
        """attach, if it needs no waiting (Hyperplane with an ENI that has room); else None
        and nothing done."""
        ...

    async def detach(self, handle: object) -> None: ...


@dataclass
class Environment:
    env_id: str
    spec: FunctionSpec
    sandbox: Sandbox
    channel: RuntimeChannel
    output: OutputCapture
    cgroup: EnvCgroup | None = None
    process: SpawnedEnv | None = None
    exited: asyncio.Task[int] | None = None
    state: str = "starting"  # starting | busy | idle | dead
    retiring: bool = False  # function updated/deleted: die after the current invocation
    last_used: float = field(default_factory=time.monotonic)
    log_stream: str = ""
    vpc_handle: object | None = None  # what the VpcAttacher returned; detached on teardown


@dataclass(frozen=True)
class EnvironmentInfo:
    """What the console shows of one environment."""
    env_id: str
    region: str
    function: str
    version: str
    state: str
    sandbox_address: str
    log_stream: str
    idle_s: float  # since its last invocation ended (or it was made)


def reserved_environment(spec: FunctionSpec, log_stream: str, port: int) -> dict[str, str]:
    """The variables Lambda sets in every environment (user variables cannot override them)."""
    env = dict(spec.environment)
    env.update({
        "_HANDLER": spec.handler,
        "AWS_REGION": spec.region,
        "AWS_DEFAULT_REGION": spec.region,
        "AWS_LAMBDA_FUNCTION_NAME": spec.name,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_mb),
        "AWS_LAMBDA_FUNCTION_VERSION": spec.version,
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "AWS_LAMBDA_LOG_GROUP_NAME": spec.log_group,
        "AWS_LAMBDA_LOG_STREAM_NAME": log_stream,
        "AWS_LAMBDA_RUNTIME_API": f"{GATEWAY}:{port}",
        "LAMBDA_TASK_ROOT": "/var/task",
        "LAMBDA_RUNTIME_DIR": RUNTIME_DIR,
        "TZ": "UTC",
        "LANG": "en_US.UTF-8",
        "PATH": PATH,
        "LD_LIBRARY_PATH": LD_LIBRARY_PATH,
    })
    env.update(LogSettings.from_config(spec.logging_config).environment())
    if spec.runtime.startswith("nodejs"):
        env["NODE_PATH"] = node_path(spec.runtime)
    if VPC_CA_FILE in spec.etc_files and "AWS_CA_BUNDLE" not in spec.environment:
        # the SDKs trust the CA of the VPC's interface endpoints (service/local_ca.py)
        env["AWS_CA_BUNDLE"] = "/" + VPC_CA_FILE
    if spec.runtime.startswith("provided"):
        env.pop("AWS_EXECUTION_ENV", None)
    else:
        env["AWS_EXECUTION_ENV"] = f"AWS_Lambda_{spec.runtime}"
    return env


def node_path(runtime: str) -> str:
    """AWS's NODE_PATH: layers' node_modules first (per major, then shared), then the
    runtime's, then the function's own directory."""
    major = runtime[len("nodejs"):].split(".")[0]
    return (f"/opt/nodejs/node{major}/node_modules:/opt/nodejs/node_modules:"
            f"/var/runtime/node_modules:/var/runtime:/var/task")


def tmp_size_mb(memory_mb: int) -> int:
    """/tmp is a tmpfs, so its pages count against the environment's memory cgroup: at AWS's
    fixed 512 MB a 128 MB function filling /tmp would be OOM-killed instead of seeing ENOSPC.
    Cap it at half the memory (AWS's 512 MB from 1,024 MB up) so the clear error comes first."""
    return max(16, min(512, memory_mb // 2))


def exit_description(code: int) -> str:
    """As the Lambda runtime reports it: `exit status 1` or `signal: killed`."""
    if code >= 0:
        return f"exit status {code}"
    signals = {9: "killed", 15: "terminated", 11: "segmentation fault", 6: "aborted"}
    return f"signal: {signals.get(-code, str(-code))}"
