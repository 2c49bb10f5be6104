"""What a diagnosis rule yields: a plain statement and the evidence behind it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

EvidenceKey = Union[int, str, None]


@dataclass(frozen=True)
class Evidence:
    """One fact behind a finding, and where the user sees it.

    view names the tab ("threads", "finalizer", "native_heaps", "types",
    "memory"); key selects the row there (an OS thread id, a type name, a
    heap or block address).
    """

    view: str
    key: EvidenceKey
    text: str


@dataclass(frozen=True)
class Finding:
    rule: str
    severity: str  # "critical", "warning" or "info"
    title: str
    statement: str
    evidence: tuple[Evidence, ...]


SEVERITY_ORDER = {"critical": 0, "warning": 1, "info": 2}
