"""glibc malloc's heaps in a Linux core dump, without symbols (64-bit).

What glibc leaves in the address space, and how each is recognised:

- The main arena grows the brk heap (`[heap]`). A core dump's NT_FILE note
  lists file mappings only, so the brk heap is found as the lowest anonymous
  read-write region above the main executable (the module holding the entry
  point, else the module mapped lowest), accepted only when its chunks,
  walked from its first byte by their size fields, end exactly at the
  region's end (the top chunk). The kernel puts
  the brk start at a random distance above the executable (32 MB on x86-64
  in theory; nearly 900 MB observed here), so distance is not a criterion.
- Thread arenas live in heaps of HEAP_MAX_SIZE (64 MB) reservations aligned
  to 64 MB; each starts with a heap_info (ar_ptr, prev, size, mprotect_size
  [, pagesize since glibc 2.35]); the first heap of an arena holds the
  malloc_state right after its heap_info (ar_ptr == heap + sizeof(heap_info)).
- Allocations above the mmap threshold (128 KB, raised adaptively) are single
  mappings whose chunk header has IS_MMAPPED (0x2) in its size field. The
  kernel merges neighbouring anonymous mappings into one region, so each page
  start of an anonymous read-write region is checked for such a header
  (prev_size 0, size a page multiple of at least 128 KB with only IS_MMAPPED
  among the low bits, fitting in the region); a found chunk is skipped whole.

A core cut short (or filtered) may hold a heap's mapping but not its bytes:
such a heap is still a row, its unread values Unknown and the reason in its
problems; a thread heap whose heap_info is gone cannot be tied to its arena
and is a row of kind unknown.

Free bytes: chunks whose successor has PREV_INUSE clear, plus the top chunk;
chunks parked in tcache and fastbins count as in use (glibc does too until it
consolidates them). Left out: 32-bit processes, glibc's memalign'd mmapped
chunks (their prev_size holds an offset) and non-glibc allocators (musl,
jemalloc), which this does not recognise.
"""

from __future__ import annotations

import struct
from array import array
from dataclasses import dataclass, field
from typing import Optional, Sequence

from analysis.dumpfile.base import MemoryNotInDump, MemoryReader, Region
from analysis.model.native import HeapSegment, LargeBlock, NativeHeap
from analysis.model.vocab import HeapKind
from analysis.values import Address, ByteSize, Unknown, human_size

PAGE = 0x1000
PREV_INUSE = 0x1
IS_MMAPPED = 0x2
NON_MAIN_ARENA = 0x4
FLAG_BITS = 0x7
MALLOC_ALIGNMENT = 16
HEAP_MAX_SIZE = 64 << 20
MMAP_THRESHOLD_MIN = 128 << 10
# sizeof(heap_info): glibc < 2.35 and >= 2.35 (pagesize added).
HEAP_INFO_SIZES = (0x20, 0x30)
# sizeof(struct malloc_state) on x86-64/arm64 across glibc 2.2x-2.4x; the
# chunk walk tells which one a dump's glibc used.
MALLOC_STATE_SIZES = (0x898, 0x890, 0x8A0, 0x888)
MINSIZE = 0x20
AT_ENTRY = 9
# Bytes read at once by the mmapped-chunk scan.
SCAN_WINDOW = 1 << 20


@dataclass(frozen=True)
class Limits:
    """Bounds against corrupt heaps; real processes stay far below them."""

    max_chunks_per_heap: int = 20_000_000
    max_brk_candidates: int = 8
    max_scan_bytes: int = 1 << 40


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True)
class Chunks:
    """Chunks in address order: their starts and sizes (header included),
    8 bytes each, as a heap can hold millions."""

    starts: array[int] = field(default_factory=lambda: array("Q"))
    sizes: array[int] = field(default_factory=lambda: array("Q"))


@dataclass(frozen=True)
class ChunkWalk:
    """A walk over consecutive chunks [start, end): ok when the chunks tile
    the range exactly; free = free chunks plus the top chunk."""

    ok: bool
    chunks: int
    free: int
    problem: str = ""


def walk_chunks(
    data: bytes,
    start: int,
    end: int,
    limit: int,
    found: Optional[Chunks] = None,
) -> ChunkWalk:
    """Walks chunk headers in `data` (offsets relative to it) from `start`;
    the chunk that reaches `end` is the top chunk. found: when given, gets
    each chunk's offset and size."""
    offset, count, free = start, 0, 0
    previous_size = 0
    while True:
        if offset + 16 > end:
            return ChunkWalk(
                False, count, free, f"a chunk header crosses the end at +0x{offset:x}"
            )
        size_field = struct.unpack_from("<Q", data, offset + 8)[0]
        size = size_field & ~FLAG_BITS
        if count and not size_field & PREV_INUSE:
            free += previous_size
        if size < MINSIZE or size % MALLOC_ALIGNMENT:
            return ChunkWalk(
                False, count, free, f"chunk at +0x{offset:x} has size 0x{size:x}"
            )
        count += 1
        if found is not None:
            found.starts.append(offset)
            found.sizes.append(size)
        if offset + size == end:
            return ChunkWalk(True, count, free + size)
        if offset + size > end:
            return ChunkWalk(
                False, count, free, f"chunk at +0x{offset:x} runs past the end"
            )
        if count >= limit:
            return ChunkWalk(False, count, free, f"more than {limit} chunks")
        previous_size = size
        offset += size


def _is_anonymous(region: Region) -> bool:
    path = region.path
    return not path or path in ("[heap]",) or path.startswith("[anon")


def _is_writable_anonymous(region: Region) -> bool:
    return (
        region.state == "commit"
        and region.protect is not None
        and "w" in region.protect
        and _is_anonymous(region)
    )


def _read(reader: MemoryReader, address: int, size: int) -> Optional[bytes]:
    try:
        return reader.read(address, size)
    except MemoryNotInDump:
        return None


def walk_glibc_heaps(
    reader: MemoryReader, limits: Limits = DEFAULT_LIMITS
) -> tuple[NativeHeap, ...]:
    """The main arena, each thread arena and the mmapped chunks, as rows."""
    if reader.pointer_size != 8:
        return ()
    regions = sorted(reader.regions(), key=lambda r: int(r.base))
    anonymous = [r for r in regions if _is_writable_anonymous(r)]
    rows: list[NativeHeap] = []
    taken: set[int] = set()

    main = _main_arena(reader, regions, anonymous, limits)
    if main is not None:
        rows.append(main)
        taken.add(int(main.address))
    unread = _unread_heap_starts(reader, anonymous)
    arenas, arena_regions = _thread_arenas(reader, anonymous, unread, limits)
    rows += arenas
    taken |= arena_regions
    # A heap whose heap_info is gone cannot be tied to its arena; it is still
    # listed so that a core cut short does not read as having fewer arenas.
    for base, region in sorted(unread.items()):
        if base not in taken:
            rows.append(
                NativeHeap.not_read(
                    base,
                    f"the mapping at 0x{base:x} lies where a glibc heap would "
                    f"({human_size(int(region.size))}, on a 64 MB boundary) but "
                    "its first bytes are not in the dump: whether it is a heap, "
                    "and of which arena, is not known",
                )
            )
            taken.add(base)
    searched = [r for r in anonymous if int(r.base) not in taken]
    mmapped, problems = _mmapped_chunks(reader, searched, limits)
    if problems and not mmapped:
        # None found, and not everywhere looked: whether there are any is
        # not known (a minidump holds little more than stacks).
        rows.append(NativeHeap.not_read(int(searched[0].base), *problems))
    elif mmapped:
        total = sum(int(b.size) for b in mmapped)
        rows.append(
            NativeHeap(
                address=mmapped[0].address,
                kind=HeapKind.GLIBC_MMAP,
                reserved=ByteSize(total),
                committed=ByteSize(total),
                free=ByteSize(0),
                segments=(),
                large_blocks=tuple(mmapped),
                problems=tuple(problems),
            )
        )
    return tuple(rows)


def _main_executable_end(
    reader: MemoryReader, regions: Sequence[Region]
) -> Optional[int]:
    """End of the main executable's last mapping: the module holding the
    entry point (AT_ENTRY, when the reader offers the auxiliary vector),
    else the module mapped lowest."""
    modules = [m for m in reader.modules() if m.path]
    if not modules:
        return None
    auxv = getattr(reader, "auxv", None)
    entry = auxv().get(AT_ENTRY) if callable(auxv) else None
    holding = [
        m for m in modules if entry and int(m.base) <= entry < int(m.base) + int(m.size)
    ]
    exe = holding[0] if holding else min(modules, key=lambda m: int(m.base))
    ends = [int(r.base) + int(r.size) for r in regions if r.path == exe.path]
    return max(ends) if ends else int(exe.base) + int(exe.size)


def _main_arena(
    reader: MemoryReader,
    regions: Sequence[Region],
    anonymous: Sequence[Region],
    limits: Limits,
) -> Optional[NativeHeap]:
    named = [r for r in anonymous if r.path == "[heap]"]
    if named:
        candidates = named
    else:
        exe_end = _main_executable_end(reader, regions)
        if exe_end is None:
            return None
        candidates = [r for r in anonymous if int(r.base) >= exe_end]
        candidates = candidates[: limits.max_brk_candidates]
    unread: list[Region] = []
    for region in candidates:
        data = _read(reader, int(region.base), int(region.size))
        if data is None:
            unread.append(region)
            continue
        walk = walk_chunks(data, 0, len(data), limits.max_chunks_per_heap)
        if walk.ok:
            size = ByteSize(int(region.size))
            return NativeHeap(
                address=Address(int(region.base)),
                kind=HeapKind.GLIBC_ARENA,
                reserved=size,
                committed=size,
                free=ByteSize(walk.free),
                segments=(HeapSegment(Address(int(region.base)), size, size),),
                large_blocks=(),
            )
    if not unread:
        return None
    base = int(unread[0].base)
    if named:
        # The kernel named it: where the brk heap is, and how big, is known;
        # what it holds is not (a row of unknowns, as for any heap not read,
        # never one of zeros).
        return NativeHeap.not_read(
            base,
            f"the brk heap at 0x{base:x} ({human_size(int(unread[0].size))}, "
            "the kernel's [heap] mapping) is not in the dump",
        )
    return NativeHeap.not_read(
        base,
        f"the main arena was not found: the mapping at 0x{base:x} above the "
        "executable, where its brk heap may be, is not in the dump",
    )


@dataclass(frozen=True)
class _HeapInfo:
    address: int
    arena: int
    prev: int
    size: int


def _heap_info(reader: MemoryReader, region: Region) -> Optional[_HeapInfo]:
    base = int(region.base)
    if base % HEAP_MAX_SIZE:
        return None
    raw = _read(reader, base, 32)
    if raw is None:
        return None
    arena, prev, size, mprotect_size = struct.unpack("<4Q", raw)
    if not (
        PAGE <= size <= HEAP_MAX_SIZE and size % PAGE == 0 and size <= mprotect_size
    ):
        return None
    if arena == 0 or prev % HEAP_MAX_SIZE or size > int(region.size):
        return None
    return _HeapInfo(base, arena, prev, size)


def _unread_heap_starts(
    reader: MemoryReader, anonymous: Sequence[Region]
) -> dict[int, Region]:
    """Mappings placed like a thread arena's heap (on a HEAP_MAX_SIZE
    boundary, no larger) whose heap_info the dump does not hold, by base."""
    return {
        int(r.base): r
        for r in anonymous
        if int(r.base) % HEAP_MAX_SIZE == 0
        and int(r.size) <= HEAP_MAX_SIZE
        and _read(reader, int(r.base), 32) is None
    }


def _thread_arenas(
    reader: MemoryReader,
    anonymous: Sequence[Region],
    unread: dict[int, Region],
    limits: Limits,
) -> tuple[list[NativeHeap], set[int]]:
    infos = [info for info in (_heap_info(reader, r) for r in anonymous) if info]
    by_arena: dict[int, list[_HeapInfo]] = {}
    for info in infos:
        by_arena.setdefault(info.arena, []).append(info)
    rows: list[NativeHeap] = []
    used: set[int] = set()
    for arena, heaps in sorted(by_arena.items()):
        first = next((h for h in heaps if arena - h.address in HEAP_INFO_SIZES), None)
        problems: list[str] = []
        segments: list[HeapSegment] = []
        if first is None:
            lost = next(
                (arena - s for s in HEAP_INFO_SIZES if arena - s in unread), None
            )
            if lost is None:
                continue
            # Its other heaps point at it: the arena is there, its first
            # heap (and the malloc_state) just is not in the dump.
            problems.append(
                f"the arena's first heap at 0x{lost:x} (its malloc_state) is not "
                "in the dump"
            )
            segments.append(
                HeapSegment(
                    Address(lost),
                    ByteSize(HEAP_MAX_SIZE),
                    ByteSize(int(unread[lost].size)),
                )
            )
            used.add(lost)
            info_size = arena - lost
        else:
            info_size = arena - first.address
        free = 0
        for heap in sorted(heaps, key=lambda h: h.address):
            data = _read(reader, heap.address, heap.size)
            if data is None:
                problems.append(f"heap at 0x{heap.address:x} is not in the dump")
                continue
            if heap is first:
                starts = [_align(info_size + s) for s in MALLOC_STATE_SIZES]
            else:
                starts = [_align(info_size)]
            walks = [
                walk_chunks(data, s, heap.size, limits.max_chunks_per_heap)
                for s in starts
            ]
            good = next((w for w in walks if w.ok), None)
            if good is None:
                problems.append(
                    f"chunks of the heap at 0x{heap.address:x} do not tile it: {walks[0].problem}"
                )
            else:
                free += good.free
            segments.append(
                HeapSegment(
                    Address(heap.address), ByteSize(HEAP_MAX_SIZE), ByteSize(heap.size)
                )
            )
            used.add(heap.address)
        rows.append(
            NativeHeap(
                address=segments[0].address,
                kind=HeapKind.GLIBC_ARENA,
                reserved=ByteSize(sum(int(s.reserved) for s in segments)),
                committed=ByteSize(sum(int(s.committed) for s in segments)),
                free=ByteSize(free) if not problems else Unknown("; ".join(problems)),
                segments=tuple(segments),
                large_blocks=(),
                problems=tuple(problems),
            )
        )
    return rows, used


def segment_chunks(
    reader: MemoryReader, segment: HeapSegment, limits: Limits = DEFAULT_LIMITS
) -> Optional[Chunks]:
    """The chunks (by address) that tile one segment of
    a glibc arena (the brk heap, or one heap of a thread arena), or None
    when it is not in the dump or its chunks do not tile it. The first chunk
    starts where the heap walk found it: at the brk heap's first byte, after
    a thread heap's heap_info, and in an arena's first heap after its
    malloc_state too."""
    base, size = int(segment.address), int(segment.committed)
    data = _read(reader, base, size)
    if data is None:
        return None
    starts = [0] + [_align(info) for info in HEAP_INFO_SIZES]
    starts += [
        _align(info + state) for info in HEAP_INFO_SIZES for state in MALLOC_STATE_SIZES
    ]
    for start in starts:
        found = Chunks()
        if walk_chunks(data, start, size, limits.max_chunks_per_heap, found).ok:
            return Chunks(array("Q", (base + o for o in found.starts)), found.sizes)
    return None


def _align(value: int) -> int:
    return (value + MALLOC_ALIGNMENT - 1) // MALLOC_ALIGNMENT * MALLOC_ALIGNMENT


def _mmapped_chunks(
    reader: MemoryReader, regions: Sequence[Region], limits: Limits
) -> tuple[list[LargeBlock], list[str]]:
    """Checks each page start of the regions for an mmapped chunk header,
    visiting only the bytes the dump holds: a region's size is what a header
    claims (one damaged PT_LOAD can claim a terabyte), its held pieces are
    what the file has. Also says what was not searched: the blocks found
    are then fewer than the process had."""
    blocks: list[LargeBlock] = []
    scanned = 0
    missing = sum(
        int(r.size)
        - sum(size for _, size in reader.held_ranges(int(r.base), int(r.size)))
        for r in regions
        if int(r.size) >= MMAP_THRESHOLD_MIN
    )
    problems = (
        [
            f"{human_size(missing)} of the memory searched for mmapped chunks is not "
            "in the dump: the blocks there are not counted"
        ]
        if missing
        else []
    )
    for region in regions:
        base, end = int(region.base), int(region.base) + int(region.size)
        address = base
        for start, size in reader.held_ranges(base, end - base):
            piece_end = start + size
            address = max(address, _align_page(start))
            while address + MMAP_THRESHOLD_MIN <= end and address + 16 <= piece_end:
                if scanned >= limits.max_scan_bytes:
                    problems.append(
                        f"the search for mmapped chunks stopped after "
                        f"{human_size(scanned)}: the blocks beyond are not counted"
                    )
                    return blocks, problems
                window = _read(
                    reader, address, min(piece_end, address + SCAN_WINDOW) - address
                )
                if window is None:
                    break
                at = 0
                while (
                    at + 16 <= len(window) and address + at + MMAP_THRESHOLD_MIN <= end
                ):
                    here = address + at
                    prev_size, size_field = struct.unpack_from("<2Q", window, at)
                    size = size_field & ~FLAG_BITS
                    if (
                        prev_size == 0
                        and size_field & FLAG_BITS == IS_MMAPPED
                        and size % PAGE == 0
                        and MMAP_THRESHOLD_MIN <= size <= end - here
                    ):
                        blocks.append(LargeBlock(Address(here), ByteSize(size)))
                        at += size
                    else:
                        at += PAGE
                    scanned += PAGE
                address += at
    return blocks, problems


def _align_page(value: int) -> int:
    return (value + PAGE - 1) // PAGE * PAGE
