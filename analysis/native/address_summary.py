"""Where the address space went: the `!address -summary` view, for Windows
minidumps and Linux core dumps alike.

Every region the reader describes is classified by usage; where a usage is
known by byte range (a heap segment, a large block, a GC range) the region is
cut into pieces so that a single region holding, say, a thread stack and the
mmapped chunks glibc placed right after it is counted as both.

Windows (the FIELD-NOTES recipe): Image = MEM_IMAGE; TEB and PEB = their
pages; Stack = every region of the allocation that holds a thread's stack;
Heap = every region of the allocations holding the heaps' segments, large
blocks and LFH front end; Other = KUSER_SHARED_DATA (0x7ffe0000) and the allocations the PEB
points at (API set map, read-only shared memory, NLS tables, GDI handle table,
activation contexts); the rest of the busy space is Unknown. A WOW64 process
dumped by a 64-bit writer splits them as WinDbg does: TEB64/TEB32,
PEB64/PEB32, Stack64/Stack32 (the TEB32's stack), Heap64/Heap32 (the PEB32's
heaps).

Linux: Image (files with an executable mapping), Mapped file, Stack (each
thread's [stack limit, stack base), or the region holding its stack pointer,
or `[stack]`), Heap (glibc arenas and mmapped chunks), GC heap (the engine's
ranges), Anonymous; Free is the rest of the user address space, which a core
dump does not describe. Busy is exactly what the PT_LOAD segments cover: a
file mapping that NT_FILE lists but no PT_LOAD holds (createdump leaves most
image pages out of a heap dump) is "Not in dump": neither busy nor free, in
no table, its total in `not_in_dump`.

Percent of busy leaves Free out; percent of total is of busy plus free.
"""

from __future__ import annotations

import bisect
import struct
from dataclasses import replace
from typing import Callable, Mapping, Optional, Sequence, TypeVar

from analysis.dumpfile.base import MemoryNotInDump, MemoryReader, Region
from analysis.model.native import (
    AddressSummary,
    NativeHeap,
    ProtectRow,
    StateRow,
    TypeRow,
    UsageRow,
)
from analysis.native.nt_heap import (
    front_end_heap,
    peb_address,
    process_heap_addresses,
    wow64_peb32,
)
from analysis.native.teb import is_wow64, peb_layout, read_teb, teb_layout
from analysis.values import Address, ByteSize

FREE = "Free"
NOT_IN_DUMP = "Not in dump"
KUSER_SHARED_DATA = 0x7FFE0000
# Highest user-space address + 1 of a Linux process (TASK_SIZE).
LINUX_USER_TOP = {"x64": 0x7FFF_FFFF_F000, "arm64": 1 << 48, "x86": 0xC000_0000}

_PAGE = 0x1000
# sizeof(TEB): 0xfe8 (x86), 0x1838 (x64).
_TEB_BYTES = {4: 0xFE8, 8: 0x1838}


def summarize(
    reader: MemoryReader,
    heaps: Sequence[NativeHeap] = (),
    gc_ranges: Sequence[tuple[int, int]] = (),
    teb_peb: Sequence[tuple[str, int]] = (),
) -> AddressSummary:
    """heaps: from find_native_heaps (none given: no Heap usage); gc_ranges:
    (start, end) of the GC heap's segments from the engine (the "GC heap"
    usage, carved from what would be Unknown/Anonymous); teb_peb: more
    (usage, address) pages to label (Windows), beside the TEBs and PEBs
    found here."""
    regions = sorted(reader.regions(), key=lambda r: int(r.base))
    if reader.os == "linux":
        regions = _with_linux_free_space(regions, reader.arch)
        pieces = _classify_linux(reader, regions, heaps, gc_ranges)
    else:
        pieces = _classify_windows(reader, regions, heaps, gc_ranges, teb_peb)
    return _summary(pieces)


# -- shared ---------------------------------------------------------------------


# (usage, piece, the region the piece was cut from)
Piece = tuple[str, Region, Region]


class _Ranges:
    """Labelled, possibly overlapping byte ranges; the first label added wins."""

    def __init__(self) -> None:
        self._items: list[tuple[int, int, str]] = []

    def add(self, start: int, end: int, label: str) -> None:
        if end > start:
            self._items.append((start, end, label))

    def cut(self, region: Region, fallback: str) -> list[Piece]:
        """The region split into labelled pieces (unlabelled bytes: fallback)."""
        lo, hi = int(region.base), int(region.base) + int(region.size)
        hits = [(s, e, lab) for s, e, lab in self._items if s < hi and e > lo]
        if not hits:
            return [(fallback, region, region)]
        bounds = {lo, hi}
        for s, e, _ in hits:
            bounds.update(b for b in (s, e) if lo < b < hi)
        spans: list[tuple[str, int, int]] = []
        edges = sorted(bounds)
        for a, b in zip(edges, edges[1:]):
            label = next((lab for s, e, lab in hits if s <= a < e), fallback)
            if spans and spans[-1][0] == label:
                spans[-1] = (label, spans[-1][1], b)
            else:
                spans.append((label, a, b))
        return [(label, _piece(region, a, b), region) for label, a, b in spans]


def _piece(region: Region, start: int, end: int) -> Region:
    if start == int(region.base) and end == int(region.base) + int(region.size):
        return region
    return replace(region, base=Address(start), size=ByteSize(end - start))


def _containing(
    regions: Sequence[Region], starts: list[int], address: int
) -> Optional[Region]:
    i = bisect.bisect_right(starts, address) - 1
    if i >= 0 and address < int(regions[i].base) + int(regions[i].size):
        return regions[i]
    return None


def _percent(part: int, whole: int) -> float:
    return 100.0 * part / whole if whole else 0.0


Row = TypeVar("Row", UsageRow, StateRow, TypeRow, ProtectRow)


def _table(
    groups: Mapping[str, list[Region]],
    busy: int,
    total: int,
    row_type: Callable[[str, int, ByteSize, Optional[float], float], Row],
    not_busy: Sequence[str],
) -> tuple[Row, ...]:
    rows = []
    for key, members in groups.items():
        size = sum(int(r.size) for r in members)
        busy_share = None if key in not_busy else _percent(size, busy)
        rows.append(
            row_type(
                key, len(members), ByteSize(size), busy_share, _percent(size, total)
            )
        )
    rows.sort(key=lambda r: int(r.bytes), reverse=True)
    return tuple(rows)


def _summary(pieces: Sequence[Piece]) -> AddressSummary:
    by_usage: dict[str, list[Region]] = {}
    busy = free = 0
    for usage, piece, _ in pieces:
        by_usage.setdefault(usage, []).append(piece)
        if usage == FREE:
            free += int(piece.size)
        elif usage != NOT_IN_DUMP:
            busy += int(piece.size)
    outside = by_usage.pop(NOT_IN_DUMP, [])
    # State, type and protect count whole regions, as the reader gave them.
    originals = list(
        {
            id(original): original
            for usage, _, original in pieces
            if usage != NOT_IN_DUMP
        }.values()
    )
    by_state: dict[str, list[Region]] = {}
    by_type: dict[str, list[Region]] = {}
    by_protect: dict[str, list[Region]] = {}
    for region in originals:
        by_state.setdefault(region.state, []).append(region)
        if region.state != "free":
            by_type.setdefault(region.type or "none", []).append(region)
        if region.state == "commit":
            by_protect.setdefault(region.protect or "none", []).append(region)
    total = busy + free
    return AddressSummary(
        usage=_table(by_usage, busy, total, UsageRow, (FREE,)),
        state=_table(by_state, busy, total, StateRow, ("free",)),
        type=_table(by_type, busy, total, TypeRow, ()),
        protect=_table(by_protect, busy, total, ProtectRow, ()),
        busy=ByteSize(busy),
        free=ByteSize(free),
        total=ByteSize(total),
        not_in_dump=ByteSize(sum(int(r.size) for r in outside)),
        regions_by_usage={
            **{k: tuple(v) for k, v in by_usage.items()},
            **({NOT_IN_DUMP: tuple(outside)} if outside else {}),
        },
        regions_by_state={k: tuple(v) for k, v in by_state.items()},
        regions_by_type={k: tuple(v) for k, v in by_type.items()},
        regions_by_protect={k: tuple(v) for k, v in by_protect.items()},
    )


def _heap_ranges(
    ranges: _Ranges,
    heaps: Sequence[NativeHeap],
    allocations: Optional[_Allocations] = None,
    label_of: Callable[[NativeHeap], str] = lambda heap: "Heap",
) -> None:
    """Heap bytes: segment reservations and large blocks; on Windows the whole
    allocations holding them and the heap's own (even when its header is not
    in the dump)."""
    for heap in heaps:
        label = label_of(heap)
        extents = [
            (int(s.address), int(s.address) + int(s.reserved)) for s in heap.segments
        ]
        extents += [
            (int(b.address), int(b.address) + int(b.size)) for b in heap.large_blocks
        ]
        if allocations is not None:
            extents.append((int(heap.address), int(heap.address) + 1))
        for start, end in extents:
            if allocations is not None:
                for address in (start, end - 1):
                    extent = allocations.of(address)
                    if extent:
                        ranges.add(*extent, label)
            ranges.add(start, end, label)


def _gc_ranges(ranges: _Ranges, gc_ranges: Sequence[tuple[int, int]]) -> None:
    for start, end in gc_ranges:
        ranges.add(int(start), int(end), "GC heap")


# -- Windows --------------------------------------------------------------------


class _Allocations:
    """Regions grouped by the VirtualAlloc reservation they belong to."""

    def __init__(self, regions: Sequence[Region]) -> None:
        self.regions = regions
        self.starts = [int(r.base) for r in regions]
        self.extent: dict[int, tuple[int, int]] = {}
        for r in regions:
            if r.state == "free":
                continue
            key = int(r.allocation_base if r.allocation_base is not None else r.base)
            lo, hi = self.extent.get(key, (int(r.base), int(r.base) + int(r.size)))
            self.extent[key] = (
                min(lo, int(r.base)),
                max(hi, int(r.base) + int(r.size)),
            )

    def of(self, address: int) -> Optional[tuple[int, int]]:
        region = _containing(self.regions, self.starts, address)
        if region is None or region.state == "free":
            return None
        key = int(
            region.allocation_base
            if region.allocation_base is not None
            else region.base
        )
        return self.extent.get(key)


def _read_pointer(reader: MemoryReader, address: int, size: int) -> Optional[int]:
    try:
        raw = reader.read(address, size)
    except MemoryNotInDump:
        return None
    return int(struct.unpack("<I" if size == 4 else "<Q", raw)[0])


def _classify_windows(
    reader: MemoryReader,
    regions: list[Region],
    heaps: Sequence[NativeHeap],
    gc_ranges: Sequence[tuple[int, int]],
    teb_peb: Sequence[tuple[str, int]],
) -> list[Piece]:
    allocations = _Allocations(regions)
    ranges = _Ranges()
    # A WOW64 process has two of each: the native (64) and the WOW64 (32) ones.
    wow64 = is_wow64(reader)
    native, wow = ("64", "32") if wow64 else ("", "")
    ps = reader.pointer_size
    teb32s = [read_teb(reader, t) for t in reader.threads()] if wow64 else []
    peb = peb_address(reader)
    peb32 = wow64_peb32(reader) if wow64 else None

    # First added wins: TEB/PEB pages, stacks, heaps, Other, GC ranges.
    # Windows 10+ puts the PEB and the TEBs in one allocation: count pages.
    pages = [
        ("TEB" + native, int(t.teb), _TEB_BYTES[ps]) for t in reader.threads() if t.teb
    ]
    pages += [
        ("TEB32", int(t.address), _TEB_BYTES[4])
        for t in teb32s
        if t.wow64 and isinstance(t.address, int)
    ]
    pages += [("PEB" + native, peb, _PAGE)] if peb else []
    pages += [("PEB32", peb32, _PAGE)] if peb32 else []
    pages += [(label, address, _PAGE) for label, address in teb_peb]
    for label, address, size in pages:
        ranges.add(
            address // _PAGE * _PAGE, -(-(address + size) // _PAGE) * _PAGE, label
        )

    stacks: list[tuple[str, int]] = []
    for thread in reader.threads():
        anchors = [int(a) for a in (thread.stack_pointer, thread.stack_limit) if a]
        if thread.stack_base:
            anchors.append(int(thread.stack_base) - 1)
        if thread.teb:
            anchors += [
                value
                for value in (
                    _read_pointer(reader, int(thread.teb) + o, ps)
                    # Inside the stack allocation (StackBase is one past its
                    # end, often the start of the next allocation).
                    for o in (
                        teb_layout(ps).stack_limit,
                        teb_layout(ps).deallocation_stack,
                    )
                )
                if value
            ]
        stacks += [("Stack" + native, a) for a in anchors]
    for teb32 in teb32s:
        for value in (teb32.stack_limit, teb32.deallocation_stack):
            if isinstance(value, int) and value:
                stacks.append(("Stack32", int(value)))
    for label, anchor in stacks:
        extent = allocations.of(anchor)
        if extent:
            ranges.add(*extent, label)

    heaps32 = set(process_heap_addresses(reader, wow64=True)[0]) if wow64 else set()

    def heap_label(heap: NativeHeap) -> str:
        return "Heap" + (wow if int(heap.address) in heaps32 else native)

    _heap_ranges(ranges, heaps, allocations, heap_label)
    for heap in heaps:
        if heap.lfh:
            lfh = front_end_heap(
                reader, int(heap.address), wow64=int(heap.address) in heaps32
            )
            extent = allocations.of(lfh) if lfh else None
            if extent:
                ranges.add(*extent, heap_label(heap))

    others = [KUSER_SHARED_DATA]
    for base, size in ((peb, ps), (peb32, 4)):
        if base:
            pointers = (
                _read_pointer(reader, base + o, size)
                for o in peb_layout(size).other_pointers
            )
            others += [p for p in pointers if p]
    for address in others:
        extent = allocations.of(address)
        if extent:
            ranges.add(*extent, "Other")
    _gc_ranges(ranges, gc_ranges)

    pieces: list[Piece] = []
    for region in regions:
        if region.state == "free":
            pieces.append((FREE, region, region))
        elif region.type == "image":
            pieces.append(("Image", region, region))
        else:
            pieces += ranges.cut(region, "Unknown")
    return pieces


# -- Linux ----------------------------------------------------------------------


def _with_linux_free_space(regions: list[Region], arch: str) -> list[Region]:
    """The regions plus the gaps between them below the user-space top, as
    free regions (a core dump describes only what is mapped)."""
    top = LINUX_USER_TOP.get(arch, LINUX_USER_TOP["x64"])
    out: list[Region] = []
    cursor = 0
    for region in regions:
        base = int(region.base)
        if cursor < base and cursor < top:
            gap_end = min(base, top)
            out.append(_free_region(cursor, gap_end - cursor))
        out.append(region)
        cursor = max(cursor, base + int(region.size))
    if cursor < top:
        out.append(_free_region(cursor, top - cursor))
    return out


def _free_region(base: int, size: int) -> Region:
    return Region(Address(base), ByteSize(size), "free", None, None, in_dump=False)


def _classify_linux(
    reader: MemoryReader,
    regions: list[Region],
    heaps: Sequence[NativeHeap],
    gc_ranges: Sequence[tuple[int, int]],
) -> list[Piece]:
    ranges = _Ranges()
    # First added wins: GC heap, native heaps, then thread stacks.
    _gc_ranges(ranges, gc_ranges)
    _heap_ranges(ranges, heaps)
    starts = [int(r.base) for r in regions]
    for thread in reader.threads():
        if thread.stack_limit and thread.stack_base:
            ranges.add(int(thread.stack_limit), int(thread.stack_base), "Stack")
        elif thread.stack_pointer:
            region = _containing(regions, starts, int(thread.stack_pointer))
            if region is not None:
                ranges.add(
                    int(region.base), int(region.base) + int(region.size), "Stack"
                )
    module_paths = {m.path for m in reader.modules() if m.path}

    pieces: list[Piece] = []
    for region in regions:
        path = region.path or ""
        if region.state == "free":
            pieces.append((FREE, region, region))
        elif region.protect is None and not region.in_dump:
            # A file mapping NT_FILE lists but no PT_LOAD covers.
            pieces.append((NOT_IN_DUMP, region, region))
        elif region.type == "image" or (path and path in module_paths):
            pieces.append(("Image", region, region))
        elif region.type == "mapped" or (path and not path.startswith("[")):
            pieces.append(("Mapped file", region, region))
        elif path == "[stack]":
            pieces += ranges.cut(region, "Stack")
        elif path == "[heap]":
            pieces.append(("Heap", region, region))
        else:
            pieces += ranges.cut(region, "Anonymous")
    return pieces
