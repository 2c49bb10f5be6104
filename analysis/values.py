"""Semantic value types shared by every analysis and renderer.

Analyses return these instead of formatted text; the GUI, the text report and
the JSON report each render them their own way (hex and "1.33 GB" for people,
exact integers for machines).
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass
from typing import Any


class Address(int):
    """A virtual address in the dumped process; renders as hex."""

    def __str__(self) -> str:
        return f"0x{int(self):x}"

    def __repr__(self) -> str:
        return f"Address(0x{int(self):x})"


_UNITS = ("bytes", "KB", "MB", "GB", "TB")


class ByteSize(int):
    """A size in bytes; renders as "1.33 GB" for people, exact in JSON."""

    def __str__(self) -> str:
        return human_size(int(self))

    def __repr__(self) -> str:
        return f"ByteSize({int(self)})"


def human_size(n: int) -> str:
    value = float(n)
    for unit in _UNITS:
        if abs(value) < 1024 or unit == _UNITS[-1]:
            if unit == "bytes":
                return f"{int(value)} bytes"
            return f"{value:.2f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class Unreadable:
    """A value whose memory is not in the dump; says what was tried."""

    reason: str

    def __str__(self) -> str:
        return "unreadable"


@dataclass(frozen=True)
class NotApplicable:
    """A value that has no meaning for this dump (no NT heap on Linux...)."""

    reason: str = ""

    def __str__(self) -> str:
        return "n/a"


@dataclass(frozen=True)
class Unknown:
    """A value the dump does not let us determine."""

    reason: str = ""

    def __str__(self) -> str:
        return "unknown"


GAPS = (Unreadable, NotApplicable, Unknown)


@dataclass(frozen=True)
class AtLeast:
    """A count or size that is a lower bound: what was counted where part of
    the input could not be read (a damaged GC heap). reason names the damage;
    the renderers show "≥ 12.00 MB" with the reason as its tooltip."""

    value: int
    reason: str

    def __str__(self) -> str:
        return f"≥ {self.value:,}"


@dataclass(frozen=True)
class Approximate:
    """A size computed over a damaged graph: a reference that was lost can
    leave an object out of its holder's sum, or put it in another holder's
    (the only one left), so the value may be too low or too high. reason
    names the damage; the renderers show "≈ 12.00 MB" with the reason as
    its tooltip."""

    value: int
    reason: str

    def __str__(self) -> str:
        return f"≈ {self.value:,}"


def to_jsonable(value: Any) -> Any:
    """Converts analysis results (frozen dataclasses, enums, value types) to
    plain JSON data: exact integers, gaps as null, field names as keys."""
    if value is None or isinstance(value, (bool, str, float)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, enum.Enum):
        return to_jsonable(value.value)
    if isinstance(value, GAPS):
        return None
    if isinstance(value, AtLeast):
        return {"at_least": int(value.value), "reason": value.reason}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: to_jsonable(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if not f.name.startswith("_") and f.repr
        }
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, frozenset, set)):
        return [to_jsonable(v) for v in value]
    raise TypeError(f"cannot render {type(value).__name__} as JSON")


class ForTheUser(Exception):
    """An error whose message is written for the user (the engine's, a dump
    reader's): shown as it is."""


def failure_text(error: BaseException) -> str:
    """What a failed analysis or drill-down shows: a message written for the
    user as it is; anything else is a defect, named by its type so that a
    report of it can be traced."""
    if isinstance(error, ForTheUser):
        return str(error)
    return f"{type(error).__name__}: {error}"
