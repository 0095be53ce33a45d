"""The one typed settings object. Built once (by the CLI or a test) and passed explicitly;
nothing here reads the environment at import time."""
from __future__ import annotations

import os
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_ENDPOINT = "http://127.0.0.1:4747"


@dataclass
class Settings:
    host: str = "127.0.0.1"
    port: int = 4747
    data_dir: Path = Path("/var/lib/lambdaplane")
    account_id: str = "000000000000"
    default_region: str = "us-east-1"
    # Short id that prefixes every kernel object of this server (lp<instance>...), so several
    # servers (tests) can run side by side and `clean` removes only its own.
    instance: str = ""
    uplink: bool = True
    vpc_mode: str = "hyperplane"  # or "legacy"
    keep_alive_s: float = 300.0  # idle execution environments are reaped after this
    pool_size: int = 8  # pre-made sandbox network namespaces kept ready
    prefork: int = 4  # sandboxes forked and built ahead of demand (sandbox/prewarm.py)
    account_concurrency: int = 1000
    # sandbox/capacity.py: "adaptive" (pool and prefork follow demand, the two above as floors)
    # or "fixed" (exactly the two above); at most capacity_max of each; demand is forgotten
    # over capacity_window_s
    capacity: str = "adaptive"
    capacity_max: int = 256
    capacity_window_s: float = 600.0
    inactive_after_s: float = 14 * 24 * 3600.0  # idle VPC functions become Inactive
    eni_flow_limit: int = 65000  # tracked flows on a Hyperplane ENI before a further one is used
    flow_idle_timeout_s: int = 350  # established TCP flows through an ENI expire after this idle
    # Testing knob: SNAT source ports "LO-HI" of Hyperplane ENIs made from now on ("" = AWS's
    # 1024-65535), to exhaust an ENI's ports with a handful of connections.
    eni_snat_ports: str = ""
    sandbox_uid: int = 993  # unprivileged uid functions run as
    runtime_api_port: int = 9001
    event_retry_delays_s: tuple[float, ...] = (60.0, 120.0)  # AWS retries async twice
    auth: str = "none"  # or "sigv4": verify AWS Signature V4 on the control plane
    credentials_file: Path | None = None  # INI like ~/.aws/credentials, for auth=sigv4
    s3_endpoint: str = ""  # S3-compatible endpoint Code.S3Bucket/S3Key are read from ("" = none)
    runtimes: dict[str, str] = field(default_factory=dict)  # serve --runtime NAME=PATH
    prestart: int = 2  # per Node.js runtime in use: sandboxes with node started, waiting
    # "socket": the built-in Python runtimes speak the Runtime API over a socketpair
    # (sandbox/runtime_frames.py); "http": over HTTP like every other runtime
    runtime_transport: str = "socket"
    reconcile_interval_s: float = 30.0  # kernel state re-checked against the store (drift)
    logs_max_bytes: int = 2 * 1024 ** 3  # the log store's bound; the oldest events go first
    # VPC flow-log records aggregated over this instead of each flow log's own interval (tests)
    flow_log_interval_s: float | None = None
    seccomp: bool = True  # every sandbox process under sandbox/seccomp_profile.py's filter
    log_max_bytes: int = 64 * 1024 * 1024  # a function's log file rotates past this
    log_rotations: int = 2  # rotated log files kept per function (<name>.log.1, .2)
    # The internet side of internet and NAT gateways: a network namespace made by the caller
    # (tests), linked to every VPC with an internet gateway; "" = the server's own namespace out
    # of the host's uplink (service/host_internet.py sets it), or nowhere with uplink off.
    internet_netns: str = ""
    public_cidr: str = "198.51.100.0/24"  # the pool of Elastic IPs and NAT gateway addresses
    # Set by the server when internet_netns is its own namespace out of the host's uplink
    # (uplink on, no --internet-netns: net/host_internet.py)
    internet_via_uplink: bool = False
    # Testing knob: a NAT gateway's simultaneous connections per destination (AWS: 55,000)
    nat_connections_per_destination: int = 55000
    # Upstream resolvers ("ADDR[:PORT]") the VPC resolvers forward other names to, from the
    # internet side (internet_netns), for VPCs with an internet gateway; () = no forwarding.
    dns_upstreams: tuple[str, ...] = ()
    # Testing knob: a NAT gateway's idle timeout of established TCP flows (AWS: 350 s)
    nat_idle_timeout_s: int = 350
    # The store: "" = SQLite in the data dir; a postgresql:// URL = that PostgreSQL database
    # (store/postgres.py, docs/postgresql.md)
    database: str = ""
    # serve --no-data-plane: no sandboxes here; invokes go to agents (lambdaplane/agent.py)
    no_data_plane: bool = False
    placement: str = ""  # "" = warm, else least loaded host; "pin:NAME" (service/placement.py)

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir)
        if self.capacity not in ("adaptive", "fixed"):
            raise ValueError("capacity must be 'adaptive' or 'fixed'")
        if self.auth not in ("none", "sigv4"):
            raise ValueError("auth must be 'none' or 'sigv4'")
        if self.auth == "sigv4" and self.credentials_file is None:
            raise ValueError("--auth sigv4 needs --credentials FILE")
        ports = re.fullmatch(r"(\d+)-(\d+)", self.eni_snat_ports)
        if self.eni_snat_ports and not (ports and 1 <= int(ports[1]) <= int(ports[2]) <= 65535):
            raise ValueError("eni_snat_ports must be LO-HI with 1 <= LO <= HI <= 65535")
        import ipaddress

        try:
            ipaddress.IPv4Network(self.public_cidr)
        except ValueError:
            raise ValueError("public_cidr must be an IPv4 CIDR block") from None
        if self.instance and not re.fullmatch(r"[a-z0-9]{3}", self.instance):
            raise ValueError("instance must be 3 characters of [a-z0-9]")
        if self.database and not re.match(r"postgres(ql)?://", self.database):
            raise ValueError("--database must be a postgresql:// URL (without it the store is "
                             "SQLite in the data dir)")

    def ensure_instance(self) -> str:
        """The instance id lives in the data dir so `clean` finds the same one later."""
        path = self.data_dir / "instance"
        if not self.instance:
            if path.exists():
                self.instance = path.read_text().strip()
            else:
                self.instance = secrets.token_hex(2)[:3]
        self.data_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(self.instance + "\n")
        return self.instance


def endpoint_from(cli_value: str | None) -> str:
    """--endpoint, else AWS_ENDPOINT_URL, else the default local server."""
    return cli_value or os.environ.get("AWS_ENDPOINT_URL") or DEFAULT_ENDPOINT
