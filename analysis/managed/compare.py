"""Comparing the managed heaps of two dumps of one process, type by type.

A baseline dump taken earlier and a current one: which types grew, in
count, shallow size and retained size. Types are matched by name: method
tables are addresses of one process run and differ between runs. Pure: takes
the engine's `retained_by_type` items of each dump.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Optional

from analysis.managed.results import TypeRetained
from analysis.values import ByteSize


@dataclass(frozen=True)
class TypeDelta:
    """One type in both dumps. A type missing from one dump has 0 instances
    there. retained is None on a side whose value is unknown; its delta is
    then None too."""

    name: str
    count_before: int
    count_after: int
    size_before: ByteSize
    size_after: ByteSize
    retained_before: Optional[ByteSize]
    retained_after: Optional[ByteSize]

    @property
    def count_delta(self) -> int:
        return self.count_after - self.count_before

    @property
    def size_delta(self) -> int:
        return int(self.size_after) - int(self.size_before)

    @property
    def retained_delta(self) -> Optional[int]:
        if self.retained_before is None or self.retained_after is None:
            return None
        return int(self.retained_after) - int(self.retained_before)


def _by_name(
    types: Iterable[TypeRetained],
) -> dict[str, tuple[int, int, Optional[int]]]:
    # One name can have several method tables (one per loader); add them up.
    merged: dict[str, tuple[int, int, Optional[int]]] = {}
    for t in types:
        if t.name is None:
            continue
        count, size, retained = merged.get(t.name, (0, 0, 0))
        merged[t.name] = (
            count + (t.count or 0),
            size + int(t.size or 0),
            None
            if retained is None or t.retained is None
            else retained + int(t.retained),
        )
    return merged


def compare_heaps(
    baseline: Iterable[TypeRetained], current: Iterable[TypeRetained]
) -> tuple[TypeDelta, ...]:
    """Per-type deltas from baseline to current, largest growth first: by
    retained size where both dumps know it, then shallow size, then count."""
    before, after = _by_name(baseline), _by_name(current)
    deltas = []
    for name in before.keys() | after.keys():
        c0, s0, r0 = before.get(name, (0, 0, 0))
        c1, s1, r1 = after.get(name, (0, 0, 0))
        deltas.append(
            TypeDelta(
                name=name,
                count_before=c0,
                count_after=c1,
                size_before=ByteSize(s0),
                size_after=ByteSize(s1),
                retained_before=None if r0 is None else ByteSize(r0),
                retained_after=None if r1 is None else ByteSize(r1),
            )
        )
    deltas.sort(
        key=lambda d: (
            -(d.retained_delta if d.retained_delta is not None else d.size_delta),
            -d.size_delta,
            -d.count_delta,
            d.name,
        )
    )
    return tuple(deltas)
