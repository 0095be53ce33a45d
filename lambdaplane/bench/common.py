"""What every benchmark shares: a private server to measure (or the one at --endpoint), a raw
keep-alive HTTP client for the Lambda API (boto3's own overhead is ~1 ms a call, more than what
we measure), percentiles, and writing JSON + CDF plots."""
from __future__ import annotations

import http.client
import io
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import zipfile
from contextlib import contextmanager
from collections.abc import Iterable, Iterator
from pathlib import Path
from urllib.parse import urlparse


def percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def summary(samples_ms: list[float]) -> dict[str, float]:
    return {"n": len(samples_ms), "p50_ms": round(percentile(samples_ms, 50), 3),
            "p99_ms": round(percentile(samples_ms, 99), 3),
            "mean_ms": round(statistics.fmean(samples_ms), 3) if samples_ms else float("nan"),
            "min_ms": round(min(samples_ms), 3) if samples_ms else float("nan")}


def zip_bytes(files: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, text in files.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o100755 if name == "bootstrap" else 0o100644) << 16
            zf.writestr(info, text)
    return buf.getvalue()


@contextmanager
def private_server(*extra: str) -> Iterator[str]:
    """A `lambdaplane serve` of our own (uplink off, temp data dir), stopped and cleaned after."""
    from lambdaplane.cleanup import fresh_instance, clean_instance

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    instance = fresh_instance("b")
    with tempfile.TemporaryDirectory(prefix="lp-bench-") as data:
        log = open(Path(data) / "server.log", "wb")
        proc = subprocess.Popen([sys.executable, "-m", "lambdaplane.cli", "serve", "--port",
                                 str(port), "--data-dir", data, "--instance", instance,
                                 "--no-uplink", *extra], stdout=log, stderr=subprocess.STDOUT)
        endpoint = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while True:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("bench server did not start:\n" +
                                       (Path(data) / "server.log").read_text()[-4000:])
                try:
                    urllib.request.urlopen(endpoint + "/_lambdaplane/health", timeout=1)
                    break
                except OSError:
                    time.sleep(0.05)
            yield endpoint
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            clean_instance(instance)


class LambdaHttp:
    """A minimal keep-alive client for the Lambda REST API (unsigned: the server's default)."""

    def __init__(self, endpoint: str) -> None:
        url = urlparse(endpoint)
        self.conn = http.client.HTTPConnection(url.hostname, url.port, timeout=300)

    def call(self, method: str, path: str, body: bytes | dict | None = None,
             headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        data = json.dumps(body).encode() if isinstance(body, dict) else body
        self.conn.request(method, path, body=data, headers=headers or {})
        resp = self.conn.getresponse()
        payload = resp.read()
        return resp.status, dict(resp.getheaders()), payload

    def json(self, method: str, path: str, body: dict | None = None) -> dict:
        status, _h, payload = self.call(method, path, body)
        if status >= 300:
            raise RuntimeError(f"{method} {path} → {status}: {payload[:500]!r}")
        return json.loads(payload) if payload else {}

    def invoke(self, name: str, payload: bytes = b"{}") -> tuple[int, float, bytes]:
        started = time.perf_counter()
        status, _h, body = self.call("POST", f"/2015-03-31/functions/{name}/invocations", payload)
        return status, (time.perf_counter() - started) * 1000, body

    def create_function(self, name: str, zip_data: bytes, runtime: str = "python3.11",
                        handler: str = "app.handler", **extra: object) -> dict:
        import base64
        body = {"FunctionName": name, "Runtime": runtime, "Handler": handler,
                "Role": "arn:aws:iam::000000000000:role/lambda",
                "Code": {"ZipFile": base64.b64encode(zip_data).decode()}, **extra}
        created = self.json("POST", "/2015-03-31/functions", body)
        self.wait_for(name, lambda c: c.get("State") == "Active")
        return created

    def wait_for(self, name: str, ready, timeout_s: float = 120) -> dict:
        deadline = time.monotonic() + timeout_s
        while True:
            conf = self.json("GET", f"/2015-03-31/functions/{name}/configuration")
            if ready(conf):
                return conf
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name} not ready: {conf}")
            time.sleep(0.02)

    def close(self) -> None:
        self.conn.close()


def _cpu_busy_idle() -> tuple[int, int]:
    with open("/proc/stat") as f:
        ticks = [int(x) for x in f.readline().split()[1:]]
    idle = ticks[3] + ticks[4]  # idle + iowait
    return sum(ticks[:8]) - idle, idle


def wait_for_quiet_cpu(max_busy: float = 0.15, window_s: float = 0.1,
                       timeout_s: float = 5.0) -> float:
    """Until the whole machine's CPU is below `max_busy` over one `window_s` (or `timeout_s`
    has passed); returns the seconds waited. A server at rest can leave the kernel busy: a
    deleted namespace is torn down asynchronously, 10-60 ms of kernel work each, so a burst
    started right after 100 environments were retired competed with their teardown."""
    began = time.monotonic()
    while time.monotonic() - began < timeout_s:
        busy0, idle0 = _cpu_busy_idle()
        time.sleep(window_s)
        busy1, idle1 = _cpu_busy_idle()
        total = (busy1 - busy0) + (idle1 - idle0)
        if total and (busy1 - busy0) / total <= max_busy:
            break
    return time.monotonic() - began


def write_json(out_dir: Path, name: str, data: dict) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.json"
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


def plot_cdfs(out_dir: Path, name: str, title: str, series: dict[str, list[float]]) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, samples in series.items():
        ordered = sorted(samples)
        if ordered:
            ax.plot(ordered, [(i + 1) / len(ordered) for i in range(len(ordered))], label=label)
    ax.set_xlabel("latency (ms)")
    ax.set_ylabel("fraction of requests")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    path = out_dir / f"{name}.png"
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def machine() -> dict[str, object]:
    return {"cores": os.cpu_count(), "kernel": os.uname().release,
            "python": sys.version.split()[0], "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def aws_client(endpoint: str, service: str):
    """A boto3 client for the control-plane calls a benchmark makes (not the measured ones)."""
    import boto3
    import botocore.config

    return boto3.client(service, endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id="bench", aws_secret_access_key="bench",
                        config=botocore.config.Config(retries={"max_attempts": 1},
                                                      read_timeout=300))


def create_network(ec2, vpc_cidr: str, subnet_cidr: str,
                   group_name: str) -> tuple[str, str, str]:
    """A VPC with one subnet and one security group for a benchmark's functions:
    (vpc, subnet, group) ids."""
    vpc = ec2.create_vpc(CidrBlock=vpc_cidr)["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock=subnet_cidr)["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName=group_name, Description=group_name,
                                      VpcId=vpc)["GroupId"]
    return vpc, subnet, group


def remove_bench_objects(http: "LambdaHttp", functions: Iterable[str], ec2, subnet: str,
                         group: str, vpc: str) -> None:
    """A VPC benchmark's teardown: its functions, its client, then its network."""
    for name in functions:
        http.call("DELETE", f"/2015-03-31/functions/{name}")
    http.close()
    delete_network(ec2, subnet, group, vpc)


def delete_network(ec2, subnet: str, group: str, vpc: str) -> None:
    """The functions' ENIs may take a moment to go (Hyperplane releases them after the
    function); the bench server is removed anyway, so give up quietly after a while."""
    deadline = time.monotonic() + 30
    for delete in (lambda: ec2.delete_subnet(SubnetId=subnet),
                   lambda: ec2.delete_security_group(GroupId=group),
                   lambda: ec2.delete_vpc(VpcId=vpc)):
        while True:
            try:
                delete()
                break
            except ec2.exceptions.ClientError:
                if time.monotonic() > deadline:
                    return
                time.sleep(0.2)
