"""The client's record of what the server acknowledged, kept by the crash-recovery workload.

Every object the workload touches (a function, a VPC, a subnet, a security group and its
rules, a network interface) has a key and an expected state. A request that got a 2xx moves the
confirmed state; one whose answer was lost in a kill (connection reset, no response) may or may
not have happened, so its state becomes one more acceptable outcome; one the server refused
(4xx, or a connection that never opened) changes nothing. After a restart the observed state
must be one of the acceptable ones, and then becomes the new confirmed state."""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Hashable

ABSENT = None  # the state of an object that does not exist


@dataclass
class Entry:
    confirmed: Hashable = ABSENT
    uncertain: list[Hashable] = field(default_factory=list)

    def acceptable(self) -> list[Hashable]:
        return [self.confirmed, *self.uncertain]


@dataclass
class Verdict:
    checked: int = 0
    resolved_uncertain: int = 0  # an unanswered request whose effect was then observed
    violations: list[str] = field(default_factory=list)


class Ledger:
    """Thread-safe; one writer per key (each workload thread owns its objects)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.entries: dict[tuple[str, str], Entry] = {}
        self.acked = 0
        self.unanswered = 0

    def acked_change(self, kind: str, key: str, state: Hashable) -> None:
        with self._lock:
            entry = self.entries.setdefault((kind, key), Entry())
            entry.confirmed, entry.uncertain = state, []
            self.acked += 1

    def unanswered_change(self, kind: str, key: str, state: Hashable) -> None:
        with self._lock:
            self.entries.setdefault((kind, key), Entry()).uncertain.append(state)
            self.unanswered += 1

    def possible(self, kind: str, key: str, state: Hashable) -> None:
        """A state an unanswered request implies for a second object (a new group's empty
        rule set); not counted as a request of its own."""
        with self._lock:
            self.entries.setdefault((kind, key), Entry()).uncertain.append(state)

    def expected(self, kind: str, key: str) -> Hashable:
        with self._lock:
            entry = self.entries.get((kind, key))
            return entry.confirmed if entry else ABSENT

    def keys(self, kind: str) -> list[str]:
        with self._lock:
            return [k for (t, k) in self.entries if t == kind]

    def present(self, kind: str) -> list[str]:
        """Keys whose confirmed state is 'exists' (after a check, that is what was observed)."""
        with self._lock:
            return [k for (t, k), e in self.entries.items()
                    if t == kind and e.confirmed is not ABSENT]

    def verify(self, kind: str, observed: dict[str, Hashable]) -> Verdict:
        """Compare the server's view of every `kind` object with the ledger, then adopt it.
        `observed` maps key → state for every object of that kind the server has; keys the
        ledger never heard of are violations unless an unanswered create explains them."""
        verdict = Verdict()
        with self._lock:
            for (t, key), entry in list(self.entries.items()):
                if t != kind:
                    continue
                seen = observed.get(key, ABSENT)
                verdict.checked += 1
                if seen not in entry.acceptable():
                    verdict.violations.append(
                        f"{kind} {key}: server has {seen!r}, acknowledged {entry.confirmed!r}"
                        + (f" (or unanswered {entry.uncertain!r})" if entry.uncertain else ""))
                elif entry.uncertain:
                    verdict.resolved_uncertain += 1
                entry.confirmed, entry.uncertain = seen, []
            for key, seen in observed.items():
                if (kind, key) not in self.entries:
                    verdict.violations.append(f"{kind} {key}: exists ({seen!r}) but was never "
                                              "requested")
        return verdict
