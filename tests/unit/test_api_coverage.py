"""docs/api-coverage.md is what `python -m lambdaplane.api.coverage` prints from the code's
handler tables: a handler added without regenerating the file fails here."""
from __future__ import annotations

from pathlib import Path

from lambdaplane.api import coverage

DOC = Path(__file__).resolve().parents[2] / "docs" / "api-coverage.md"


def test_committed_coverage_is_current() -> None:
    assert DOC.read_text() == coverage.render(), (
        "docs/api-coverage.md is stale: run `python -m lambdaplane.api.coverage > "
        "docs/api-coverage.md`")


def test_done_comes_from_the_handler_tables() -> None:
    text = coverage.render()
    assert "| CreateFunction | yes |" in text and "| CreateRole | yes |" in text
    assert "| GetCallerIdentity | yes |" in text and "| CreateVpc | yes |" in text
    assert "| RunInstances | — |" in text  # EC2 operations not served are listed too
    for service in ("## lambda", "## ec2", "## iam", "## sts"):
        assert service in text
