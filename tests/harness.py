"""A live lambdaplane server for end-to-end tests: a real `lambdaplane serve` subprocess with
its own data dir, port and instance id, uplink off. Stopping it checks that the server removed
everything it made; a backstop `clean_instance` then removes whatever a failure left.

With LP_LOOP_DEBUG=1 (`make test-loop`) the server runs its event loop in asyncio debug mode
with a 20 ms slow-callback threshold, and every place where code of ours held the loop longer
while it served (the server's watchdog logs it, lambdaplane/loop_debug.py) is collected at stop
into `loop_blocks`; the fixture fails the test on any."""
from __future__ import annotations

import io
import json
import os
import re
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
LOOP_DEBUG = os.environ.get("LP_LOOP_DEBUG") == "1"
SLOW_CALLBACK_MS = 20
# The full runtime matrix (every Node major × pre-started and exec'd node): `make test-runtimes`;
# `make test` runs Node.js 22 pre-started, plus one check per major.
FULL_MATRIX = os.environ.get("LP_FULL_MATRIX") == "1"
NODE_MODES = ["prestarted", "exec"] if FULL_MATRIX else ["prestarted"]
# what the server's loop watchdog logs for code of ours that held the loop (loop_debug.py)
_LOOP_BLOCKED = re.compile(r" lambdaplane\.loop_debug: loop blocked (\d+) ms at (\S+?), stack")


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
        self._log_offset = 0  # where this start's lines begin (a restart appends)
        self.loop_blocks: list[str] = []  # LP_LOOP_DEBUG: callbacks that held the loop too long

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 30.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "lambdaplane.cli", "serve", "--port", str(self.port),
               "--data-dir", str(self.data_dir), "--instance", self.instance, "--no-uplink",
               *self.extra_args]
        if LOOP_DEBUG:
            cmd += ["--loop-slow-callback-ms", str(SLOW_CALLBACK_MS)]
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
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
        serving_until = self.log_path.stat().st_size  # what the server logged before the stop
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        code = self.proc.returncode
        self.proc = None
        if LOOP_DEBUG:
            self.loop_blocks += self._loop_blocked(serving_until)
        return code

    def _loop_blocked(self, until: int) -> list[str]:
        """Where code of ours held this run's loop over the threshold while it served (from
        'listening on' to the stop signal: start-up and shutdown serve no one), longest first."""
        with open(self.log_path, "rb") as f:
            f.seek(self._log_offset)
            text = f.read(max(0, until - self._log_offset)).decode(errors="replace")
        _starting, listening, text = text.partition(" lambdaplane listening on ")
        if not listening:
            return []
        found = [(int(m.group(1)), m.group(2)) for m in map(_LOOP_BLOCKED.search,
                                                             text.splitlines()) if m]
        return [f"{ms} ms at {where}" for ms, where in sorted(found, reverse=True)]

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
