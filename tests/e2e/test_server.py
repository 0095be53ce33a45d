"""The server process itself: refuses to run without root, stops cleanly on Ctrl-C, and
`lambdaplane clean` removes what a killed server left — and only that."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lambdaplane.sandbox.cgroups import _cgroup2_mount
from tests.harness import LiveServer, create_python_function

pytestmark = pytest.mark.root

HELLO = "def handler(event, context):\n    return {'ok': True}\n"


def test_serve_refuses_without_root(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "lambdaplane.cli", "serve", "--data-dir", str(tmp_path / "d"),
         "--port", "0"],
        preexec_fn=lambda: (os.setgid(65534), os.setuid(65534)),
        capture_output=True, text=True, timeout=60, cwd="/")
    assert proc.returncode != 0
    assert "must run as root" in proc.stderr


def test_sigkilled_server_is_cleaned_by_clean_command(tmp_path: Path) -> None:
    server = LiveServer(tmp_path / "data")
    mount_before = _cgroup2_mount()
    try:
        server.start()
        lam = server.lambda_()
        create_python_function(lam, "left-behind", HELLO)
        assert lam.invoke(FunctionName="left-behind")["StatusCode"] == 200
        server.kill()  # SIGKILL: no chance to clean up
        assert server.leftovers(), "a killed server should have left kernel objects"
        out = subprocess.run([sys.executable, "-m", "lambdaplane.cli", "clean", "--data-dir",
                              str(server.data_dir)], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        assert "removed" in out.stdout
        assert server.leftovers() == []
        assert _cgroup2_mount() == mount_before, "clean must put back the cgroup2 options"
        # and the store survived: a restart serves the same function again
        server.start()
        assert server.lambda_().invoke(FunctionName="left-behind")["StatusCode"] == 200
    finally:
        server.stop()
        left = server.leftovers()
        server.backstop_clean()
        assert left == [], left
