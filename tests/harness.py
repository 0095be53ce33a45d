"""A live lambdaplane server for end-to-end tests: a real `lambdaplane serve` subprocess with
its own data dir, port and instance id, uplink off. Stopping it checks that the server removed
everything it made; a backstop `clean_instance` then removes whatever a failure left."""
from __future__ import annotations

import io
import json
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

import boto3
import botocore.config

from lambdaplane.cleanup import fresh_instance, clean_instance, leftovers

REGION = "us-east-1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_zip(files: dict[str, str | bytes], modes: dict[str, int] | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, content in files.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = ((modes or {}).get(name, 0o644) | 0o100000) << 16
            zf.writestr(info, content)
    return buf.getvalue()


class LiveServer:
    def __init__(self, data_dir: Path, *extra_args: str) -> None:
        self.data_dir = data_dir
        self.instance = fresh_instance(secrets.choice("acdefghijklmnopqrsuvwxyz"))
        self.port = free_port()
        self.extra_args = list(extra_args)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir / "server.log"

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 30.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "lambdaplane.cli", "serve", "--port", str(self.port),
               "--data-dir", str(self.data_dir), "--instance", self.instance, "--no-uplink",
               *self.extra_args]
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited {self.proc.returncode}:\n{self.log()}")
            try:
                urllib.request.urlopen(self.endpoint + "/_lambdaplane/health", timeout=1).read()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"server did not come up in {timeout_s}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-20000:] if self.log_path.exists() else ""

    def stop(self, sig: int = signal.SIGINT, timeout_s: float = 30.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        code = self.proc.returncode
        self.proc = None
        return code

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def restart(self) -> None:
        self.stop()
        self.start()

    def leftovers(self) -> list[str]:
        return leftovers(self.instance)

    def backstop_clean(self) -> None:
        clean_instance(self.instance)

    # clients ------------------------------------------------------------------------------
    def client(self, service: str, **config: object):
        cfg = botocore.config.Config(retries={"max_attempts": 1}, read_timeout=120,
                                     connect_timeout=5, **config)
        return boto3.client(service, endpoint_url=self.endpoint, region_name=REGION,
                            aws_access_key_id="test", aws_secret_access_key="test", config=cfg)

    def lambda_(self):
        return self.client("lambda")

    def ec2(self):
        return self.client("ec2")

    def admin(self, path: str) -> object:
        with urllib.request.urlopen(self.endpoint + "/_lambdaplane/" + path, timeout=30) as r:
            return json.loads(r.read())


def create_python_function(lam, name: str, code: str, handler: str = "app.handler",
                           wait: bool = True, **kwargs: object) -> dict:
    resp = lam.create_function(FunctionName=name, Runtime="python3.11", Handler=handler,
                               Role="arn:aws:iam::000000000000:role/lambda",
                               Code={"ZipFile": make_zip({handler.split(".")[0] + ".py": code})},
                               **kwargs)
    if wait:
        lam.get_waiter("function_active_v2").wait(FunctionName=name,
                                                  WaiterConfig={"Delay": 0.2, "MaxAttempts": 100})
    return resp
