"""Comparing the managed heaps of two dumps of one process, type by type.

A baseline dump taken earlier and a current one: which types grew, in
count, shallow size and retained size. Types are matched by name: method
tables are addresses of one process run and differ between runs.
`compare_heaps` is pure: it takes the engine's `retained_by_type` items of
each dump; `compare_sessions` gets them from two open dumps, after checking
that the two can be compared at all.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Optional

from analysis.analyses import HEAP_GRAPH, HEAP_STATS, RETAINED_BY_TYPE, RUNTIME
from analysis.managed.results import TypeRetained, TypeStat
from analysis.model.native import DumpInfo
from analysis.model.outcome import Cancelled, Done, Outcome, Unavailable
from analysis.values import ByteSize, Unknown

if TYPE_CHECKING:
    from analysis.session import DumpSession


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


@dataclass(frozen=True)
class HeapComparison:
    """The managed types of this dump against those of a baseline dump.

    deltas: every type of either dump, largest growth first (compare_heaps).
    rows: the Managed types rows to show against them: this dump's types
    (one per method table, as heap statistics list them) in the deltas'
    order, then the types only the baseline had, with no objects and no
    method table here; free space and anything else not compared last."""

    baseline: str
    deltas: tuple[TypeDelta, ...]
    rows: tuple[TypeStat, ...]
    _by_name: dict[str, TypeDelta] = field(
        init=False, repr=False, compare=False, hash=False
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {d.name: d for d in self.deltas})

    def delta(self, name: Optional[str]) -> Optional[TypeDelta]:
        """The type's change since the baseline; None when it is not compared
        (free space, which is no object)."""
        return self._by_name.get(name or "")


def compared_rows(
    types: Iterable[TypeStat], deltas: tuple[TypeDelta, ...]
) -> tuple[TypeStat, ...]:
    """HeapComparison.rows: `types` (this dump's heap statistics) ordered as
    `deltas`, with the types only the baseline had."""
    rank = {d.name: i for i, d in enumerate(deltas)}
    current = list(types)
    present = {t.name for t in current}
    gone = [
        TypeStat(d.name, None, 0, ByteSize(0))
        for d in deltas
        if d.name not in present and d.count_after == 0
    ]
    return tuple(
        sorted(current + gone, key=lambda t: rank.get(t.name or "", len(rank)))
    )


def mismatch(current: DumpInfo, baseline: DumpInfo) -> Optional[str]:
    """Why the two dumps cannot be of one process, or None."""
    # What either dump does not say cannot tell the two apart (nor the
    # pointer size a reader assumed with the architecture).
    pairs: list[tuple[object, object]] = [
        (now, then)
        for now, then in (
            (current.os, baseline.os),
            (current.arch, baseline.arch),
        )
        if not isinstance(now, Unknown) and not isinstance(then, Unknown)
    ]
    if not isinstance(current.arch, Unknown) and not isinstance(baseline.arch, Unknown):
        pairs.append((current.pointer_size, baseline.pointer_size))
    if all(now == then for now, then in pairs):
        return None
    return (
        f"the baseline is a dump of {baseline.process} and "
        f"this one of {current.process}: not the same process"
    )


Progress = Callable[[str, float], None]


def _no_progress(message: str, fraction: float) -> None:
    pass


# The baseline's steps and the share of the work each takes: the heap graph
# is nearly all of it.
_STEPS = ((RUNTIME, 0.1), (HEAP_GRAPH, 0.8), (RETAINED_BY_TYPE, 0.1))


def compare_sessions(
    current: "DumpSession",
    baseline: "DumpSession",
    progress: Progress = _no_progress,
    cancel: Optional[threading.Event] = None,
) -> Outcome[HeapComparison]:
    """This dump's managed types against the baseline's: Done with the
    comparison, Unavailable with the reason the two cannot be compared
    (other OS or architecture, retained sizes missing on either side), or
    Cancelled. Runs the baseline's heap graph (and this dump's, unless it
    ran) first."""
    why = mismatch(current.info(), baseline.info())
    if why is not None:
        return Unavailable(why)
    start = 0.0
    for step, share in _STEPS:

        def report(
            message: str, fraction: float, at: float = start, part: float = share
        ) -> None:
            progress(f"baseline: {message}", at + part * fraction)

        report(step.label, 0.0)
        if isinstance(baseline.outcome(step, report, cancel), Cancelled):
            return Cancelled()
        start += share
    before = baseline.outcome(RETAINED_BY_TYPE)
    if not isinstance(before, Done):
        return Unavailable(f"retained sizes of the baseline {before.text}")
    progress("this dump: retained sizes by type", 1.0)
    after = current.outcome(RETAINED_BY_TYPE, cancel=cancel)
    heap = current.outcome(HEAP_STATS, cancel=cancel)
    if isinstance(after, Cancelled) or isinstance(heap, Cancelled):
        return Cancelled()
    if not isinstance(after, Done):
        return Unavailable(f"retained sizes of this dump {after.text}")
    if not isinstance(heap, Done):
        return Unavailable(f"heap statistics of this dump {heap.text}")
    deltas = compare_heaps(before.value.items, after.value.items)
    return Done(
        HeapComparison(baseline.path, deltas, compared_rows(heap.value.types, deltas))
    )
