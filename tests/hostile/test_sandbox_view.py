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
from tests.harness import LiveServer, create_python_function, make_zip

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


OTHER_PYTHON = r'''
import os, subprocess, sys
def read(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode(errors="replace")
    except OSError as e:
        return "refused:" + type(e).__name__
def handler(event, context):
    seen = {path: read(path) for path in ("/proc/self/cmdline", "/proc/1/cmdline",
                                          "/proc/self/maps", "/proc/self/mountinfo",
                                          "/proc/self/environ")}
    seen["exe"] = os.readlink("/proc/self/exe")
    seen["sys"] = repr([sys.executable, sys.prefix, sys.base_prefix, sys.exec_prefix,
                        getattr(sys, "orig_argv", []), sys.path, os.__file__])
    child = subprocess.run([sys.executable, "-c", "import os, sys; "
                            "print(os.readlink('/proc/self/exe'), sys.prefix)"],
                           capture_output=True, text=True, timeout=20)
    seen["child"] = child.stdout + child.stderr
    return {"seen": seen, "exe": seen["exe"], "child_ok": child.returncode == 0}
'''


def _python_outside_usr() -> tuple[str, str]:
    from lambdaplane.sandbox.runtimes import registry
    for runtime, install in sorted(registry.installed().items()):
        if runtime.startswith("python") and not install.executable.startswith("/usr/"):
            return runtime, install.executable
    pytest.skip("no python3.X outside /usr on this host")


def test_python_outside_usr_shows_no_install_path(server: LiveServer) -> None:
    """A python3.X installed outside /usr (pyenv's /root/.pyenv/versions/..., an /opt prefix)
    runs as AWS's /var/lang/bin/python3.X: its host install path is in no command line,
    executable link, memory map, mount table or environment — nor in a child it execs."""
    runtime, executable = _python_outside_usr()
    prefix = str(Path(executable).parent.parent)
    lam = server.lambda_()
    lam.create_function(FunctionName="other-python", Runtime=runtime, Handler="app.handler",
                        Role="arn:aws:iam::000000000000:role/lambda", Timeout=30,
                        Code={"ZipFile": make_zip({"app.py": OTHER_PYTHON})})
    lam.get_waiter("function_active_v2").wait(FunctionName="other-python",
                                              WaiterConfig={"Delay": 0.2, "MaxAttempts": 100})
    out = lam.invoke(FunctionName="other-python", Payload=b"{}")
    result = json.loads(out["Payload"].read())
    assert "FunctionError" not in out, result
    markers = [prefix, "/.pyenv", *host_markers(server)]
    leaks = {where: marker for where, text in result["seen"].items()
             for marker in markers if marker in text}
    assert not leaks, f"host paths visible in the sandbox: {leaks}"
    assert result["exe"] == f"/var/lang/bin/{Path(executable).name}"
    assert result["child_ok"], result["seen"]["child"]
    assert result["seen"]["child"].startswith(f"/var/lang/bin/{Path(executable).name} /var/lang")
