"""What the diagnosis yields: plain statements, the evidence behind each, and
what it could not look at."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, Union

from analysis.model.vocab import RowKind, Severity

EvidenceKey = Union[int, str]


@dataclass(frozen=True)
class Evidence:
    """One fact behind a finding, and the rows that show it: row says what
    kind of row (a thread, a large block...), keys which ones (OS thread
    ids, addresses, type names): a link selects every one of them. key is
    the first; keys defaults to (key,)."""

    row: RowKind
    key: EvidenceKey
    text: str
    keys: tuple[EvidenceKey, ...] = ()

    def __post_init__(self) -> None:
        if not self.keys:
            object.__setattr__(self, "keys", (self.key,))

    @classmethod
    def of(cls, row: RowKind, keys: Sequence[EvidenceKey], text: str) -> Evidence:
        """Evidence naming several rows (all 40 blocks of a pile)."""
        return cls(row, keys[0], text, tuple(keys))


@dataclass(frozen=True)
class Finding:
    """statement: the cause; remedy: what usually fixes it (as DebugDiag's
    reports end with a recommendation)."""

    rule: str
    severity: Severity
    title: str
    statement: str
    evidence: tuple[Evidence, ...]
    remedy: str = ""


@dataclass(frozen=True)
class NotExamined:
    """An analysis the rules needed that did not run: what, and why."""

    what: str
    reason: str


@dataclass(frozen=True)
class Diagnosis:
    """findings: most severe first. not_examined: what the rules could not
    look at; when it is not empty, "no finding" does not mean "no problem"."""

    findings: tuple[Finding, ...]
    not_examined: tuple[NotExamined, ...] = ()
