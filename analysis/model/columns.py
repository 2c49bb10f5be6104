"""The columns of every result table, declared once beside the result types.

A column says what a user reads (title, tooltip), how to get the value from
a record and what kind of value it is. The GUI tables, the text report and
CSV export all render through `Column.text`, so a typed gap (a value the dump
does not hold, one that does not apply, one we cannot know) reads the same
everywhere: "unreadable", "n/a", "unknown", with its reason as the tooltip;
a lower bound (a sum over a damaged heap) reads "≥ 12.00 MB", the damage
named in its tooltip.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Callable, Generic, Mapping, Optional, Protocol, Sequence, TypeVar

from analysis.dumpfile.base import Module, Region
from analysis.managed.compare import HeapComparison, TypeDelta
from analysis.managed.results import Monitor, TypeCount, TypeStat
from analysis.model.images import ImageCheck
from analysis.model.native import (
    HeapSegment,
    LargeBlock,
    NativeHeap,
    ProtectRow,
    StateRow,
    TypeRow,
    UsageRow,
)
from analysis.model.threads import ThreadView
from analysis.values import (
    GAPS,
    Approximate,
    AtLeast,
    ByteSize,
    NotApplicable,
    Unknown,
    human_size,
)


class ColumnKind(StrEnum):
    TEXT = "text"
    INT = "int"
    SIZE = "size"
    ADDRESS = "address"
    PERCENT = "percent"
    # A change between two dumps: signed, "+" shown.
    INT_CHANGE = "int_change"
    SIZE_CHANGE = "size_change"

    @property
    def numeric(self) -> bool:
        return self is not ColumnKind.TEXT


def _format(kind: ColumnKind, value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, AtLeast):
        return f"≥ {_format(kind, value.value)}"
    if isinstance(value, Approximate):
        return f"≈ {_format(kind, value.value)}"
    if isinstance(value, GAPS) or not isinstance(value, (int, float)):
        return str(value)
    if kind is ColumnKind.INT:
        return f"{int(value):,}"
    if kind is ColumnKind.SIZE:
        return human_size(int(value))
    if kind is ColumnKind.ADDRESS:
        return f"0x{int(value):x}"
    if kind is ColumnKind.PERCENT:
        return f"{float(value):.2f} %"
    if kind is ColumnKind.INT_CHANGE:
        return f"{int(value):+,}"
    if kind is ColumnKind.SIZE_CHANGE:
        return ("+" if value > 0 else "") + human_size(int(value))
    return str(value)


R = TypeVar("R", contravariant=True)
Record = TypeVar("Record")


@dataclass(frozen=True)
class Column(Generic[R]):
    title: str
    get: Callable[[R], object]
    kind: ColumnKind = ColumnKind.TEXT
    tooltip: str = ""

    def __post_init__(self) -> None:
        # Views may say "int" where they mean ColumnKind.INT.
        object.__setattr__(self, "kind", ColumnKind(self.kind))

    def text(self, record: R) -> str:
        return _format(self.kind, self.get(record))

    def gap_reason(self, record: R) -> Optional[str]:
        """Why the cell is a gap or a lower bound, for its tooltip; None when
        it is a value."""
        value = self.get(record)
        if isinstance(value, AtLeast):
            return f"at least this much: {value.reason}"
        if isinstance(value, Approximate):
            return f"approximately this much: {value.reason}"
        if isinstance(value, GAPS):
            return getattr(value, "reason", "") or str(value)
        return None

    def sort_key(self, record: R) -> str | float:
        """Text sorts as lower-case text; every number, address and size as
        a float (exact below 2**53, which every user-space address is); gaps
        and blanks sort first."""
        value = self.get(record)
        if self.kind is ColumnKind.TEXT:
            return "" if value is None else str(value).lower()
        if isinstance(value, (AtLeast, Approximate)):
            return float(value.value)
        return float(value) if isinstance(value, (int, float)) else -1.0


def table_text(
    columns: Sequence[Column[Record]], records: Sequence[Record]
) -> list[str]:
    """A plain-text table: a header line, then one line per record, numbers
    right-aligned."""
    cells = [[c.text(r) for c in columns] for r in records]
    widths = [
        max([len(c.title)] + [len(row[i]) for row in cells])
        for i, c in enumerate(columns)
    ]

    def line(values: Sequence[str]) -> str:
        return "  ".join(
            v.rjust(w) if c.kind.numeric else v.ljust(w)
            for c, v, w in zip(columns, values, widths)
        ).rstrip()

    return [line([c.title for c in columns])] + [line(row) for row in cells]


# -- native -----------------------------------------------------------------

MODULE_COLUMNS: tuple[Column[Module], ...] = (
    Column("Base", lambda m: m.base, ColumnKind.ADDRESS),
    Column("Size", lambda m: m.size, ColumnKind.SIZE),
    Column("Name", lambda m: m.name),
    Column("Version", lambda m: m.version),
    Column("Build id", lambda m: m.build_id),
    Column("Path", lambda m: m.path),
)

IMAGE_COLUMNS: tuple[Column[ImageCheck], ...] = (
    Column("Module", lambda c: c.module),
    Column("Base", lambda c: c.base, ColumnKind.ADDRESS),
    Column(
        "Image check",
        lambda c: c.state,
        tooltip="its read-only pages in the dump compared with its file (!chkimg)",
    ),
    Column("Compared", lambda c: c.compared, ColumnKind.SIZE),
    Column("Differs", lambda c: ByteSize(c.damaged_bytes), ColumnKind.SIZE),
    Column(
        "First differing page",
        lambda c: c.damaged[0].address if c.damaged else None,
        ColumnKind.ADDRESS,
    ),
    Column("In", lambda c: c.damaged[0].part if c.damaged else None),
    Column(
        "Why not checked / what it affects",
        lambda c: c.reason or (c.affects if c.damaged else ""),
    ),
    Column("File", lambda c: c.file),
)


def _heap_lfh(heap: NativeHeap) -> str:
    return {True: "yes", False: "no"}.get(heap.lfh, "") if heap.lfh is not None else ""


def _walked(heap: NativeHeap, value: object) -> object:
    """A count of what the heap's walk found; unknown, not 0, for a heap
    whose header could not be read (its walk never ran)."""
    if not heap.was_read:
        return Unknown(heap.problems[-1] if heap.problems else "the heap was not read")
    return value


HEAP_COLUMNS: tuple[Column[NativeHeap], ...] = (
    Column("Heap", lambda h: h.address, ColumnKind.ADDRESS),
    Column("Kind", lambda h: h.kind),
    Column("Reserved", lambda h: h.reserved, ColumnKind.SIZE),
    Column("Committed", lambda h: h.committed, ColumnKind.SIZE),
    Column("Free", lambda h: h.free, ColumnKind.SIZE),
    Column("Segments", lambda h: _walked(h, len(h.segments)), ColumnKind.INT),
    Column("Large blocks", lambda h: _walked(h, len(h.large_blocks)), ColumnKind.INT),
    Column(
        "Large-block bytes",
        lambda h: _walked(h, h.large_block_bytes),
        ColumnKind.SIZE,
    ),
    Column("LFH", _heap_lfh, tooltip="the NT low-fragmentation front end"),
)
SEGMENT_COLUMNS: tuple[Column[HeapSegment], ...] = (
    Column("Segment", lambda s: s.address, ColumnKind.ADDRESS),
    Column("Reserved", lambda s: s.reserved, ColumnKind.SIZE),
    Column("Committed", lambda s: s.committed, ColumnKind.SIZE),
)
BLOCK_COLUMNS: tuple[Column[LargeBlock], ...] = (
    Column("Block", lambda b: b.address, ColumnKind.ADDRESS),
    Column("Size", lambda b: b.size, ColumnKind.SIZE),
    Column("Bytes", lambda b: b.size, ColumnKind.INT),
)


class ShareRow(Protocol):
    """A row of `!address -summary`: so many regions, so many bytes."""

    @property
    def regions(self) -> int:
        ...

    @property
    def bytes(self) -> ByteSize:
        ...

    @property
    def percent_busy(self) -> Optional[float]:
        ...

    @property
    def percent_total(self) -> float:
        ...


S = TypeVar("S", bound=ShareRow)


def _share_columns(title: str, get: Callable[[S], object]) -> "tuple[Column[S], ...]":
    return (
        Column(title, get),
        Column("Regions", lambda r: r.regions, ColumnKind.INT),
        Column("Size", lambda r: r.bytes, ColumnKind.SIZE),
        Column("% of busy", lambda r: r.percent_busy, ColumnKind.PERCENT),
        Column("% of total", lambda r: r.percent_total, ColumnKind.PERCENT),
    )


USAGE_COLUMNS: tuple[Column[UsageRow], ...] = _share_columns("Usage", lambda r: r.usage)
STATE_COLUMNS: tuple[Column[StateRow], ...] = _share_columns("State", lambda r: r.state)
TYPE_ROW_COLUMNS: tuple[Column[TypeRow], ...] = _share_columns("Type", lambda r: r.type)
PROTECT_COLUMNS: tuple[Column[ProtectRow], ...] = _share_columns(
    "Protect", lambda r: r.protect
)
REGION_COLUMNS: tuple[Column[Region], ...] = (
    Column("Base", lambda r: r.base, ColumnKind.ADDRESS),
    Column("End", lambda r: int(r.base) + int(r.size), ColumnKind.ADDRESS),
    Column("Size", lambda r: r.size, ColumnKind.SIZE),
    Column("State", lambda r: r.state),
    Column("Type", lambda r: r.type),
    Column("Protect", lambda r: r.protect),
    Column("File", lambda r: r.path),
)

# -- managed --------------------------------------------------------------------

TYPE_COLUMNS: tuple[Column[TypeStat], ...] = (
    Column("MT", lambda t: t.method_table, ColumnKind.ADDRESS, "method table"),
    Column("Count", lambda t: t.count, ColumnKind.INT),
    Column("TotalSize", lambda t: t.size, ColumnKind.SIZE),
    Column("Bytes", lambda t: t.size, ColumnKind.INT),
    Column("Class Name", lambda t: t.name),
)


def type_change_columns(
    comparison: Callable[[], Optional[HeapComparison]],
) -> tuple[Column[TypeStat], ...]:
    """Each type's change since the baseline dump (`comparison()`, None when
    none is compared): this dump's value minus the baseline's, by type name
    (one name's method tables together)."""

    def change(
        get: Callable[[TypeDelta], Optional[int]]
    ) -> Callable[[TypeStat], object]:
        def value(t: TypeStat) -> object:
            compared = comparison()
            if compared is None:
                return None
            delta = compared.delta(t.name)
            if delta is None:
                return NotApplicable("not compared: free space is not an object")
            found = get(delta)
            if found is None:
                return Unknown("the retained size is unknown in one of the dumps")
            return found

        return value

    return (
        Column(
            "Δ Count",
            change(lambda d: d.count_delta),
            ColumnKind.INT_CHANGE,
            "objects of the type in this dump minus in the baseline",
        ),
        Column(
            "Δ Size",
            change(lambda d: d.size_delta),
            ColumnKind.SIZE_CHANGE,
            "the type's total (shallow) size in this dump minus in the baseline",
        ),
        Column(
            "Δ Retained",
            change(lambda d: d.retained_delta),
            ColumnKind.SIZE_CHANGE,
            "what the type's objects keep alive in this dump minus in the baseline",
        ),
    )


TYPE_COUNT_COLUMNS: tuple[Column[TypeCount], ...] = (
    Column("Count", lambda e: e.count, ColumnKind.INT),
    Column("TotalSize", lambda e: e.size, ColumnKind.SIZE),
    Column("Class Name", lambda e: e.name),
)

# -- threads ----------------------------------------------------------------------


def thread_role(thread: ThreadView) -> str:
    return ", ".join(
        label
        for label, flag in (
            ("Finalizer", thread.is_finalizer),
            ("GC", thread.is_gc),
            ("Threadpool", thread.is_threadpool),
        )
        if flag
    )


def apartment_text(thread: ThreadView) -> str:
    if thread.apartment_disagrees:
        return f"{thread.apartment} (CLR: {thread.apartment_clr})"
    return str(thread.apartment)


def thread_name(os_id: int, names: dict[int, str]) -> str:
    name = names.get(os_id)
    return f"'{name}' {os_id}" if name else str(os_id)


def waits_text(thread: ThreadView, names: Optional[dict[int, str]] = None) -> str:
    """What the thread is stuck on, in words."""
    if thread.in_com_call:
        return "COM call into another apartment"
    if thread.waits_on_task:
        return "a task, synchronously (Task.Wait / .Result)"
    waits = thread.waits_for
    if waits is None:
        return ""
    if not waits.blocked:
        return f"Monitor.Wait on {waits.type or '?'} for a pulse"
    owner = ""
    if waits.owner_os_id:
        owner = (
            f" held by {thread_name(waits.owner_os_id, names or {})}"
            f" (0x{waits.owner_os_id:x})"
        )
    return f"monitor on {waits.type or '?'}{owner}"


THREAD_COLUMNS: tuple[Column[ThreadView], ...] = (
    Column("OSID", lambda t: str(t.os_id), tooltip="operating-system thread id"),
    Column("OSID (hex)", lambda t: f"{t.os_id:x}"),
    Column("ID", lambda t: t.managed_id, ColumnKind.INT, "managed thread id"),
    Column("Name", lambda t: t.name),
    Column(
        "Apt",
        apartment_text,
        tooltip="COM apartment: from the TEB where the dump has one, else from the CLR",
    ),
    Column("Role", thread_role),
    Column(
        "Locks",
        lambda t: t.lock_count,
        ColumnKind.INT,
        "monitors the thread holds, from the lock table (blank: not readable)",
    ),
    Column("TEB", lambda t: t.teb, ColumnKind.ADDRESS),
    Column("Exception", lambda t: t.exception),
)


def waiters_text(monitor: Monitor) -> str:
    ids = ", ".join(str(i) for i in monitor.waiting_os_ids)
    count = monitor.waiter_count or len(monitor.waiting_os_ids)
    return f"{count}: {ids}" if ids else str(count or "")


MONITOR_COLUMNS: tuple[Column[Monitor], ...] = (
    Column("Object", lambda m: m.object, ColumnKind.ADDRESS),
    Column("Type", lambda m: m.type),
    Column("Recursion", lambda m: m.recursion, ColumnKind.INT),
    Column("Waiters", waiters_text),
    Column("Kind", lambda m: m.source),
)


def lower_bound(value: Optional[int], damage: str) -> object:
    """A sum over the GC heap, as a lower bound when its walk met damage
    (damage: what was not walked, "" when nothing)."""
    if value is not None and damage:
        return AtLeast(int(value), damage)
    return value


def approximate(value: Optional[int], damage: str) -> object:
    """A size computed over the heap graph, as approximate when the graph
    met damage (damage: what it could not follow, "" when nothing)."""
    if value is not None and damage:
        return Approximate(int(value), damage)
    return value


class NamedType(Protocol):
    """A table row naming a managed type (TypeStat, TypeCount)."""

    @property
    def name(self) -> Optional[str]:
        ...


def native_bytes_column(
    owned: Callable[[], Mapping[str, int]], damage: Callable[[], str]
) -> Column[NamedType]:
    """The native memory a type's objects own (SOS `gctonative`), looked up
    by type name in what the native-owner analysis found (`owned()`, empty
    until it ends): the large blocks and heap allocations their native
    pointers point into; a lower bound when the GC heap walk that found the
    owners met damage (`damage()`)."""
    return Column(
        "Native owned",
        lambda t: lower_bound(owned().get(t.name or ""), damage()),
        ColumnKind.SIZE,
        "native large blocks and heap allocations the type's objects point into "
        "(directly or through one native structure), each counted once, like SOS "
        "gctonative",
    )


def retained_column(
    retained: Callable[[], Mapping[int, int]], damage: Callable[[], str]
) -> Column[TypeStat]:
    """What would be freed if every object of the type went, looked up by
    method table in the dominator tree's sums (`retained()`, empty until
    they are known); approximate when the graph met damage (a lost reference
    can move an object to another holder's sum as well as out of all)."""
    return Column(
        "Retained",
        lambda t: approximate(retained().get(int(t.method_table or 0)), damage()),
        ColumnKind.SIZE,
        "what would be freed if every live object of the type went (dominator "
        "tree); garbage the GC has not collected yet retains nothing",
    )


def managed_type_columns(
    retained: Callable[[], Mapping[int, int]],
    owned: Callable[[], Mapping[str, int]],
    damage: Callable[[], str],
    owned_damage: Callable[[], str],
) -> tuple[Column[TypeStat], ...]:
    """The Managed types table (`dumpheap -stat` with retained and native
    owned bytes beside the sizes, before the long class name), as the GUI
    and the text report show it."""
    return (
        TYPE_COLUMNS[:-1]
        + (retained_column(retained, damage), native_bytes_column(owned, owned_damage))
        + TYPE_COLUMNS[-1:]
    )


def finalizer_type_columns(
    owned: Callable[[], Mapping[str, int]], damage: Callable[[], str]
) -> tuple[Column[TypeCount], ...]:
    """A finalizer queue's types with the native bytes their objects own."""
    return (
        TYPE_COUNT_COLUMNS[:-1]
        + (native_bytes_column(owned, damage),)
        + TYPE_COUNT_COLUMNS[-1:]
    )
