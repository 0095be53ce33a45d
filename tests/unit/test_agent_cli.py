"""The command line of agents: `serve --no-data-plane` needs the shared database,
`--placement` takes only pin:NAME, `agent` needs --database and refuses a host namespace that
does not exist — each a one-line refusal before anything is made."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def _cli(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lambdaplane.cli", *argv],
                          capture_output=True, text=True, timeout=60)


def test_serve_without_data_plane_needs_the_database(tmp_path: Path) -> None:
    out = _cli("serve", "--no-data-plane", "--data-dir", str(tmp_path / "d"))
    assert out.returncode != 0
    assert "--no-data-plane needs --database postgresql://" in out.stderr
    assert not (tmp_path / "d").exists()


def test_placement_takes_only_a_pin(tmp_path: Path) -> None:
    out = _cli("serve", "--no-data-plane", "--database", "postgresql:///x", "--placement",
               "least-loaded", "--data-dir", str(tmp_path / "d"))
    assert out.returncode != 0
    assert "--placement must be pin:HOSTNAME" in out.stderr
    assert not (tmp_path / "d").exists()


def test_agent_needs_a_database_and_an_existing_host_namespace(tmp_path: Path) -> None:
    out = _cli("agent", "--data-dir", str(tmp_path / "d"))
    assert out.returncode != 0 and "--database" in out.stderr
    out = _cli("agent", "--database", "postgresql:///x", "--data-dir", str(tmp_path / "d"),
               "--host-netns", "lpzzz-no-such-namespace")
    assert out.returncode != 0
    assert "no network namespace lpzzz-no-such-namespace" in out.stderr
    assert not (tmp_path / "d").exists()
