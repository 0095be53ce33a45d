"""The crash-recovery ledger's rules: an acknowledged change must be seen, an unanswered one
may or may not be, a refused one never is, and nothing may appear that was never asked for."""
from __future__ import annotations

from tests.faults.ledger import ABSENT, Ledger


def test_acknowledged_change_must_be_observed() -> None:
    ledger = Ledger()
    ledger.acked_change("function", "f", ("d1", "sha"))
    assert ledger.verify("function", {"f": ("d1", "sha")}).violations == []
    verdict = ledger.verify("function", {})
    assert verdict.violations == ["function f: server has None, acknowledged ('d1', 'sha')"]


def test_unanswered_change_may_or_may_not_have_happened() -> None:
    for seen in ({}, {"f": "d0"}):
        ledger = Ledger()
        ledger.unanswered_change("function", "f", "d0")
        verdict = ledger.verify("function", seen)
        assert verdict.violations == [] and verdict.resolved_uncertain == 1
        assert ledger.expected("function", "f") == seen.get("f", ABSENT)  # adopted


def test_unanswered_delete_after_acknowledged_create() -> None:
    ledger = Ledger()
    ledger.acked_change("vpc", "t1", "10.1.0.0/16")
    ledger.unanswered_change("vpc", "t1", ABSENT)
    assert ledger.verify("vpc", {"t1": "10.1.0.0/16"}).violations == []
    assert ledger.verify("vpc", {"t1": "10.9.0.0/16"}).violations != []


def test_objects_never_requested_are_violations() -> None:
    ledger = Ledger()
    verdict = ledger.verify("sg", {"t9": "vpc-1"})
    assert verdict.violations == ["sg t9: exists ('vpc-1') but was never requested"]


def test_present_lists_what_was_last_seen() -> None:
    ledger = Ledger()
    ledger.acked_change("subnet", "a", "10.0.1.0/24")
    ledger.acked_change("subnet", "b", "10.0.2.0/24")
    ledger.acked_change("subnet", "b", ABSENT)
    assert ledger.present("subnet") == ["a"]
