"""What the diagnosis yields: plain statements, the evidence behind each, and
what it could not look at."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from analysis.model.vocab import RowKind, Severity

EvidenceKey = Union[int, str]


@dataclass(frozen=True)
class Evidence:
    """One fact behind a finding, and the row that shows it: row says what
    kind of row (a thread, a large block...), key which one (an OS thread
    id, an address, a type name)."""

    row: RowKind
    key: EvidenceKey
    text: str


@dataclass(frozen=True)
class Finding:
    rule: str
    severity: Severity
    title: str
    statement: str
    evidence: tuple[Evidence, ...]


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
