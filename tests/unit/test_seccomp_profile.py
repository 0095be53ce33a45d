"""The seccomp profile compiles with libseccomp, names only calls libseccomp knows, is
documented call by call in docs/security.md, and the loader's exec-wrapper mode filters the
command it runs (no server: the wrapper is what a non-Python runtime would use)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lambdaplane.sandbox import seccomp_profile
from lambdaplane.sandbox.seccomp_load import SeccompProgram

REPO = Path(__file__).resolve().parents[2]
LOADER = REPO / "lambdaplane" / "sandbox" / "seccomp_load.py"


@pytest.fixture(scope="module")
def program(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return seccomp_profile.compile_to(tmp_path_factory.mktemp("bpf") / "profile.bpf")


def test_compiles_to_a_loadable_bpf_program(program: Path) -> None:
    data = program.read_bytes()
    assert data and len(data) % 8 == 0
    SeccompProgram(data)  # the loader accepts it
    with pytest.raises(ValueError):
        SeccompProgram(data[:-3])


def test_every_denied_name_is_a_known_x86_64_call_and_documented() -> None:
    sc = seccomp_profile.load_libseccomp()
    docs = (REPO / "docs" / "security.md").read_text()
    for name in sorted(seccomp_profile.denied_names()):
        assert sc.resolve_syscall(sc.Arch.X86_64, name) >= 0, name
        assert f"`{name}`" in docs, f"{name} is denied but not in docs/security.md"


def test_pseudo_code_shows_the_default_and_the_clone_rule() -> None:
    text = seccomp_profile.pseudo_code()
    assert "action ERRNO(1)" in text  # the EPERM default
    assert '"clone"' in text and '"clone3"' in text


def test_exec_wrapper_filters_what_it_runs(program: Path) -> None:
    code = ("import ctypes, errno; libc = ctypes.CDLL(None, use_errno=True)\n"
            "r = libc.unshare(0x10000000)\n"
            "print(errno.errorcode.get(ctypes.get_errno()) if r else 'ok')\n"
            "print([l.split()[1] for l in open('/proc/self/status') "
            "if l.startswith('Seccomp:')][0])\n")
    out = subprocess.run([sys.executable, "-I", "-S", str(LOADER), str(program),
                          sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=30, check=True)
    assert out.stdout.split() == ["EPERM", "2"]
