"""Windows NT heap walker, without symbols (x86 and x64, Windows 7 to 11).

The heaps are PEB.ProcessHeaps. Each heap starts with a _HEAP_SEGMENT whose
SegmentSignature (u32 at +8 x86 / +10 x64) tells an NT heap (0xffeeffee) from
a segment heap (0xddeeddee). The _HEAP fields after the segment moved between
Windows versions; the position of _HEAP.Signature (0xeeffeeff) tells which
layout a heap uses. Offsets: /work/shared/docs/FIELD-NOTES.md "NT heap",
cross-checked against published `dt ntdll!_HEAP` listings.

Per NT heap this reads: the segments (SegmentList: reserved = NumberOfPages,
committed = reserved minus NumberOfUnCommittedPages), the large blocks served
by VirtualAlloc (VirtualAllocdBlocks: CommitSize of each), TotalFreeSize and
whether the low-fragmentation front end is on. Heap entries are not walked.
Whatever cannot be read becomes a problem on the heap's row; nothing raises.

A WOW64 process dumped by a 64-bit writer has two heap lists: its PEB64's
(64-bit ntdll heaps) and its PEB32's (the heaps the program uses); both are
walked, each with its own layout. Left out: the insides of segment heaps (their
layout changes with every Windows 10 release; the row shows the allocation
that holds the segment heap's header).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, replace
from typing import Optional

from analysis.dumpfile.base import MemoryNotInDump, MemoryReader
from analysis.model.native import HeapSegment, LargeBlock, NativeHeap
from analysis.native.teb import is_wow64, peb_layout, teb_layout
from analysis.native.teb import peb_address as teb_peb_address
from analysis.model.vocab import HeapKind
from analysis.values import Address, ByteSize, Unknown

PAGE = 0x1000
SEGMENT_SIGNATURE = 0xFFEEFFEE
HEAP_SIGNATURE = 0xEEFFEEFF
SEGMENT_HEAP_SIGNATURE = 0xDDEEDDEE
LFH_FRONT_END = 2
WINDOWS_10_FIRST_BUILD = 10240
MAX_LISTED_BAD_BLOCKS = 10


@dataclass(frozen=True)
class Limits:
    """Bounds against corrupt lists; real processes stay far below them."""

    max_heaps: int = 1024
    max_segments: int = 4096
    max_large_blocks: int = 1_000_000
    # All list entries of all heaps of a dump: damaged heaps whose lists run
    # into each other must not multiply the per-heap bounds by the heap count.
    max_list_entries: int = 2_000_000
    # No single block or segment of a real process reaches 1 TB.
    max_block_bytes: int = 1 << 40


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True)
class _Bitness:
    pointer_size: int
    segment_signature: int
    segment_list_entry: int
    segment_heap: int
    segment_base: int
    segment_pages: int
    segment_uncommitted_pages: int
    va_commit: int
    va_reserve: int


_X86 = _Bitness(
    pointer_size=4,
    segment_signature=0x8,
    segment_list_entry=0x10,
    segment_heap=0x18,
    segment_base=0x1C,
    segment_pages=0x20,
    segment_uncommitted_pages=0x2C,
    va_commit=0x10,
    va_reserve=0x14,
)
_X64 = _Bitness(
    pointer_size=8,
    segment_signature=0x10,
    segment_list_entry=0x18,
    segment_heap=0x28,
    segment_base=0x30,
    segment_pages=0x38,
    segment_uncommitted_pages=0x50,
    va_commit=0x20,
    va_reserve=0x28,
)


@dataclass(frozen=True)
class _HeapLayout:
    """_HEAP offsets of one Windows generation; front_ends: (FrontEndHeap,
    FrontEndHeapType) candidates, newest build first."""

    signature: int
    total_free: int
    virtual_allocd: int
    segment_list: int
    front_ends: tuple[tuple[int, int], ...]


# Windows 8 to 11 share everything up to the front end, which Windows 10 moved
# (CommitLimitData came in before it).
_LAYOUTS = {
    4: (
        # Windows 8 to 11, then Windows 7 (PointerKey moved the rest by a pointer).
        _HeapLayout(0x60, 0x74, 0x9C, 0xA4, ((0xE4, 0xEA), (0xD0, 0xD6))),
        _HeapLayout(0x64, 0x78, 0xA0, 0xA8, ((0xD4, 0xDA),)),
    ),
    8: (
        # Windows 8 to 11, then Windows 7.
        _HeapLayout(0x98, 0xC0, 0x110, 0x120, ((0x198, 0x1A2), (0x170, 0x17A))),
        _HeapLayout(0xA0, 0xC8, 0x118, 0x128, ((0x178, 0x182),)),
    ),
}


class _Memory:
    """Typed reads for one process bitness."""

    def __init__(self, reader: MemoryReader, bits: _Bitness) -> None:
        self.reader = reader
        self.bits = bits
        self._fmt = "<I" if bits.pointer_size == 4 else "<Q"

    def u8(self, address: int) -> int:
        return self.reader.read(address, 1)[0]

    def u16(self, address: int) -> int:
        return int(struct.unpack("<H", self.reader.read(address, 2))[0])

    def u32(self, address: int) -> int:
        return int(struct.unpack("<I", self.reader.read(address, 4))[0])

    def ptr(self, address: int) -> int:
        raw = self.reader.read(address, self.bits.pointer_size)
        return int(struct.unpack(self._fmt, raw)[0])

    def ptrs(self, address: int, count: int) -> tuple[int, ...]:
        raw = self.reader.read(address, count * self.bits.pointer_size)
        fmt = "<%d%s" % (count, self._fmt[1])
        return tuple(int(v) for v in struct.unpack(fmt, raw))


def _bitness(reader: MemoryReader) -> _Bitness:
    return _X86 if reader.pointer_size == 4 else _X64


def peb_address(reader: MemoryReader) -> Optional[int]:
    """TEB.ProcessEnvironmentBlock of the first thread whose TEB is in the
    dump: the native PEB (the PEB64 of a WOW64 process)."""
    mem = _Memory(reader, _bitness(reader))
    for thread in reader.threads():
        if not thread.teb:
            continue
        try:
            peb = mem.ptr(int(thread.teb) + teb_layout(mem.bits.pointer_size).peb)
        except MemoryNotInDump:
            continue
        if peb:
            return peb
    return None


def wow64_peb32(reader: MemoryReader) -> Optional[int]:
    """The PEB32 of a WOW64 process dumped by a 64-bit writer (found through
    the TEB32, see analysis.native.teb); None for any other dump."""
    if not is_wow64(reader):
        return None
    return teb_peb_address(reader)


def process_heap_addresses(
    reader: MemoryReader, limits: Limits = DEFAULT_LIMITS, *, wow64: bool = False
) -> tuple[tuple[int, ...], tuple[str, ...]]:
    """PEB.ProcessHeaps (wow64: the PEB32's), and what stopped us from
    reading it. When the array is not in the dump, PEB.ProcessHeap (the
    default heap) stands alone."""
    peb = wow64_peb32(reader) if wow64 else peb_address(reader)
    if peb is None:
        return (), ("no thread's TEB (with its PEB pointer) is in the dump",)
    mem = _Memory(reader, _X86 if wow64 else _bitness(reader))
    try:
        layout = peb_layout(mem.bits.pointer_size)
        count = mem.u32(peb + layout.number_of_heaps)
        array = mem.ptr(peb + layout.process_heaps)
    except MemoryNotInDump:
        return (), (f"the PEB at 0x{peb:x} is not in the dump",)
    if count > limits.max_heaps:
        return (), (
            f"PEB.NumberOfHeaps is {count}: more than {limits.max_heaps}, not read",
        )
    if count == 0:
        # Wine's PEB, for one, says NumberOfHeaps 0 while its default heap
        # exists: an empty list is not "no heap".
        problem = "PEB.NumberOfHeaps is 0"
    else:
        try:
            return mem.ptrs(array, count), ()
        except MemoryNotInDump:
            problem = (
                f"PEB.ProcessHeaps ({count} pointers at 0x{array:x}) "
                "is not in the dump"
            )
    try:
        default = mem.ptr(peb + peb_layout(mem.bits.pointer_size).process_heap)
    except MemoryNotInDump:
        default = 0
    if not default:
        return (), (problem,)
    return (default,), (problem + ": only PEB.ProcessHeap is listed",)


def _os_build(mem: _Memory, peb: Optional[int]) -> Optional[int]:
    if peb is None:
        return None
    try:
        return mem.u16(peb + peb_layout(mem.bits.pointer_size).os_build)
    except MemoryNotInDump:
        return None


class NoHeapList(Exception):
    """The dump does not say where any of the process's heaps is: not the
    same as a process without heaps."""


def walk_process_heaps(
    reader: MemoryReader, limits: Limits = DEFAULT_LIMITS
) -> tuple[NativeHeap, ...]:
    """One row per PEB.ProcessHeaps entry; a WOW64 process's 32-bit heaps
    (its PEB32's) follow its 64-bit ones. Raises NoHeapList, with why, when
    not even the default heap can be found."""
    heaps: list[NativeHeap] = []
    budget = _Budget(limits.max_list_entries)
    for wow64 in (False, True):
        if wow64 and wow64_peb32(reader) is None:
            continue
        bits = _X86 if wow64 else _bitness(reader)
        addresses, problems = process_heap_addresses(reader, limits, wow64=wow64)
        peb = wow64_peb32(reader) if wow64 else peb_address(reader)
        build = _os_build(_Memory(reader, bits), peb)
        distinct = list(dict.fromkeys(addresses))
        if len(distinct) < len(addresses):
            problems += (
                f"PEB.ProcessHeaps lists {len(addresses)} heaps, of which only "
                f"{len(distinct)} distinct: each walked once",
            )
        walked = [_walk(reader, a, limits, build, bits, budget) for a in distinct]
        if walked and problems:
            walked[0] = replace(walked[0], problems=problems + walked[0].problems)
        elif not walked and not wow64:
            raise NoHeapList("; ".join(problems) or "PEB.ProcessHeaps is empty")
        heaps += walked
    return tuple(heaps)


class _Budget:
    """List entries the walks of one dump may still visit."""

    def __init__(self, entries: int) -> None:
        self.limit = entries
        self.remaining = entries


def _walk(
    reader: MemoryReader,
    address: int,
    limits: Limits,
    os_build: Optional[int],
    bits: _Bitness,
    budget: _Budget,
) -> NativeHeap:
    mem = _Memory(reader, bits)
    try:
        signature = mem.u32(address + mem.bits.segment_signature)
    except MemoryNotInDump:
        return NativeHeap.not_read(
            address, f"the heap header at 0x{address:x} is not in the dump"
        )
    if signature == SEGMENT_HEAP_SIGNATURE:
        return _segment_heap(reader, address)
    if signature != SEGMENT_SIGNATURE:
        return NativeHeap.not_read(
            address,
            f"0x{signature:08x} at 0x{address + mem.bits.segment_signature:x} is neither "
            f"an NT heap (0x{SEGMENT_SIGNATURE:08x}) nor a segment heap "
            f"(0x{SEGMENT_HEAP_SIGNATURE:08x}) signature",
        )
    layout = _find_layout(mem, address)
    if layout is None:
        return NativeHeap.not_read(
            address,
            f"no _HEAP.Signature 0x{HEAP_SIGNATURE:08x} where Windows 7 to 11 put it "
            f"in the heap at 0x{address:x}",
        )
    return _NtHeapWalk(mem, address, layout, limits, os_build, budget).run()


def _find_layout(mem: _Memory, address: int) -> Optional[_HeapLayout]:
    for layout in _LAYOUTS[mem.bits.pointer_size]:
        try:
            if mem.u32(address + layout.signature) == HEAP_SIGNATURE:
                return layout
        except MemoryNotInDump:
            continue
    return None


def _segment_heap(reader: MemoryReader, address: int) -> NativeHeap:
    """A segment heap's row: the reservation holding its header, as regions say."""
    own = [
        r
        for r in reader.regions()
        if r.allocation_base is not None and int(r.allocation_base) == address
    ]
    problem = (
        "segment heap internals are not walked: sizes are those of its first allocation"
    )
    if not own:
        gap = Unknown("no region of the dump belongs to the allocation at this address")
        return NativeHeap(
            Address(address),
            HeapKind.SEGMENT,
            gap,
            gap,
            Unknown(problem),
            (),
            (),
            None,
            (problem,),
        )
    reserved = sum(int(r.size) for r in own if r.state in ("commit", "reserve"))
    committed = sum(int(r.size) for r in own if r.state == "commit")
    return NativeHeap(
        Address(address),
        HeapKind.SEGMENT,
        ByteSize(reserved),
        ByteSize(committed),
        Unknown(problem),
        (HeapSegment(Address(address), ByteSize(reserved), ByteSize(committed)),),
        (),
        None,
        (problem,),
    )


class _NtHeapWalk:
    def __init__(
        self,
        mem: _Memory,
        address: int,
        layout: _HeapLayout,
        limits: Limits,
        os_build: Optional[int],
        budget: _Budget,
    ) -> None:
        self.mem = mem
        self.address = address
        self.layout = layout
        self.limits = limits
        self.os_build = os_build
        self.budget = budget
        self.problems: list[str] = []

    def run(self) -> NativeHeap:
        segments = self._segments()
        blocks, block_reserve = self._large_blocks()
        free = self._free()
        reserved = sum(int(s.reserved) for s in segments) + block_reserve
        committed = sum(int(s.committed) for s in segments) + sum(
            int(b.size) for b in blocks
        )
        return NativeHeap(
            address=Address(self.address),
            kind=HeapKind.NT,
            reserved=ByteSize(reserved),
            committed=ByteSize(committed),
            free=free,
            segments=tuple(segments),
            large_blocks=tuple(blocks),
            lfh=self._lfh(),
            problems=tuple(self.problems),
        )

    def _list(self, head: int, what: str, limit: int) -> list[int]:
        """The nodes of a circular LIST_ENTRY list, following Flink; stops with
        a problem at an unreadable link, a loop, or the limit."""
        nodes: list[int] = []
        seen = {head}
        try:
            node = self.mem.ptr(head)
        except MemoryNotInDump:
            self.problems.append(f"{what} list head at 0x{head:x} is not in the dump")
            return nodes
        while node != head:
            if node in seen:
                self.problems.append(
                    f"{what} list loops back to 0x{node:x}: walk stopped"
                )
                break
            if node == 0:
                self.problems.append(f"{what} list holds a null link: walk stopped")
                break
            if len(nodes) >= limit:
                self.problems.append(f"{what} list longer than {limit}: walk stopped")
                break
            if self.budget.remaining <= 0:
                self.problems.append(
                    f"{what} walk stopped: the heap lists of this dump hold more "
                    f"than {self.budget.limit} entries in all"
                )
                break
            self.budget.remaining -= 1
            seen.add(node)
            nodes.append(node)
            try:
                node = self.mem.ptr(node)
            except MemoryNotInDump:
                self.problems.append(
                    f"{what} entry at 0x{node:x} is not in the dump: walk stopped"
                )
                break
        return nodes

    def _segments(self) -> list[HeapSegment]:
        bits = self.mem.bits
        out: list[HeapSegment] = []
        head = self.address + self.layout.segment_list
        for node in self._list(head, "SegmentList", self.limits.max_segments):
            segment = node - bits.segment_list_entry
            try:
                signature = self.mem.u32(segment + bits.segment_signature)
                owner = self.mem.ptr(segment + bits.segment_heap)
                base = self.mem.ptr(segment + bits.segment_base)
                pages = self.mem.u32(segment + bits.segment_pages)
                uncommitted = self.mem.u32(segment + bits.segment_uncommitted_pages)
            except MemoryNotInDump:
                self.problems.append(
                    f"segment header at 0x{segment:x} is not in the dump"
                )
                continue
            if signature != SEGMENT_SIGNATURE:
                self.problems.append(
                    f"segment at 0x{segment:x} has signature 0x{signature:08x}, "
                    f"not 0x{SEGMENT_SIGNATURE:08x}: skipped"
                )
                continue
            if owner != self.address:
                self.problems.append(
                    f"segment at 0x{segment:x} belongs to heap 0x{owner:x}, not this one: skipped"
                )
                continue
            if uncommitted > pages or pages * PAGE > self.limits.max_block_bytes:
                self.problems.append(
                    f"segment at 0x{segment:x} claims {pages} pages with {uncommitted} "
                    "uncommitted: skipped"
                )
                continue
            out.append(
                HeapSegment(
                    Address(base),
                    ByteSize(pages * PAGE),
                    ByteSize((pages - uncommitted) * PAGE),
                )
            )
        return out

    def _large_blocks(self) -> tuple[list[LargeBlock], int]:
        bits = self.mem.bits
        blocks: list[LargeBlock] = []
        reserve_total = 0
        head = self.address + self.layout.virtual_allocd
        bad: list[str] = []
        for node in self._list(
            head, "VirtualAllocdBlocks", self.limits.max_large_blocks
        ):
            try:
                commit = self.mem.ptr(node + bits.va_commit)
                reserve = self.mem.ptr(node + bits.va_reserve)
            except MemoryNotInDump:
                bad.append(f"large block header at 0x{node:x} is not in the dump")
                continue
            if not 0 < commit <= reserve <= self.limits.max_block_bytes:
                bad.append(
                    f"large block at 0x{node:x} claims CommitSize {commit} and "
                    f"ReserveSize {reserve}: skipped"
                )
                continue
            blocks.append(LargeBlock(Address(node), ByteSize(commit)))
            reserve_total += reserve
        # A damaged list can hold a million bad entries: name the first few.
        self.problems += bad[:MAX_LISTED_BAD_BLOCKS]
        if len(bad) > MAX_LISTED_BAD_BLOCKS:
            self.problems.append(
                f"... and {len(bad) - MAX_LISTED_BAD_BLOCKS} more large blocks "
                "unreadable or implausible: skipped"
            )
        return blocks, reserve_total

    def _free(self) -> ByteSize | Unknown:
        granularity = 2 * self.mem.bits.pointer_size
        try:
            units = self.mem.ptr(self.address + self.layout.total_free)
        except MemoryNotInDump:
            return Unknown("_HEAP.TotalFreeSize is not in the dump")
        return ByteSize(units * granularity)

    def _lfh(self) -> Optional[bool]:
        lfh, _ = _front_end(self.mem, self.address, self.layout, self.os_build)
        if lfh is None:
            self.problems.append(
                "the front-end heap type could not be read unambiguously"
            )
        return lfh


def _front_end(
    mem: _Memory, address: int, layout: _HeapLayout, os_build: Optional[int]
) -> tuple[Optional[bool], int]:
    """(LFH on, FrontEndHeap): FrontEndHeapType == 2 at the offset of this
    Windows build; without the build, the candidates whose FrontEndHeap
    pointer agrees with their type must agree. (None, 0) when they do not."""
    candidates = layout.front_ends
    if len(candidates) > 1 and os_build:
        candidates = (
            candidates[:1] if os_build >= WINDOWS_10_FIRST_BUILD else candidates[1:]
        )
    found = set()
    for front_end_heap, front_end_type in candidates:
        try:
            pointer = mem.ptr(address + front_end_heap)
            kind = mem.u8(address + front_end_type)
        except MemoryNotInDump:
            continue
        if kind in (0, 1, LFH_FRONT_END) and (kind != 0) == (pointer != 0):
            found.add((kind == LFH_FRONT_END, pointer))
    verdicts = {lfh for lfh, _ in found}
    if len(verdicts) != 1:
        return None, 0
    lfh = verdicts.pop()
    pointers = {pointer for on, pointer in found if on}
    return lfh, pointers.pop() if lfh and len(pointers) == 1 else 0


def front_end_heap(reader: MemoryReader, address: int, *, wow64: bool = False) -> int:
    """The _LFH_HEAP of the NT heap at `address` when its low-fragmentation
    front end is on (Windows 8+ gives it its own allocation, which belongs to
    the heap's memory); 0 when off or unreadable. wow64: a PEB32 heap."""
    bits = _X86 if wow64 else _bitness(reader)
    mem = _Memory(reader, bits)
    try:
        if mem.u32(address + bits.segment_signature) != SEGMENT_SIGNATURE:
            return 0
    except MemoryNotInDump:
        return 0
    layout = _find_layout(mem, address)
    if layout is None:
        return 0
    peb = wow64_peb32(reader) if wow64 else peb_address(reader)
    _, pointer = _front_end(mem, address, layout, _os_build(mem, peb))
    return pointer
