"""The filter-pattern language of FilterLogEvents: terms, phrases, ?any, -exclusions, regexes
and JSON patterns, and the SQL form of term patterns agreeing with Python matching."""
from __future__ import annotations

import sqlite3

import pytest

from lambdaplane.service.filter_pattern import (
    FilterPatternError,
    JsonPattern,
    TermPattern,
    parse,
)

LINES = [
    "[ERROR] A fatal exception has occurred",
    "[ERROR] Exiting",
    "[WARN] disk almost full",
    "INFO request timed out after 3 s",
    "error in lower case",
    '{"level": "ERROR", "latency": 250, "user": {"id": 7, "tags": ["a", "b"]}, "ok": false}',
    '{"level": "INFO", "latency": 50, "user": {"id": 8}, "ok": true, "gone": null}',
    '{"level": "WARN", "latency": "slow"}',
    "odd [chars]* and a? too",
]


def matching(pattern: str) -> list[int]:
    parsed = parse(pattern)
    return [i for i, line in enumerate(LINES) if parsed.matches(line)]


@pytest.mark.parametrize("pattern, expected", [
    ("", list(range(len(LINES)))),
    ("ERROR", [0, 1, 5]),
    ("ERROR Exiting", [1]),
    ("ERROR -Exiting", [0, 5]),
    ("?WARN ?Exiting", [1, 2, 7]),
    ('"timed out"', [3]),
    ('"fatal exception" ERROR', [0]),
    ("error", [4]),  # case-sensitive, as AWS
    ('-"[ERROR]"', [2, 3, 4, 5, 6, 7, 8]),
    ('"[chars]*" "a?"', [8]),
    ("%\\[[A-Z]+\\] [A-Z]%", [0, 1]),
])
def test_terms_phrases_any_and_exclusions(pattern: str, expected: list[int]) -> None:
    assert matching(pattern) == expected


@pytest.mark.parametrize("pattern, expected", [
    ('{ $.level = "ERROR" }', [5]),
    ("{ $.level = ERROR }", [5]),
    ('{ $.level != "ERROR" }', [6, 7]),
    ('{ $.level = "*R*" }', [5, 7]),
    ("{ $.latency > 100 }", [5]),
    ("{ $.latency <= 50 }", [6]),
    ("{ $.latency = 250 }", [5]),
    ("{ $.user.id = 8 }", [6]),
    ('{ $.user.tags[1] = "b" }', [5]),
    ('{ $.level = "ERROR" && $.latency > 100 }', [5]),
    ('{ $.level = "INFO" || $.latency > 100 }', [5, 6]),
    ('{ ($.level = "INFO" || $.level = "WARN") && $.latency < 100 }', [6]),
    ('{ $.level = "WARN" || $.level = "INFO" && $.latency > 100 }', [7]),  # && binds tighter
    ("{ $.ok IS TRUE }", [6]),
    ("{ $.ok IS FALSE }", [5]),
    ("{ $.gone IS NULL }", [6]),
    ("{ $.user NOT EXISTS }", [7]),
])
def test_json_patterns(pattern: str, expected: list[int]) -> None:
    assert isinstance(parse(pattern), JsonPattern)
    assert matching(pattern) == expected


@pytest.mark.parametrize("pattern", [
    '{ $.level = "ERROR" ', "{ level = 1 }", "{ $.a > }", '{ $.a > "x" }', "{ $.a IS MAYBE }",
    '"unbalanced', "[ip, user]", "%(%", "{ $.a = 1 && }",
])
def test_invalid_patterns_raise(pattern: str) -> None:
    with pytest.raises(FilterPatternError):
        parse(pattern)


@pytest.mark.parametrize("pattern", ["ERROR", "ERROR -Exiting", "?WARN ?Exiting", '"timed out"',
                                     "-ERROR ?disk ?request", "", '"[chars]*"', '"a?"',
                                     '"s]"', "*", "-?"])
def test_sql_form_agrees_with_python(pattern: str) -> None:
    parsed = parse(pattern)
    assert isinstance(parsed, TermPattern)
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (i INTEGER, message TEXT)")
    conn.executemany("INSERT INTO t VALUES (?, ?)", list(enumerate(LINES)))
    clause, params = parsed.sql("message")
    rows = [r[0] for r in conn.execute(f"SELECT i FROM t WHERE {clause} ORDER BY i", params)]
    assert rows == matching(pattern)
