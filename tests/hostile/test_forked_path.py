"""The same seccomp and sandbox-view probes on a server without pre-forked sandboxes
(`--prefork 0`): every environment is forked on demand, through the other branch of the
sandbox build (code mounted at fork time, not assigned later)."""
from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from lambdaplane.sandbox import masking
from tests.conftest import live_server
from tests.harness import LiveServer, create_python_function
from tests.hostile import test_sandbox_view, test_seccomp

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def forked_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    yield from live_server(tmp_path_factory.mktemp("lp"), "--prefork", "0")


def test_forked_sandbox_is_filtered(forked_server: LiveServer) -> None:
    found = test_seccomp.probe(forked_server, "seccomp-forked")
    assert found["Seccomp"] == found["child_sh_status"] == "2"
    assert found["unshare_user"] == found["child_python_unshare_user"] == "EPERM"
    assert found["clone3"] == "ENOSYS"
    assert execution_prewarmed(forked_server) == 0  # really the fork-on-demand path


def test_forked_sandbox_sees_no_host_path(forked_server: LiveServer) -> None:
    lam = forked_server.lambda_()
    create_python_function(lam, "view-forked", test_sandbox_view.VIEW, Timeout=30)
    out = lam.invoke(FunctionName="view-forked", Payload=json.dumps(
        {"files": list(masking.MASKED_FILES), "dirs": list(masking.MASKED_DIRS)}))
    result = json.loads(out["Payload"].read())
    assert "FunctionError" not in out, result
    leaks = {where: marker for where, text in result["seen"].items()
             for marker in test_sandbox_view.host_markers(forked_server) if marker in text}
    assert not leaks, leaks
    assert result["layout"]["task_listed"] and result["masked"]["/proc/kallsyms"] == "empty"


def execution_prewarmed(server: LiveServer) -> int:
    return int(server.admin("status")["execution"]["prewarmed_target"])  # type: ignore[index]
