"""ruff (E, F, W, I) over net/ and model/, and mypy --strict over net/, model/ and service/,
clean (configuration in pyproject.toml:
[tool.ruff], [tool.mypy])."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RUFF_CHECKED = ["lambdaplane/net", "lambdaplane/model"]
# sandbox/ modules held to both already (the ExecutionEnvironments split, issue 11)
RUFF_CHECKED += [f"lambdaplane/sandbox/{m}.py" for m in (
    "cold_start", "env_registry", "environment", "environments", "invocation_run", "zygote_set",
    "prestart_sizing", "runtime_frames", "runtime_protocol")]
RUFF_CHECKED += ["lambdaplane/tasks.py"]  # shared by every layer
# the zygote.py split (issue 11)
RUFF_CHECKED += [f"lambdaplane/sandbox/{m}.py"
                 for m in ("zygote", "zygote_handles", "zygote_launch")]
# the isolation.py split (issue 11)
RUFF_CHECKED += [f"lambdaplane/sandbox/{m}.py"
                 for m in ("isolation", "isolation_libc", "isolation_root")]
# the one by-path loader and masking on isolation_libc's binding
RUFF_CHECKED += [f"lambdaplane/sandbox/{m}.py" for m in ("by_path", "masking")]
MYPY_CHECKED = RUFF_CHECKED + ["lambdaplane/service"]


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *argv], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)


def test_ruff_is_clean() -> None:
    result = _run("ruff", "check", "--no-cache", *RUFF_CHECKED)
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict_is_clean() -> None:
    result = _run("mypy", "--strict", "--no-incremental", "--cache-dir", "/dev/null",
                  *MYPY_CHECKED)
    assert result.returncode == 0, result.stdout + result.stderr
