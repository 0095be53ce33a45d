"""CloudWatch Logs filter patterns: parse AWS's syntax once, then match messages.

Owns the pattern language of FilterLogEvents (and, later, metric/subscription filters):
- terms, case-sensitive, matched anywhere in the message: `ERROR Exception` (all of them),
  quoted phrases `"timed out"`, `?ERROR ?WARN` (any of them), `-Exiting` (none of them);
- regular expressions between percent signs: `%ERROR [0-9]+%`;
- JSON patterns over the message parsed as JSON: `{ $.level = "ERROR" }`,
  `{ $.latency > 100 }`, `!=` `<` `<=` `>` `>=`, `*` wildcards in strings, `IS TRUE`,
  `IS FALSE`, `IS NULL`, `NOT EXISTS`, selectors `$.a.b[0]`, `&&` (binds tighter) and `||`,
  parentheses.
A term-only pattern also renders as an SQL condition (`sql()`), so the log store filters in
SQLite without handing every row to Python. Space-delimited patterns (`[ip, user, ...]`) are
refused with InvalidParameterException rather than guessed at."""
from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any


class FilterPatternError(ValueError):
    """The pattern does not parse; the API answers InvalidParameterException."""


# -- term patterns -----------------------------------------------------------------------------

@dataclass(frozen=True)
class TermPattern:
    required: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()  # `?term`: at least one of these
    excluded: tuple[str, ...] = ()

    def matches(self, message: str) -> bool:
        return (all(t in message for t in self.required)
                and not any(t in message for t in self.excluded)
                and (not self.optional or any(t in message for t in self.optional)))

    def sql(self, column: str) -> tuple[str, list[str]]:
        """An equivalent SQL condition on `column`. GLOB is case-sensitive, like AWS, and
        reads a million messages about twice as fast as instr()."""
        parts = [f"{column} GLOB ?" for _ in self.required]
        parts += [f"{column} NOT GLOB ?" for _ in self.excluded]
        params = [_contains(t) for t in (*self.required, *self.excluded)]
        if self.optional:
            parts.append("(" + " OR ".join(f"{column} GLOB ?" for _ in self.optional) + ")")
            params += [_contains(t) for t in self.optional]
        return (" AND ".join(parts) or "1"), params


def _contains(term: str) -> str:
    """A GLOB matching text that contains `term` literally (*, ? and [ bracketed)."""
    return "*" + "".join(f"[{c}]" if c in "*?[" else c for c in term) + "*"


_TERM = re.compile(r'\s*([?-]?)(?:"((?:[^"\\]|\\.)*)"|([^\s"]+))')


def _parse_terms(text: str) -> TermPattern:
    required: list[str] = []
    optional: list[str] = []
    excluded: list[str] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TERM.match(text, pos)
        if m is None:
            raise FilterPatternError(f"unbalanced quote at position {pos}")
        prefix, quoted, bare = m.group(1), m.group(2), m.group(3)
        term = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else bare
        if term:
            {"?": optional, "-": excluded}.get(prefix, required).append(term)
        pos = m.end()
    return TermPattern(tuple(required), tuple(optional), tuple(excluded))


# -- regular expressions -----------------------------------------------------------------------

@dataclass(frozen=True)
class RegexPattern:
    regex: re.Pattern[str]

    def matches(self, message: str) -> bool:
        return self.regex.search(message) is not None


# -- JSON patterns -----------------------------------------------------------------------------

_MISSING = object()
Selector = tuple[str | int, ...]


@dataclass(frozen=True)
class Comparison:
    selector: Selector
    operator: str  # = != < <= > >= | IS_TRUE IS_FALSE IS_NULL NOT_EXISTS EXISTS
    value: Any = None  # str | float | None
    wildcard: re.Pattern[str] | None = None

    def evaluate(self, document: Any) -> bool:
        found = _select(document, self.selector)
        op = self.operator
        if op == "NOT_EXISTS":
            return found is _MISSING
        if op == "EXISTS":
            return found is not _MISSING
        if found is _MISSING:
            return False
        if op == "IS_NULL":
            return found is None
        if op == "IS_TRUE":
            return found is True
        if op == "IS_FALSE":
            return found is False
        if isinstance(self.value, float):
            if isinstance(found, bool) or not isinstance(found, (int, float)):
                return False
            return _NUMERIC[op](float(found), self.value)
        if not isinstance(found, str):
            return False
        assert self.wildcard is not None
        hit = self.wildcard.fullmatch(found) is not None
        return hit if op == "=" else not hit


_NUMERIC: dict[str, Callable[[float, float], bool]] = {
    "=": lambda a, b: a == b, "!=": lambda a, b: a != b, "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b}


@dataclass(frozen=True)
class Logical:
    operator: str  # && or ||
    operands: tuple[JsonExpr, ...] = field(default_factory=tuple)

    def evaluate(self, document: Any) -> bool:
        if self.operator == "&&":
            return all(o.evaluate(document) for o in self.operands)
        return any(o.evaluate(document) for o in self.operands)


JsonExpr = Comparison | Logical


@dataclass(frozen=True)
class JsonPattern:
    expression: JsonExpr

    def matches(self, message: str) -> bool:
        text = message.strip()
        if not text.startswith("{"):
            return False
        try:
            document = json.loads(text)
        except ValueError:
            return False
        return self.expression.evaluate(document)


def _select(document: Any, selector: Selector) -> Any:
    current = document
    for step in selector:
        if isinstance(step, int):
            if not isinstance(current, list) or not -len(current) <= step < len(current):
                return _MISSING
            current = current[step]
        else:
            if not isinstance(current, dict) or step not in current:
                return _MISSING
            current = current[step]
    return current


_JSON_TOKEN = re.compile(r"""\s*(?:
    (?P<and>&&) | (?P<or>\|\|) | (?P<open>\() | (?P<close>\)) |
    (?P<op>!=|<=|>=|=|<|>) |
    (?P<selector>\$(?:\.[A-Za-z0-9_@\-]+|\[\d+\]|\.\*)*) |
    (?P<string>"(?:[^"\\]|\\.)*") |
    (?P<word>[^\s()=!<>&|"]+)
)""", re.VERBOSE)


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens, pos = [], 0
    while pos < len(text):
        if not text[pos:].strip():
            break
        m = _JSON_TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise FilterPatternError(f"unexpected character at position {pos}: "
                                     f"{text[pos:pos + 10]!r}")
        kind = m.lastgroup
        assert kind is not None
        tokens.append((kind, m.group(kind)))
        pos = m.end()
    return tokens


def _parse_selector(text: str) -> Selector:
    steps: list[str | int] = []
    for m in re.finditer(r"\.([A-Za-z0-9_@\-]+|\*)|\[(\d+)\]", text[1:]):
        if m.group(2) is not None:
            steps.append(int(m.group(2)))
        elif m.group(1) == "*":
            raise FilterPatternError("wildcard selectors ($.*) are not supported")
        else:
            steps.append(m.group(1))
    if not steps:
        raise FilterPatternError("a selector must name a field, e.g. $.level")
    return tuple(steps)


def _wildcard(value: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(part) for part in value.split("*")), re.DOTALL)


class _JsonParser:
    def __init__(self, tokens: list[tuple[str, str]]) -> None:
        self.tokens = tokens
        self.pos = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self, kind: str | None = None) -> tuple[str, str]:
        token = self.peek()
        if token is None or (kind is not None and token[0] != kind):
            wanted = kind or "more"
            raise FilterPatternError(f"expected {wanted} at token {self.pos + 1}")
        self.pos += 1
        return token

    def parse(self) -> JsonExpr:
        expression = self.or_expr()
        if self.peek() is not None:
            raise FilterPatternError(f"unexpected {self.peek()[1]!r}")  # type: ignore[index]
        return expression

    def or_expr(self) -> JsonExpr:
        operands = [self.and_expr()]
        while self.peek() is not None and self.peek()[0] == "or":  # type: ignore[index]
            self.take()
            operands.append(self.and_expr())
        return operands[0] if len(operands) == 1 else Logical("||", tuple(operands))

    def and_expr(self) -> JsonExpr:
        operands = [self.primary()]
        while self.peek() is not None and self.peek()[0] == "and":  # type: ignore[index]
            self.take()
            operands.append(self.primary())
        return operands[0] if len(operands) == 1 else Logical("&&", tuple(operands))

    def primary(self) -> JsonExpr:
        token = self.peek()
        if token is not None and token[0] == "open":
            self.take()
            inner = self.or_expr()
            self.take("close")
            return inner
        selector = _parse_selector(self.take("selector")[1])
        kind, text = self.take()
        if kind == "word" and text.upper() in ("IS", "NOT"):
            return self.keyword(selector, text.upper())
        if kind != "op":
            raise FilterPatternError(f"expected a comparison after the selector, got {text!r}")
        value_kind, value_text = self.take()
        if value_kind == "string":
            value = json.loads(value_text)
        elif value_kind == "word":
            value = value_text
        else:
            raise FilterPatternError(f"expected a value after {text}")
        if isinstance(value, str):
            try:
                number = float(value) if value_kind == "word" else None
            except ValueError:
                number = None
            if number is not None:
                return Comparison(selector, text, number)
            if text not in ("=", "!="):
                raise FilterPatternError(f"{text} compares numbers, not {value_text}")
            return Comparison(selector, text, value, _wildcard(value))
        raise FilterPatternError(f"unsupported value {value_text}")

    def keyword(self, selector: Selector, first: str) -> Comparison:
        second = self.take("word")[1].upper()
        if first == "IS" and second in ("TRUE", "FALSE", "NULL"):
            return Comparison(selector, f"IS_{second}")
        if first == "NOT" and second == "EXISTS":
            return Comparison(selector, "NOT_EXISTS")
        raise FilterPatternError(f"unknown keyword {first} {second}")


# -- entry point -------------------------------------------------------------------------------

FilterPattern = TermPattern | RegexPattern | JsonPattern


@lru_cache(maxsize=256)
def parse(text: str | None) -> FilterPattern:
    """The pattern as an object with `matches(message)`. Raises FilterPatternError."""
    stripped = (text or "").strip()
    if stripped.startswith("{"):
        if not stripped.endswith("}"):
            raise FilterPatternError("a JSON pattern must end with }")
        return JsonPattern(_JsonParser(_tokenize(stripped[1:-1])).parse())
    if stripped.startswith("["):
        raise FilterPatternError("space-delimited filter patterns ([w1, w2, ...]) are not "
                                 "supported by lambdaplane")
    if len(stripped) >= 2 and stripped.startswith("%") and stripped.endswith("%"):
        try:
            return RegexPattern(re.compile(stripped[1:-1]))
        except re.error as e:
            raise FilterPatternError(f"invalid regular expression: {e}") from None
    return _parse_terms(stripped)


def matches(text: str, message: str) -> bool:
    """For SQLite's create_function: does `message` match pattern `text`?"""
    return parse(text).matches(message)
