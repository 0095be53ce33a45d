"""What a function sees of its host, end to end: the /proc files container runtimes mask are
empty (files) or empty directories, /sys is absent, and no host path (data dir, the project's
source tree, the zygote's script) appears in the command lines, environment, mount table or
memory map of any sandbox process — for the Python runtime and for a process it execs. The
layout is AWS's: /var/task, /var/runtime, /opt, /tmp."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import lambdaplane
from lambdaplane.sandbox import masking
from tests.harness import LiveServer, create_python_function

pytestmark = pytest.mark.root

VIEW = r'''
import os, subprocess, sys
FILES = ["/proc/1/cmdline", "/proc/self/cmdline", "/proc/1/environ", "/proc/self/environ",
         "/proc/self/mountinfo", "/proc/self/mounts", "/proc/self/maps", "/proc/self/cgroup",
         "/proc/1/mountinfo"]
def read(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode(errors="replace")
    except OSError as e:
        return "refused:" + type(e).__name__
def handler(event, context):
    seen = {path: read(path) for path in FILES}
    seen["environment"] = repr(sorted(os.environ.items()))
    seen["argv"] = repr(sys.argv) + repr(getattr(sys, "orig_argv", []))
    child = subprocess.run(["/bin/sh", "-c", "cat /proc/1/cmdline /proc/self/cmdline; "
                            "cat /proc/self/mountinfo; env"], capture_output=True, timeout=10)
    seen["child"] = child.stdout.decode(errors="replace")
    masked = {}
    for name in event["files"]:
        path = "/proc/" + name
        masked[path] = ("absent" if not os.path.exists(path) else
                        "empty" if read(path) in ("", "refused:PermissionError") else
                        "READABLE")
    for name in event["dirs"] + ["/sys", "/sys/firmware"]:
        path = name if name.startswith("/") else "/proc/" + name
        masked[path] = ("absent" if not os.path.exists(path) else
                        "empty" if not os.listdir(path) else "LISTED")
    layout = {d: os.path.isdir(d) for d in ("/var/task", "/var/runtime", "/opt", "/tmp")}
    layout["task_listed"] = "app.py" in os.listdir("/var/task")
    return {"seen": seen, "masked": masked, "layout": layout}
'''


def host_markers(server: LiveServer) -> list[str]:
    package = Path(lambdaplane.__file__).resolve().parent
    return [str(server.data_dir), str(server.data_dir.resolve()), str(package),
            str(package.parent), "zygote_main", "sandbox-root", f"lp{server.instance}"]


def test_no_host_path_and_masked_proc(server: LiveServer) -> None:
    lam = server.lambda_()
    create_python_function(lam, "view", VIEW, Timeout=30)
    out = lam.invoke(FunctionName="view", Payload=json.dumps(
        {"files": list(masking.MASKED_FILES), "dirs": list(masking.MASKED_DIRS)}))
    result = json.loads(out["Payload"].read())
    assert "FunctionError" not in out, result
    leaks = {where: marker for where, text in result["seen"].items()
             for marker in host_markers(server) if marker in text}
    assert not leaks, f"host paths visible in the sandbox: {leaks}"
    assert "/var/runtime/bootstrap" in result["seen"]["/proc/1/cmdline"]
    assert "/var/task" in result["seen"]["/proc/self/mountinfo"]
    exposed = {path: state for path, state in result["masked"].items()
               if state not in ("absent", "empty")}
    assert not exposed, f"not masked: {exposed}"
    assert result["masked"]["/proc/kallsyms"] == "empty"  # present on every kernel
    assert result["masked"]["/sys"] == "absent"
    assert result["layout"] == dict.fromkeys(result["layout"], True)
