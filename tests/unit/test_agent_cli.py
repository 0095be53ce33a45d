"""The command line of agents: `serve --no-data-plane` needs the shared database,
`--placement` takes only pin:NAME, `agent` needs --database and refuses a host namespace that
does not exist — each a one-line refusal before anything is made."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


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


@pytest.mark.parametrize("flags, message", [
    (["--underlay-address", "10.252.0.1/24", "--underlay-peer", "10.9.0.2"],
     "--underlay-peer 10.9.0.2 is outside the underlay network 10.252.0.0/24"),
    (["--underlay-address", "not-an-address"], "is not an IPv4 address[/prefix]"),
    (["--underlay-address", "127.0.0.1"], "--underlay-address 127.0.0.1 cannot be a VTEP"),
    (["--underlay-address", "10.252.0.1", "--underlay-peer", "x"],
     "--underlay-peer 'x' is not an IPv4 address"),
    (["--underlay-peer", "10.252.0.2"], "--underlay-peer needs --underlay-address"),
])
def test_bad_underlay_flags_are_refused(tmp_path: Path, flags: list[str], message: str) -> None:
    out = _cli("agent", "--database", "postgresql:///x", "--data-dir", str(tmp_path / "d"),
               *flags)
    assert out.returncode != 0
    assert message in out.stderr
    assert not (tmp_path / "d").exists()


def test_the_underlay_parsed() -> None:
    from lambdaplane.service.host_fabric import parse_underlay

    # every host may be given the same peer list: its own address is dropped
    got = parse_underlay("10.252.0.2/24", ["10.252.0.10", "10.252.0.1", "10.252.0.2"])
    assert (got.address, got.peers, got.network) == ("10.252.0.2", ("10.252.0.1",
                                                                     "10.252.0.10"),
                                                     "10.252.0.0/24")
    bare = parse_underlay("192.0.2.7", ["198.51.100.1"])
    assert (bare.address, bare.peers, bare.network) == ("192.0.2.7", ("198.51.100.1",), "")
