"""Typed results of the managed-heap engine (engine/PROTOCOL.md).

Field names are the engine's JSON keys and the keys of the report's
`managed.*` sections. Every field may be absent or null on the wire (an older
or newer engine, a dump that lacks the data): such fields become None here, or
an empty tuple for lists, never a made-up value.
"""

from __future__ import annotations

import dataclasses
import enum
import types
from types import NoneType
import typing
from dataclasses import dataclass, field
from typing import Any, Optional, Protocol, Union

from analysis.model.vocab import Apartment, ManagedFrameKind, RootKind, WaitKind
from analysis.values import Address, ByteSize

R = typing.TypeVar("R")


@dataclass(frozen=True)
class RuntimeInfo:
    """The .NET runtime found in the dump and how the engine reads it.

    version_source: "module" (version resource), "runtime_folder" (the
    shared-framework folder name; ELF dumps carry no version) or "none".
    heap_readable False means a dump without GC heap memory; heap_problem
    then says what to do. dump_damage names damage found in the file
    (a truncated dump): what is read from it may be incomplete.
    """

    flavor: Optional[str]
    version: Optional[str]
    version_source: Optional[str]
    dac_path: Optional[str]
    dac_explicit: Optional[bool]
    dac_candidates: tuple[str, ...]
    runtime_module: Optional[str]
    runtime_module_base: Optional[Address]
    pointer_size: Optional[int]
    target_platform: Optional[str]
    architecture: Optional[str]
    is_server_gc: Optional[bool]
    heap_count: Optional[int]
    uses_regions: Optional[bool]
    segment_count: Optional[int]
    can_walk_heap: Optional[bool]
    heap_readable: Optional[bool]
    heap_problem: Optional[str]
    is_thread_safe: Optional[bool] = field(default=None, repr=False)
    # The dump file is damaged (truncated: what it lacks) but could be read.
    dump_damage: Optional[str] = None
    # Which engine read the dump and where it ran ("win-x64 engine under
    # Wine 8.0"): the report and the status bar say it.
    engine: Optional[str] = None
    # "module_list": the runtime module is in the dump's own list (a core's
    # NT_FILE note, a minidump's module list); "hint": only among the
    # modules the dump reader found in memory (the list is damaged).
    runtime_module_source: Optional[str] = None


@dataclass(frozen=True)
class TypeStat:
    """One line of `dumpheap -stat`; free space is the type named "Free"."""

    name: Optional[str]
    method_table: Optional[Address]
    count: Optional[int]
    size: Optional[ByteSize]


@dataclass(frozen=True)
class FreeSpace:
    """Free space (the "Free" type) in the segments of one kind (gen0, gen1,
    gen2, loh, poh, frozen, ephemeral): fragmentation where it lies."""

    kind: Optional[str]
    count: Optional[int]
    size: Optional[ByteSize]


@dataclass(frozen=True)
class CorruptRange:
    """Bytes of a GC segment that hold no valid object (the heap walk could
    not read them and resumed after them); reason says why the first object
    there was refused; kind is the segment's kind, as in FreeSpace."""

    start: Optional[Address]
    end: Optional[Address]
    kind: Optional[str]
    reason: Optional[str]


@dataclass(frozen=True)
class HeapStats:
    """`dumpheap -stat`: types sorted by total size, ascending, as SOS does;
    free_by_kind splits the "Free" line by segment kind.

    unwalked_bytes > 0 means the GC heap is damaged in this dump: counts and
    sizes are then lower bounds, corrupt_ranges lists where (the first 1000
    of corrupt_range_count)."""

    types: tuple[TypeStat, ...]
    total_objects: Optional[int]
    total_bytes: Optional[ByteSize]
    free_by_kind: tuple[FreeSpace, ...] = ()
    parallel: Optional[bool] = field(default=None, repr=False)
    elapsed_seconds: Optional[float] = field(default=None, repr=False)
    corrupt_ranges: tuple[CorruptRange, ...] = ()
    corrupt_range_count: Optional[int] = None
    unwalked_bytes: Optional[ByteSize] = None


@dataclass(frozen=True)
class GcSegment:
    """A segment or region of one GC sub-heap (`eeheap -gc`).

    kind: gen0, gen1, gen2, ephemeral (segments GC), loh, poh or frozen
    (SOS's "NonGC heap"). start..allocated holds objects; committed and
    reserved ranges are the memory the GC took for it.
    """

    heap: Optional[int]
    kind: Optional[str]
    address: Optional[Address]
    start: Optional[Address]
    allocated: Optional[Address]
    committed_start: Optional[Address]
    committed_end: Optional[Address]
    reserved_start: Optional[Address]
    reserved_end: Optional[Address]
    allocated_size: Optional[ByteSize]
    committed_size: Optional[ByteSize]


@dataclass(frozen=True)
class GcSubHeap:
    """One GC heap (one per core with server GC) and its own segments."""

    index: Optional[int]
    address: Optional[Address]
    has_regions: Optional[bool]
    segments: tuple[GcSegment, ...]


@dataclass(frozen=True)
class GcHeap:
    """segments: every segment of every heap, flattened; heaps: the same
    segments by GC heap."""

    is_server: Optional[bool]
    uses_regions: Optional[bool]
    segments: tuple[GcSegment, ...]
    total_allocated: Optional[ByteSize]
    total_committed: Optional[ByteSize]
    heaps: tuple[GcSubHeap, ...] = ()


@dataclass(frozen=True)
class TypeCount:
    name: Optional[str]
    method_table: Optional[Address]
    count: Optional[int]
    size: Optional[ByteSize]


@dataclass(frozen=True)
class FinalizerHeap:
    """Per GC sub-heap: registered finalizable objects by generation, and
    the objects ready for finalization (f-reachable)."""

    heap: Optional[int]
    gen0: Optional[int]
    gen1: Optional[int]
    gen2: Optional[int]
    ready: Optional[int]


@dataclass(frozen=True)
class FinalizerQueue:
    """`finalizequeue` plus the ready list by type (`!frq -stat`).

    finalizable: every registered finalizable object, ready ones included;
    ready: the f-reachable objects waiting for the finalizer thread.
    """

    finalizable: tuple[TypeCount, ...]
    ready: tuple[TypeCount, ...]
    finalizable_count: Optional[int]
    ready_count: Optional[int]
    generation_counts: tuple[int, ...]
    heaps: tuple[FinalizerHeap, ...]
    rcw_sta: Optional[int]
    rcw_mta: Optional[int]
    rcw_free_threaded: Optional[int]
    sync_blocks_to_clean_up: Optional[int]


@dataclass(frozen=True)
class ExceptionInfo:
    address: Optional[Address]
    type: Optional[str]
    message: Optional[str]
    h_result: Optional[int]


@dataclass(frozen=True)
class StackFrame:
    """kind: "managed" (a JIT-compiled method) or "runtime" (a frame the
    runtime pushed, named in brackets, e.g. [InlinedCallFrame])."""

    kind: Optional[ManagedFrameKind]
    instruction_pointer: Optional[Address]
    stack_pointer: Optional[Address]
    name: Optional[str]
    module: Optional[str]


@dataclass(frozen=True)
class WaitInfo:
    """The monitor a thread waits on, and who holds it.

    kind "enter": blocked acquiring a monitor another thread holds (lock,
    Monitor.Enter); "wait": in Monitor.Wait for a pulse, usually idle (the
    monitor is then free and owner_os_id None). via: the frame that shows it.
    """

    object: Optional[Address]
    type: Optional[str]
    owner_os_id: Optional[int]
    kind: Optional[WaitKind]
    via: Optional[str]


@dataclass(frozen=True)
class ManagedThread:
    """A thread the CLR knows (`clrthreads`).

    apartment comes from the CLR's own state (TS_InSTA / TS_InMTA), not the
    OS. monitors_held is the count to show: the monitors it owns per the lock
    table (None when the heap was not readable). lock_count is the runtime's
    own counter, -1 when the runtime does not track it (.NET Core), as
    SOS prints. teb, stack_base and stack_limit are None when the dump does
    not give them (Linux core dumps).
    """

    os_id: Optional[int]
    managed_id: Optional[int]
    name: Optional[str]
    apartment: Optional[Apartment]
    is_finalizer: Optional[bool]
    is_gc: Optional[bool]
    is_threadpool: Optional[bool]
    lock_count: Optional[int]
    state: Optional[int]
    gc_mode: Optional[str]
    exception: Optional[ExceptionInfo]
    teb: Optional[Address]
    stack_base: Optional[Address]
    stack_limit: Optional[Address]
    waits_for: Optional[WaitInfo]
    frames: tuple[StackFrame, ...]
    state_flags: tuple[str, ...] = ()
    is_background: Optional[bool] = None
    is_alive: Optional[bool] = None
    address: Optional[Address] = None
    frames_truncated: Optional[bool] = None
    monitors_held: Optional[int] = None


@dataclass(frozen=True)
class ThreadList:
    """The answer of `threads`; the client hands out the tuple."""

    threads: tuple[ManagedThread, ...]


@dataclass(frozen=True)
class ThreadStack:
    os_id: Optional[int]
    frames: tuple[StackFrame, ...]
    truncated: Optional[bool]


@dataclass(frozen=True)
class Monitor:
    """A held or contended monitor (`syncblk`, plus thin locks).

    source "syncblock" comes from the sync block table (complete);
    "thinlock" is a lock in an object header, found only among objects
    referenced from thread stacks. waiting_os_ids are the threads whose
    stacks show they wait for it; waiter_count is the runtime's own count of
    threads waiting to enter, known only while the monitor is held.
    """

    object: Optional[Address]
    type: Optional[str]
    source: Optional[str]
    sync_block_index: Optional[int]
    is_held: Optional[bool]
    owner_os_id: Optional[int]
    owner_thread_address: Optional[Address]
    recursion: Optional[int]
    waiter_count: Optional[int]
    waiting_os_ids: tuple[int, ...]


@dataclass(frozen=True)
class Monitors:
    """The answer of `monitors`. thin_locks_from_stacks_only: thin locks
    were looked for only among objects referenced from thread stacks, so a
    thin lock held through a static field alone is not listed."""

    items: tuple[Monitor, ...]
    thin_locks_from_stacks_only: Optional[bool]


@dataclass(frozen=True)
class ThreadPoolInfo:
    """The thread pool (`threadpool`). started False: the process never used
    it, and every count is None. kind: "portable", "windows" or "legacy".
    worker_os_ids: live threads the CLR flags as pool workers (one more than
    workers_total while a worker is retiring)."""

    started: Optional[bool]
    kind: Optional[str]
    cpu_utilization: Optional[int]
    workers_total: Optional[int]
    workers_running: Optional[int]
    workers_idle: Optional[int]
    workers_retired: Optional[int]
    min_workers: Optional[int]
    max_workers: Optional[int]
    worker_os_ids: tuple[int, ...]


@dataclass(frozen=True)
class Instance:
    address: Optional[Address]
    size: Optional[ByteSize]


@dataclass(frozen=True)
class Instances:
    """One page of the objects of a type; total counts all of them."""

    method_table: Optional[Address]
    name: Optional[str]
    total: Optional[int]
    offset: Optional[int]
    sort: Optional[str]
    items: tuple[Instance, ...]
    # > 0: the walk met a damaged heap, so total is a lower bound.
    unwalked_bytes: Optional[ByteSize] = None


@dataclass(frozen=True)
class FieldValue:
    """kind "value": value is the primitive as text (chars as their code),
    or a decimal, DateTime, TimeSpan or Guid as .NET prints it, or an enum's
    member name(s); "reference": address is the referenced object (0 for
    null), value its text when it is a string; "struct": address is where
    any other struct lies."""

    name: Optional[str]
    type: Optional[str]
    offset: Optional[int]
    kind: Optional[str]
    value: Optional[str]
    address: Optional[Address]
    reference_type: Optional[str]


@dataclass(frozen=True)
class ObjectDetail:
    address: Optional[Address]
    method_table: Optional[Address]
    type: Optional[str]
    size: Optional[ByteSize]
    generation: Optional[str]
    is_array: Optional[bool]
    length: Optional[int]
    string_value: Optional[str]
    fields: tuple[FieldValue, ...]
    elements: tuple[FieldValue, ...]
    truncated: Optional[bool]


@dataclass(frozen=True)
class PathLink:
    address: Optional[Address]
    type: Optional[str]


@dataclass(frozen=True)
class RootPath:
    """A chain from a GC root to the target, root object first."""

    root_kind: Optional[RootKind]
    root_address: Optional[Address]
    is_pinned: Optional[bool]
    is_interior: Optional[bool]
    thread_os_id: Optional[int]
    chain: tuple[PathLink, ...]


@dataclass(frozen=True)
class RootPaths:
    target: Optional[Address]
    paths: tuple[RootPath, ...]
    truncated: Optional[bool]


@dataclass(frozen=True)
class NativePointer:
    """A managed object's field holding a native pointer. through is None
    when the field points into the range (range_start) itself; otherwise the
    field points at a native structure at `through` whose pointer-sized word
    at through_offset points into it (one indirection). range_start is None
    when no ranges were asked for."""

    object: Optional[Address]
    method_table: Optional[Address]
    type: Optional[str]
    field: Optional[str]
    value: Optional[Address]
    range_start: Optional[Address]
    through: Optional[Address]
    through_offset: Optional[int]


@dataclass(frozen=True)
class NativePointers:
    """The result of one heap walk for native pointers (`native_pointers`):
    pointer_fields counts every non-zero native field read; truncated: more
    matched than the limit allowed. unwalked_bytes > 0: the walk went around
    damaged heap ranges (as HeapStats says), so the pointers found are a
    lower bound."""

    items: tuple[NativePointer, ...]
    objects_walked: Optional[int]
    pointer_fields: Optional[int]
    range_count: Optional[int]
    truncated: Optional[bool]
    corrupt_ranges: tuple[CorruptRange, ...] = ()
    corrupt_range_count: Optional[int] = None
    unwalked_bytes: Optional[ByteSize] = None


# ------------------------------------------------------------ heap graph
# The object graph, its dominator tree and retained sizes (PROTOCOL.md,
# "Heap graph"). Object X dominates Y when every path from the GC roots to Y
# passes through X; X's retained size is what would be freed if X went: its
# own size plus the retained sizes of the objects it immediately dominates.


@dataclass(frozen=True)
class RootKindCount:
    kind: Optional[RootKind]
    count: Optional[int]


class WalkDamage(Protocol):
    """What a walk of the GC heap went around (HeapStats, GraphSummary,
    NativePointers): the first ranges, how many there are, their bytes."""

    @property
    def corrupt_ranges(self) -> tuple[CorruptRange, ...]:
        ...

    @property
    def corrupt_range_count(self) -> Optional[int]:
        ...

    @property
    def unwalked_bytes(self) -> Optional[ByteSize]:
        ...


@dataclass(frozen=True)
class GraphSummary:
    """The graph of one dump: objects (free space excluded), how many the
    roots reach and their bytes (the live heap, the denominator of every
    share), the references, the roots by kind. unwalked_bytes > 0: the
    build went around damaged heap ranges (corrupt_ranges, as HeapStats);
    dangling_references: non-null references that name no object of the
    graph. Either makes reachability a lower bound and retained sizes
    approximate (a lost reference can move an object to another holder)."""

    objects: Optional[int]
    reachable_objects: Optional[int]
    reachable_bytes: Optional[ByteSize]
    unreachable_objects: Optional[int]
    unreachable_bytes: Optional[ByteSize]
    references: Optional[int]
    root_count: Optional[int]
    roots_by_kind: tuple[RootKindCount, ...]
    dominator_passes: Optional[int] = field(default=None, repr=False)
    elapsed_seconds: Optional[float] = field(default=None, repr=False)
    from_index: Optional[bool] = field(default=None, repr=False)
    corrupt_ranges: tuple[CorruptRange, ...] = ()
    corrupt_range_count: Optional[int] = None
    unwalked_bytes: Optional[ByteSize] = None
    dangling_references: Optional[int] = None


@dataclass(frozen=True)
class RootRef:
    """A GC root. kind STATIC with a name ("Namespace.Type.Field") is one
    static field; without a name, the runtime's own array of static slots.
    address: the handle, stack slot or static slot; thread_os_id for stack
    roots."""

    kind: Optional[RootKind]
    name: Optional[str]
    address: Optional[Address]
    thread_os_id: Optional[int]


@dataclass(frozen=True)
class ChainLink:
    """repeat consecutive objects of one type along a chain (a linked list
    is one link); address is the first of them."""

    address: Optional[Address]
    type: Optional[str]
    repeat: Optional[int]


@dataclass(frozen=True)
class DominatorItem:
    """An object in the dominator tree: shallow size, retained size, how
    many objects it immediately dominates, and its roots when it is at the
    top of the tree (no object dominates it)."""

    address: Optional[Address]
    method_table: Optional[Address]
    type: Optional[str]
    size: Optional[ByteSize]
    retained: Optional[ByteSize]
    dominated: Optional[int]
    roots: tuple[RootRef, ...]


@dataclass(frozen=True)
class DominatorPage:
    """One page of the objects a node immediately dominates, largest
    retained first; parent None is the top of the tree."""

    parent: Optional[Address]
    parent_retained: Optional[ByteSize]
    reachable_bytes: Optional[ByteSize]
    total: Optional[int]
    offset: Optional[int]
    items: tuple[DominatorItem, ...]


@dataclass(frozen=True)
class TypeRetained:
    """A type's instances (count, shallow size), the reachable ones, and
    what would be freed if all of them went (retained)."""

    method_table: Optional[Address]
    name: Optional[str]
    count: Optional[int]
    size: Optional[ByteSize]
    reachable_count: Optional[int]
    retained: Optional[ByteSize]


@dataclass(frozen=True)
class TypeRetainedPage:
    reachable_bytes: Optional[ByteSize]
    total: Optional[int]
    offset: Optional[int]
    items: tuple[TypeRetained, ...]


@dataclass(frozen=True)
class RetentionPath:
    """The shortest chain from one root to the target, root's object first."""

    root: Optional[RootRef]
    chain: tuple[ChainLink, ...]


@dataclass(frozen=True)
class RetentionPaths:
    """Why an object is alive: per kind of root that reaches it, the
    shortest path from such a root (shortest first); dominator_chain is the
    chain of objects that must all go for it to go, top first, itself last."""

    target: Optional[Address]
    reachable: Optional[bool]
    by_root_kind: tuple[RetentionPath, ...]
    dominator_chain: tuple[ChainLink, ...]


@dataclass(frozen=True)
class HolderGroup:
    """Instances of a type held by one object (holder: the nearest object
    above them in the dominator tree that dominates two or more of them, or
    the head of a linked list of such objects). holder None: instances each
    held on their own by roots of roots[0].kind. size: the instances'
    shallow sizes; retained: what would go if they all went. chain: the
    dominator chain from the top of the tree to the holder; roots: the roots
    of its top."""

    holder: Optional[Address]
    holder_type: Optional[str]
    holder_retained: Optional[ByteSize]
    count: Optional[int]
    size: Optional[ByteSize]
    retained: Optional[ByteSize]
    roots: tuple[RootRef, ...]
    chain: tuple[ChainLink, ...]


@dataclass(frozen=True)
class InstanceHolders:
    """The instances of one type grouped by what holds them, largest group first."""

    method_table: Optional[Address]
    name: Optional[str]
    count: Optional[int]
    reachable_count: Optional[int]
    size: Optional[ByteSize]
    reachable_bytes: Optional[ByteSize]
    total_groups: Optional[int]
    groups: tuple[HolderGroup, ...]


def from_json(cls: type[R], data: object) -> R:
    """Builds result `cls` from the engine's JSON, field by field, with the
    semantic types (Address, ByteSize) its annotations name. Unknown keys are
    ignored; missing or null ones become None (or () for tuples)."""
    if not isinstance(data, dict):
        raise ValueError(
            f"{cls.__name__}: expected an object, got {type(data).__name__}"
        )
    values = {name: _convert(hint, data.get(name)) for name, hint in _fields(cls)}
    return cls(**values)


# Each result type's fields with their annotations, resolved once per type:
# resolving them was most of the work, and a page holds hundreds of items of
# one type. Two threads filling one entry at once store the same value.
_FIELDS: dict[type, tuple[tuple[str, Any], ...]] = {}


def _fields(cls: type) -> tuple[tuple[str, Any], ...]:
    known = _FIELDS.get(cls)
    if known is None:
        hints = typing.get_type_hints(cls)
        known = tuple((f.name, hints[f.name]) for f in dataclasses.fields(cls))
        _FIELDS[cls] = known
    return known


def _convert(hint: Any, value: Any) -> Any:
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        inner = [a for a in typing.get_args(hint) if a is not NoneType]
        return None if value is None else _convert(inner[0], value)
    if origin is tuple:
        if value is None:
            return ()
        item = typing.get_args(hint)[0]
        return tuple(_convert(item, v) for v in value)
    if value is None:
        return None
    if dataclasses.is_dataclass(hint):
        return from_json(hint, value)
    if _is_enum(hint):
        return _member(hint, value)
    if hint in (Address, ByteSize):
        return hint(int(value))
    if hint is float:
        return float(value)
    if hint in (int, str, bool) and not isinstance(value, hint):
        raise ValueError(f"expected {hint.__name__}, got {value!r}")
    return value


def _is_enum(hint: Any) -> bool:
    return isinstance(hint, type) and issubclass(hint, enum.Enum)


def _member(enum_type: type[enum.Enum], value: Any) -> Any:
    """The member named by a wire value; a word this client does not know
    maps to the enum's catch-all member (OTHER, UNKNOWN) where it has one."""
    try:
        return typing.cast(Any, enum_type)(value)
    except ValueError:
        for fallback in ("OTHER", "UNKNOWN"):
            if fallback in enum_type.__members__:
                return enum_type.__members__[fallback]
        raise ValueError(f"{enum_type.__name__}: unknown value {value!r}") from None
