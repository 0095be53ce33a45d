"""The layer contract (pyproject.toml, [tool.importlinter]): imports only point down —
entry points → api → service → (sandbox, net) → store → model → errors/config — and net/
never imports service/ or store/. The contract's `ignore_imports` are the known exceptions
still to remove (issue 11); anything else that points up fails here."""
from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _lint_imports() -> subprocess.CompletedProcess[str]:
    script = ("import sys; from importlinter.cli import lint_imports; "
              "sys.exit(lint_imports(no_cache=True))")
    return subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)


def test_the_layer_contract_is_kept() -> None:
    result = _lint_imports()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_every_exception_to_the_contract_is_marked_as_a_to_do() -> None:
    lines = (ROOT / "pyproject.toml").read_text().splitlines()
    contracts = tomllib.loads("\n".join(lines))["tool"]["importlinter"]["contracts"]
    assert len(contracts) >= 2
    ignored = [i for c in contracts for i in c.get("ignore_imports", [])]
    for entry in ignored:
        at = next(k for k, line in enumerate(lines) if line.strip() == f'"{entry}",')
        comment = next(line for line in reversed(lines[:at]) if line.strip().startswith("#"))
        assert "to remove: issue" in comment, entry


def test_a_violation_is_caught(tmp_path: Path) -> None:
    """The linter is not vacuous: a store module importing the service layer breaks it."""
    import shutil
    copy = tmp_path / "tree"
    shutil.copytree(ROOT / "lambdaplane", copy / "lambdaplane",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", copy / "pyproject.toml")
    with open(copy / "lambdaplane" / "store" / "db.py", "a") as f:
        f.write("\nfrom ..service import ipam as _violation  # noqa\n")
    script = ("import sys; sys.path.insert(0, '.'); from importlinter.cli import lint_imports; "
              "sys.exit(lint_imports(no_cache=True))")
    result = subprocess.run([sys.executable, "-c", script], cwd=copy, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode != 0
    assert "lambdaplane.store.db -> lambdaplane.service.ipam" in result.stdout
