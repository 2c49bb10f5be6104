"""How an analysis ended: exactly one of four states.

A tab, a report section and a diagnosis rule each read one of these and say
so: the result, "not available: reason" (something a user can act on: no
.NET runtime, no DAC, no engine for this kind of dump, a truncated dump),
"failed: error" (a defect or damage we did not foresee), or "cancelled".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, Optional, TypeVar, Union

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


@dataclass(frozen=True)
class Done(Generic[T_co]):
    value: T_co

    @property
    def text(self) -> str:
        return "done"


@dataclass(frozen=True)
class Unavailable:
    """The analysis could not run on this dump; reason says why and what to
    do. code: the engine's error code when the engine said so; dac: the
    DAC file concerned (DAC_NOT_TRUSTED: the file whose signature check
    failed, which the user may choose to trust with --trust-dac)."""

    reason: str
    code: Optional[int] = None
    dac: Optional[str] = None

    @property
    def text(self) -> str:
        return f"not available: {self.reason}"


@dataclass(frozen=True)
class Failed:
    """The analysis raised: error is the exception, for a bug report."""

    error: str

    @property
    def text(self) -> str:
        return f"failed: {self.error}"


@dataclass(frozen=True)
class Cancelled:
    """The user cancelled; nothing was cached, asking again reruns it."""

    @property
    def text(self) -> str:
        return "cancelled"


Outcome = Union[Done[T], Unavailable, Failed, Cancelled]
NotDone = Union[Unavailable, Failed, Cancelled]


def gaps_by_reason(items: "list[tuple[str, NotDone]]") -> list[str]:
    """("Managed heap", outcome), ... as lines a user reads once per reason:
    "Managed heap, Finalizer queue: not available: no .NET runtime"."""
    grouped: dict[str, list[str]] = {}
    for title, outcome in items:
        grouped.setdefault(outcome.text, []).append(title)
    return [f"{', '.join(titles)}: {text}" for text, titles in grouped.items()]


class AnalysisCancelled(Exception):
    """Raised inside a computation when the user cancels it."""


class NotDoneError(LookupError):
    """Asked for the value of an analysis that did not end with a result."""

    def __init__(self, analysis: str, outcome: NotDone) -> None:
        super().__init__(f"{analysis}: {outcome.text}")
        self.outcome = outcome


__all__ = [
    "AnalysisCancelled",
    "Cancelled",
    "Done",
    "Failed",
    "NotDone",
    "NotDoneError",
    "Outcome",
    "Unavailable",
]
