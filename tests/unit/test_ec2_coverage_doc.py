"""docs/ec2-coverage.md says which EC2 operations are implemented: it must agree with the
action table, and every implemented operation must name a test file that calls it."""
from __future__ import annotations

import re
from pathlib import Path

from botocore import xform_name

from lambdaplane.api.ec2_api import ACTIONS

ROOT = Path(__file__).resolve().parents[2]
ROW = re.compile(r"^\| (\w+) \| (yes|no) \| ([^|]*)\|$", re.M)


def test_coverage_table_matches_the_action_table() -> None:
    rows = ROW.findall((ROOT / "docs" / "ec2-coverage.md").read_text())
    done = {op for op, mark, _ in rows if mark == "yes"}
    assert done == set(ACTIONS)
    for op, mark, tests in rows:
        if mark != "yes":
            continue
        names = [t.strip() for t in tests.split(",") if t.strip()]
        assert names, op
        for name in names:
            text = (ROOT / "tests" / "e2e" / name).read_text()
            assert re.search(r"\." + xform_name(op) + r"\b", text), (op, name)
