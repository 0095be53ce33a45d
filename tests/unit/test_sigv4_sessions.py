"""Temporary keys from sts:AssumeRole sign only until they expire (api/auth.py)."""
from __future__ import annotations

import datetime as dt

from lambdaplane.api.auth import SigV4Verifier

NOW = dt.datetime(2026, 12, 6, 12, 0, tzinfo=dt.timezone.utc)


def test_session_keys_expire_and_file_keys_do_not() -> None:
    clock = [NOW]
    verifier = SigV4Verifier({"AKIDFILE": "file-secret"}, clock=lambda: clock[0])
    verifier.sessions["ASIATEMP"] = ("temp-secret", NOW + dt.timedelta(minutes=15))
    assert verifier.secret_of("AKIDFILE") == "file-secret"
    assert verifier.secret_of("ASIATEMP") == "temp-secret"
    assert verifier.secret_of("ASIANOSUCH") is None
    clock[0] = NOW + dt.timedelta(minutes=15)
    assert verifier.secret_of("ASIATEMP") is None
    assert "ASIATEMP" not in verifier.sessions  # forgotten once expired
    assert verifier.secret_of("AKIDFILE") == "file-secret"
