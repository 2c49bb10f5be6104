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

Percent of busy leaves Free out and is the figure to read; percent of total
is of busy plus free, which on a 64-bit process is 128 TB of mostly free user
space (so every busy row reads near 0 %): `percent_total_of` says what the
total is.

A Windows minidump without a MemoryInfoList stream describes only the bytes
it holds; the module list still says where each image is mapped, so those
ranges are Image (state commit: an image view is committed whole), in the
dump or not.

The free space: its largest block and how fragmented it is (the share of free
bytes outside the largest block). A 32-bit process also has a limit (2 GB;
3 GB on 32-bit Windows booted with /3GB; 4 GB on 64-bit Windows; the last two
only when the main module's PE header is LARGEADDRESSAWARE), against which
its used space is what runs out.
"""

from __future__ import annotations

import bisect
import heapq
import struct
from dataclasses import replace
from typing import Callable, Mapping, Optional, Sequence, TypeVar, Union

from analysis.dumpfile.base import MemoryNotInDump, MemoryReader, Module, Region
from analysis.model.native import (
    AddressSpace,
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
from analysis.values import Address, ByteSize, NotApplicable, Unknown, human_size

FREE = "Free"
NOT_IN_DUMP = "Not in dump"
KUSER_SHARED_DATA = 0x7FFE0000
# Highest user-space address + 1 of a Linux process (TASK_SIZE).
LINUX_USER_TOP = {"x64": 0x7FFF_FFFF_F000, "arm64": 1 << 48, "x86": 0xC000_0000}

_PAGE = 0x1000
GB = 1 << 30
# The user address space of a 32-bit process: 2 GB, 3 GB (32-bit Windows with
# /3GB, LARGEADDRESSAWARE), 4 GB (64-bit Windows, LARGEADDRESSAWARE).
_LIMITS_32 = (2 * GB, 3 * GB, 4 * GB)
# IMAGE_FILE_HEADER.Characteristics bit.
IMAGE_FILE_LARGE_ADDRESS_AWARE = 0x20
# Windows 11 (build 22000 and later) exists only as a 64-bit system.
_FIRST_64_BIT_ONLY_BUILD = 22000
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
        if not _describes_types(regions):
            regions = _with_module_images(regions, reader.modules())
        pieces = _classify_windows(reader, regions, heaps, gc_ranges, teb_peb)
    return _summary(pieces, _address_space(reader, regions, pieces))


# -- shared ---------------------------------------------------------------------


# (usage, piece, the region the piece was cut from)
Piece = tuple[str, Region, Region]


class _Ranges:
    """Labelled, possibly overlapping byte ranges; the first label added wins.

    Cutting goes through the ranges flattened once into disjoint labelled
    spans, so a dump with many regions and many ranges (threads, large
    blocks) costs n log n, not regions times ranges."""

    def __init__(self) -> None:
        self._items: list[tuple[int, int, str]] = []
        self._spans: Optional[list[tuple[int, int, str]]] = None
        self._span_starts: list[int] = []

    def add(self, start: int, end: int, label: str) -> None:
        if end > start:
            self._items.append((start, end, label))
            self._spans = None

    def _flatten(self) -> list[tuple[int, int, str]]:
        """Disjoint (start, end, label) spans in address order, each byte
        labelled by the first range added that covers it."""
        order = sorted(range(len(self._items)), key=lambda i: self._items[i][0])
        points = sorted({p for s, e, _ in self._items for p in (s, e)})
        active: list[tuple[int, int]] = []  # (insertion index, end)
        spans: list[tuple[int, int, str]] = []
        k = 0
        for a, b in zip(points, points[1:]):
            while k < len(order) and self._items[order[k]][0] <= a:
                heapq.heappush(active, (order[k], self._items[order[k]][1]))
                k += 1
            while active and active[0][1] <= a:
                heapq.heappop(active)
            if not active:
                continue
            label = self._items[active[0][0]][2]
            if spans and spans[-1][1] == a and spans[-1][2] == label:
                spans[-1] = (spans[-1][0], b, label)
            else:
                spans.append((a, b, label))
        return spans

    def cut(self, region: Region, fallback: str) -> list[Piece]:
        """The region split into labelled pieces (unlabelled bytes: fallback)."""
        if self._spans is None:
            self._spans = self._flatten()
            self._span_starts = [s for s, _, _ in self._spans]
        lo, hi = int(region.base), int(region.base) + int(region.size)
        i = max(bisect.bisect_right(self._span_starts, lo) - 1, 0)
        spans: list[tuple[str, int, int]] = []

        def emit(label: str, a: int, b: int) -> None:
            if spans and spans[-1][0] == label and spans[-1][2] == a:
                spans[-1] = (label, spans[-1][1], b)
            else:
                spans.append((label, a, b))

        cursor = lo
        while i < len(self._spans) and self._spans[i][0] < hi:
            s, e, label = self._spans[i]
            i += 1
            if e <= cursor:
                continue
            if s > cursor:
                emit(fallback, cursor, s)
            emit(label, max(s, cursor), min(e, hi))
            cursor = min(e, hi)
        if cursor < hi:
            emit(fallback, cursor, hi)
        if len(spans) == 1:
            return [(spans[0][0], region, region)]
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


def _summary(pieces: Sequence[Piece], space: AddressSpace) -> AddressSummary:
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
        percent_total_of=(
            f"busy + free: the {human_size(total)} of address space the dump "
            "describes"
            if free
            else "busy: the dump describes no free space"
        ),
        space=space,
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


# -- the address space: limit, largest free block, fragmentation ----------------


def _address_space(
    reader: MemoryReader, regions: Sequence[Region], pieces: Sequence[Piece]
) -> AddressSpace:
    bits = 32 if reader.pointer_size == 4 or is_wow64(reader) else 64
    laa: Union[bool, Unknown, NotApplicable]
    limit: Union[ByteSize, Unknown, NotApplicable]
    if bits == 64:
        laa = NotApplicable("a 64-bit process")
        limit, basis = NotApplicable("a 64-bit process"), ""
    elif reader.os != "windows":
        laa = NotApplicable("LARGEADDRESSAWARE is a Windows image flag")
        limit = Unknown(
            "a 32-bit Linux process gets 3 GB under a 32-bit kernel and 4 GB "
            "under a 64-bit one; a core dump does not say which"
        )
        basis = ""
    else:
        laa = large_address_aware(reader)
        limit, basis = _windows_limit_32(reader, regions, laa)
    # Without a known limit a 32-bit process still cannot reach past 4 GB:
    # a WOW64 process dumped by a 64-bit writer has 64-bit regions above.
    top = int(limit) if isinstance(limit, int) else (4 * GB if bits == 32 else None)

    def below_top(region: Region) -> int:
        start, end = int(region.base), int(region.base) + int(region.size)
        return max(0, (end if top is None else min(end, top)) - start)

    used = sum(
        below_top(piece)
        for usage, piece, _ in pieces
        if usage not in (FREE, NOT_IN_DUMP)
    )
    percent_used: Union[float, Unknown, NotApplicable]
    if isinstance(limit, int):
        percent_used = _percent(used, int(limit))
    elif isinstance(limit, Unknown):
        percent_used = Unknown(limit.reason)
    else:
        percent_used = limit

    blocks = _free_blocks([piece for usage, piece, _ in pieces if usage == FREE], top)
    free: Union[ByteSize, Unknown]
    largest: Union[Region, Unknown]
    fragmentation: Union[float, Unknown]
    if reader.os == "windows" and not any(r.state == "free" for r in regions):
        why = "the dump describes no free space (it has no memory-info list)"
        free, largest, fragmentation = Unknown(why), Unknown(why), Unknown(why)
    else:
        total_free = sum(int(b.size) for b in blocks)
        free = ByteSize(total_free)
        if blocks:
            largest = max(blocks, key=lambda b: int(b.size))
            fragmentation = 100.0 - _percent(int(largest.size), total_free)
        else:
            largest = Unknown("no free space at all")
            fragmentation = 0.0
    return AddressSpace(
        bits=bits,
        limit=limit,
        limit_basis=basis,
        large_address_aware=laa,
        used=ByteSize(used),
        percent_used=percent_used,
        free=free,
        largest_free=largest,
        fragmentation=fragmentation,
    )


def _free_blocks(free: Sequence[Region], top: Optional[int]) -> list[Region]:
    """Free regions clipped below top, adjacent ones joined (an allocation
    can span them)."""
    blocks: list[Region] = []
    for region in sorted(free, key=lambda r: int(r.base)):
        start, end = int(region.base), int(region.base) + int(region.size)
        if top is not None:
            end = min(end, top)
        if end <= start:
            continue
        if blocks and int(blocks[-1].base) + int(blocks[-1].size) == start:
            last = blocks.pop()
            start = int(last.base)
        blocks.append(
            _free_region(start, end - start)
            if (start, end) != (int(region.base), int(region.base) + int(region.size))
            else region
        )
    return blocks


def large_address_aware(reader: MemoryReader) -> Union[bool, Unknown]:
    """IMAGE_FILE_LARGE_ADDRESS_AWARE in the main module's PE file header
    (the module list's first .exe: writers list the executable first, but a
    WOW64 dump may put 64-bit DLLs before it)."""
    modules = reader.modules()
    if not modules:
        return Unknown("the dump lists no modules")
    exes = [m for m in modules if (m.path or m.name).lower().endswith(".exe")]
    main = (exes or list(modules))[0]
    base = int(main.base)
    try:
        dos = reader.read(base, 0x40)
        if dos[:2] != b"MZ":
            return Unknown(f"{main.name} at 0x{base:x} does not start with MZ")
        nt = int(struct.unpack_from("<I", dos, 0x3C)[0])
        if not 0 < nt < 0x1000:
            return Unknown(f"{main.name}: e_lfanew 0x{nt:x} is implausible")
        head = reader.read(base + nt, 24)
    except MemoryNotInDump:
        return Unknown(f"the PE header of {main.name} is not in the dump")
    if head[:4] != b"PE\0\0":
        return Unknown(f"{main.name}: no PE signature at +0x{nt:x}")
    # IMAGE_NT_HEADERS: Signature (4), IMAGE_FILE_HEADER.Characteristics at +18.
    characteristics = int(struct.unpack_from("<H", head, 4 + 18)[0])
    return bool(characteristics & IMAGE_FILE_LARGE_ADDRESS_AWARE)


def windows_is_64_bit(
    reader: MemoryReader, regions: Sequence[Region]
) -> tuple[Union[bool, Unknown], str]:
    """Whether the dumped 32-bit process ran on 64-bit Windows, and why we
    think so."""
    if is_wow64(reader):
        return True, "a 64-bit writer dumped this WOW64 process"
    if any("\\syswow64\\" in (m.path or "").lower() for m in reader.modules()):
        return True, "its system modules load from SysWOW64"
    build = _os_build(reader)
    if build is not None and build >= _FIRST_64_BIT_ONLY_BUILD:
        return True, f"Windows build {build} exists only as a 64-bit system"
    busy_top = max(
        (int(r.base) + int(r.size) for r in regions if r.state != "free"), default=0
    )
    if busy_top > 3 * GB:
        return True, f"memory is in use up to 0x{busy_top:x}, past 3 GB"
    return Unknown("no module, build number or address tells"), ""


def _os_build(reader: MemoryReader) -> Optional[int]:
    system_info = getattr(reader, "system_info", None)
    info = system_info() if callable(system_info) else None
    build = getattr(info, "os_build", None)
    return build if isinstance(build, int) else None


def _windows_limit_32(
    reader: MemoryReader, regions: Sequence[Region], laa: Union[bool, Unknown]
) -> tuple[Union[ByteSize, Unknown], str]:
    """A memory-info list that describes free space ends at the top of the
    user space (rounded up to 64 KB: the last 64 KB are never mapped);
    otherwise the LARGEADDRESSAWARE flag and the Windows bitness tell."""
    if not is_wow64(reader) and any(r.state == "free" for r in regions):
        top = max(int(r.base) + int(r.size) for r in regions)
        top = -(-top // 0x10000) * 0x10000
        fits = [limit for limit in _LIMITS_32 if top <= limit]
        if fits:
            return (
                ByteSize(fits[0]),
                f"the memory-info list describes the address space up to 0x{top:x}",
            )
    os64, why = windows_is_64_bit(reader, regions)
    if laa is False:
        return ByteSize(2 * GB), "the main module is not LARGEADDRESSAWARE"
    if laa is True and os64 is True:
        return ByteSize(4 * GB), f"LARGEADDRESSAWARE on 64-bit Windows ({why})"
    if laa is True:
        return (
            Unknown(
                "LARGEADDRESSAWARE: 4 GB on 64-bit Windows, 3 GB on 32-bit "
                "Windows booted with /3GB, else 2 GB; the dump does not say "
                "which Windows it came from"
            ),
            "",
        )
    assert isinstance(laa, Unknown)
    return (
        Unknown(
            f"2 GB, or {'4' if os64 is True else '3 or 4'} GB if the main module "
            f"is LARGEADDRESSAWARE ({laa.reason})"
        ),
        "",
    )


def _describes_types(regions: Sequence[Region]) -> bool:
    """False for a minidump without a MemoryInfoList: its regions are only the
    memory ranges it holds, of no known type."""
    return any(r.type is not None or r.state == "free" for r in regions)


def _with_module_images(
    regions: list[Region], modules: Sequence[Module]
) -> list[Region]:
    """The regions plus the bytes of each module image that no region holds,
    as image regions not in the dump."""
    covered = sorted((int(r.base), int(r.base) + int(r.size)) for r in regions)
    added: list[Region] = []
    for module in modules:
        start = int(module.base) // _PAGE * _PAGE
        end = -(-(int(module.base) + int(module.size)) // _PAGE) * _PAGE
        cursor = start
        for lo, hi in covered:
            if hi <= cursor:
                continue
            if lo >= end:
                break
            if lo > cursor:
                added.append(_image_region(module, cursor, lo))
            cursor = max(cursor, hi)
        if cursor < end:
            added.append(_image_region(module, cursor, end))
    return sorted(regions + added, key=lambda r: int(r.base))


def _image_region(module: Module, start: int, end: int) -> Region:
    return Region(
        Address(start),
        ByteSize(end - start),
        "commit",
        "image",
        None,
        allocation_base=Address(int(module.base)),
        path=module.path,
        in_dump=False,
    )


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

    # First added wins: module images, TEB/PEB pages, stacks, heaps, Other,
    # GC ranges. Module ranges matter only without a memory-info list (the
    # code bytes a minidump keeps around each instruction pointer).
    for module in reader.modules():
        ranges.add(int(module.base), int(module.base) + int(module.size), "Image")
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
